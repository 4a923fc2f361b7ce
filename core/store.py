"""The durable store: DICOM Part 10 files written safely, at paths derived from UIDs.

A received data set is streamed into a temporary file under ``tmp/`` (preamble and file
meta first, then the bytes exactly as received), linked to its final name
``studies/<study>/<series>/<instance>.dcm`` and fsynced; the directory is fsynced too,
unless the file system commits a new name with the file's own flush (see
``core/filesystems.py``). So an acknowledged instance survives a power cut. Patient text
never reaches a path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from dicombox.core.filesystems import file_fsync_makes_its_name_durable, start_writeback
from dicombox.core.header import HEAD_BYTES
from dicombox.core.tempfiles import TemporaryFiles

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# A received file's pages are handed to the kernel's writeback in steps of this size as
# they arrive (see filesystems.start_writeback).
WRITEBACK_STEP = 128 << 10
# A second name an earlier version kept for a placed instance until its routes were
# queued: only swept now (routes are queued with the index row, see core/outbox.py).
ROUTING_SUFFIX = ".routing"
# The first copy a replacing copy took the name of, kept until the index has the new row.
PREVIOUS_SUFFIX = ".previous"


COPY_MARK = "_copy"


def copy_number(path: Path) -> int:
    """0 for ``<uid>.dcm``; n for the kept-both duplicate ``<uid>_copy<n>.dcm``."""
    _, mark, number = path.stem.partition(COPY_MARK)
    return int(number) if mark and number.isdigit() else 0


class StoreFull(Exception):
    """The data volume is below its reserve (or ran out of space while writing)."""


def uid_path_part(uid: str) -> str:
    """A path component from a UID; non-conformant UIDs are hashed, never trusted."""
    if _UID.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha1(uid.encode("utf-8", "replace")).hexdigest()


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def file_meta(
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    source_ae: str,
    implementation_uid: str,
    implementation_version: str,
) -> bytes:
    """Preamble, 'DICM' and the File Meta Information group (PS3.10 §7.1)."""
    body = b"".join(
        (
            _element(0x00020001, b"OB", b"\x00\x01"),
            _element(0x00020002, b"UI", _text(sop_class, b"\x00")),
            _element(0x00020003, b"UI", _text(sop_instance, b"\x00")),
            _element(0x00020010, b"UI", _text(transfer_syntax, b"\x00")),
            _element(0x00020012, b"UI", _text(implementation_uid, b"\x00")),
            _element(0x00020013, b"SH", _text(implementation_version, b" ")),
            _element(0x00020016, b"AE", _text(source_ae, b" ")) if source_ae else b"",
        )
    )
    length = _element(0x00020000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + length + body


class IncomingFile:
    """A data set arriving into a temporary file (``path``, open as ``fd``); the
    DatasetSink of C-STORE."""

    def __init__(self, path: Path, fd: int, header: bytes) -> None:
        self.path = path
        self.header_length = len(header)
        self.size = 0
        self.full = False
        # The file's first bytes, kept as they are written: the header walk that follows
        # reads them here instead of from the file.
        self.head = bytearray(header)
        self._fd: int | None = fd
        self._writing_back = 0  # bytes of the file the kernel has been asked to write back
        self.rewritten = False  # coercion has begun to write other content into the file
        self.previous: Path | None = None  # the copy it replaced, until its row is written
        self._synced = False
        try:
            self._write(header)
        except BaseException:
            self.discard()
            raise

    def _write(self, data: bytes) -> None:
        if self.full or self._fd is None:
            return  # keep draining the network; the answer will be A700
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self._write_back(WRITEBACK_STEP)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.full = True
            self._truncate()

    def _write_back(self, at_least: int) -> None:
        """Hand what was written since the last time to the kernel's writeback, once it
        is ``at_least`` bytes. (``header_length + size`` is what is in the file: both are
        counted before the bytes are written.)"""
        written = self.header_length + self.size
        if self._fd is not None and written - self._writing_back >= at_least:
            start_writeback(self._fd, self._writing_back, written - self._writing_back)
            self._writing_back = written

    def _truncate(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)  # give the space back at once

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self._write(chunk)

    def discard(self) -> None:
        self._close_fd()
        self.path.unlink(missing_ok=True)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """The data set is complete: its last pieces go to writeback too, while the
        header is checked. The descriptor stays open until ``InstanceStore.place`` has
        given the file its name and flushed it."""
        if not self.full:
            self._write_back(1)

    def replace_content(self, header_length: int, content: bytes) -> None:
        """The whole file is now ``content`` (meta and data set), as coercion rewrote
        it. From here on the file no longer holds what arrived (``rewritten``)."""
        self.rewritten = True
        self._close_fd()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
        self._writing_back = 0
        self.header_length, self.size = header_length, len(content) - header_length
        self.head = bytearray(content[:HEAD_BYTES])
        self._write(content)

    def sync(self) -> None:
        """Wait for the data to be on disk (ENOSPC here still means the volume is full).
        Once done, the descriptor is closed and a second call does nothing."""
        if self._synced:
            return
        if self._fd is None:  # a rewrite that could not open the file: nothing to trust
            raise OSError(errno.EBADF, "the file is not open: its content is not whole")
        try:
            os.fsync(self._fd)
            self._synced = True
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.full = True
                raise StoreFull("the data volume filled up while writing") from None
            raise
        finally:
            self._close_fd()


class InstanceStore:
    def __init__(self, root: Path, reserve_bytes: int, directory_fsync: str = "auto") -> None:
        self.root = root
        self.reserve_bytes = reserve_bytes
        self.tmp = root / "tmp"
        self.studies = root / "studies"
        for d in (self.tmp, self.studies):
            d.mkdir(parents=True, exist_ok=True)
        # "auto": flush a new name's directory unless the file system commits the name
        # with the file's own flush (see core/filesystems.py); "always": flush it anyway.
        self.flush_directories = directory_fsync == "always" or not (
            file_fsync_makes_its_name_durable(self.studies)
        )
        self.temporary_files = TemporaryFiles(self.tmp)
        # Series folders whose names this process knows to be on disk (folders are never
        # removed from the store): each is checked once, not for every image.
        self._durable_dirs: set[Path] = set()

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def has_room(self) -> bool:
        return self.free_bytes() > self.reserve_bytes

    def begin(self, header: bytes) -> IncomingFile:
        if not self.has_room():
            raise StoreFull(f"free space is below the {self.reserve_bytes >> 20} MB reserve")
        return IncomingFile(*self.temporary_files.take(), header)

    def prepare(self) -> None:
        """Have temporary files made ahead of the next data sets (see core/tempfiles.py)."""
        self.temporary_files.prepare()

    def close(self) -> None:
        self.temporary_files.close()

    def relpath_for(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        parts = (uid_path_part(study_uid), uid_path_part(series_uid))
        return "/".join(("studies", *parts, uid_path_part(sop_uid) + ".dcm"))

    def place(
        self,
        incoming: IncomingFile,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        on_conflict: Callable[[], int | None],
    ) -> str | None:
        """Move a complete file to its final place and make it durable; returns its path
        relative to the store root.

        A hard link creates the final name only if it is free, so the common case needs
        no index lookup. When a file stands there already, ``on_conflict()`` decides:
        ``None`` keeps the old file (the new one is dropped and None returned), ``0``
        replaces it, ``n`` > 0 keeps both, the new one as copy n."""
        relpath = self.relpath_for(study_uid, series_uid, sop_uid)
        target = self.root / relpath
        directory = target.parent
        try:
            if directory not in self._durable_dirs:
                self._make_durable(directory)
            # The name first, then one flush: the link changes the file's own inode, so
            # on a journalling file system the file's fsync commits data, inode and name
            # together, and the directory's fsync after it finds nothing left to do.
            # Until then nothing points at the file (no index row; a crash leaves a file
            # the restart's reconcile quarantines, or a re-send replaces).
            os.link(incoming.path, target)
            exists = False
        except FileExistsError:
            exists = True
        except BaseException as exc:
            _unplaced(incoming, exc)
        if exists:
            try:
                copy = on_conflict()
            except BaseException as exc:  # the index could not say: nothing is kept
                _unplaced(incoming, exc)
            if copy is None:
                incoming.discard()
                return None
            if copy:  # UIDs hold dots, so a copy number gets a separator no UID can contain
                relpath = f"{relpath[: -len('.dcm')]}{COPY_MARK}{copy}.dcm"
                target = self.root / relpath
            self._take_name_flushed(incoming, target)
            # A rename leaves the file's inode as it was: only the folder's flush makes
            # the new name durable, whatever the file system. (The file there is whole
            # and flushed, so if this fails it stays; it is not answered, nor routed.)
            try:
                _fsync_dir(directory)
            except BaseException:
                self.settle(incoming)
                raise
            return relpath
        temporary, incoming.path = incoming.path, target
        try:
            incoming.sync()
            if self.flush_directories:
                _fsync_dir(directory)
        except BaseException:
            target.unlink(missing_ok=True)  # never answered: nothing of it is kept
            temporary.unlink(missing_ok=True)
            raise
        # Durable under its own name: the temporary one goes (or the next sweep takes it).
        with contextlib.suppress(OSError):
            temporary.unlink()
        return relpath

    def _make_durable(self, directory: Path) -> None:
        """Make a series folder, or make sure the one there is durable: another worker
        may have made it and not yet flushed its name, or its study's, into the parent."""
        if not directory.is_dir():
            _make_dirs_durably(directory)
        elif self.flush_directories:
            _fsync_dir(directory.parent)  # the series' name in its study's folder
            _fsync_dir(directory.parent.parent)  # the study's name in studies/
        if len(self._durable_dirs) > 10000:
            self._durable_dirs.clear()
        self._durable_dirs.add(directory)

    def _take_name_flushed(self, incoming: IncomingFile, target: Path) -> None:
        """Give a copy the name ``target``, replacing a file there. It is flushed first:
        a file replaced by one half-written would lose the copy that was there."""
        try:
            incoming.sync()
            previous = incoming.path.with_suffix(PREVIOUS_SUFFIX)
            try:  # the copy there stays reachable until the index agrees (``restore``)
                os.link(target, previous)
                incoming.previous = previous
            except FileNotFoundError:
                pass  # nothing there: a keep-both copy with a free number
            os.replace(incoming.path, target)
        except BaseException:
            self.settle(incoming)
            incoming.discard()
            raise
        incoming.path = target

    @staticmethod
    def restore_previous(incoming: IncomingFile) -> None:
        """The replacing copy got no index row: the copy it replaced, which the index
        still describes, takes its name back."""
        if incoming.previous is None:
            return
        os.replace(incoming.previous, incoming.path)
        incoming.previous = None
        _fsync_dir(incoming.path.parent)

    @staticmethod
    def settle(incoming: IncomingFile) -> None:
        """The index has the instance's row, or will not have it: the copy it replaced,
        kept under ``tmp/`` until then (``restore_previous``), goes."""
        if incoming.previous is not None:  # replaced for good
            incoming.previous.unlink(missing_ok=True)
            incoming.previous = None

    def _temporary(self, prefix: str) -> list[Path]:
        return [
            *self.tmp.glob(f"{prefix}*.part"),
            *self.tmp.glob(f"{prefix}*{ROUTING_SUFFIX}"),
            *self.tmp.glob(f"{prefix}*{PREVIOUS_SUFFIX}"),
        ]

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def sweep_temporary(self, prefix: str = "") -> int:
        """Remove partial files, and scratch folders of jobs, left by a crash; called by
        the supervisor at start. With ``prefix`` (a worker's pid and a dash), only the
        files of that worker, which has died. Returns how many held something: the
        empty files made ahead of need go without a count."""
        count = 0
        for leftover in self._temporary(prefix):
            try:
                held_data = leftover.stat().st_size > 0
            except FileNotFoundError:
                continue
            leftover.unlink(missing_ok=True)
            count += held_data
        if prefix:
            return count
        for folder in self.tmp.glob("scratch-*"):
            shutil.rmtree(folder, ignore_errors=True)
            count += 1
        return count

    def scratch(self) -> Path:
        """A new folder for a job's temporary files (frames of a split instance …), on
        the store's volume; the caller removes it, a restart sweeps what a crash left."""
        return Path(tempfile.mkdtemp(prefix="scratch-", dir=self.tmp))


def _unplaced(incoming: IncomingFile, why: BaseException) -> NoReturn:
    """The file could not be given its place: it goes, descriptor and all, and a full
    volume is said as such (A700)."""
    incoming.discard()
    if isinstance(why, OSError) and why.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StoreFull("the data volume is full: no room for the instance's name") from why
    raise why


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durably(directory: Path) -> None:
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass  # another worker made it, and may not have flushed its name yet
        _fsync_dir(d.parent)
