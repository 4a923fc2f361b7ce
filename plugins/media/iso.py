"""ISO 9660 mastering of a DICOM file-set folder, in-process with pycdlib.

PS3.12 media use ISO 9660 interchange level 1: DICOM file IDs (up to 8 characters, no
extension) and 8.3 names such as ``README.TXT``, in at most 8 directory levels. Names
are checked, never rewritten: the DICOMDIR refers to files by these exact names, so a
silently "fixed" name would break the file-set. File data is streamed from disk while
the image is written, so a study of several GB never sits in memory.

A "foreign" top folder (a viewer program) is the exception: its files keep the names
and depth their program needs. The ISO 9660 tree gets generated 8.3 names for them
(``VIEWERD_1.DLL``), while Joliet (Windows) and Rock Ridge (Linux, macOS) carry the
real ones; pycdlib moves directories deeper than 8 levels under ``RR_MOVED`` as Rock
Ridge provides. The file-set's own names are the same in all three trees.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pycdlib

from dicombox.hal.burner import DISC_CAPACITY

SECTOR = 2048

# Free space of blank media, in bytes (the burner HAL reports the real figure).
CAPACITY = DISC_CAPACITY

Progress = Callable[[int, int], None]

_FILE_NAME = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?$")
_DIR_NAME = re.compile(r"^[A-Z0-9_]{1,8}$")
_NOT_D_CHARACTER = re.compile(r"[^A-Z0-9_]")
MAX_DIR_DEPTH = 7  # ISO 9660 allows 8 levels and the root directory is the first
VOLUME_ID_LENGTH = 32

# Sectors every image has whatever it holds: the 16-sector system area, the primary
# and Joliet volume descriptors, the terminator, and a version descriptor pycdlib adds.
_FIXED_SECTORS = 16 + 4
# Generous directory record sizes (33 bytes + the name, padded), for the estimate.
_ISO_RECORD = 48
_JOLIET_RECORD = 58
_ROCK_RIDGE_RECORD = 112  # SUSP and Rock Ridge 1.09 entries (PX, TF, NM …) but the name
_PATH_TABLE_RECORD = 18


def sanitize_volume_id(volume_id: str) -> str:
    """The volume identifier as d-characters (A-Z 0-9 _), at most 32 of them."""
    cleaned = _NOT_D_CHARACTER.sub("_", volume_id.strip().upper())[:VOLUME_ID_LENGTH]
    return cleaned or "DICOM"


def _check_dir(relative: Path) -> None:
    if not _DIR_NAME.match(relative.name):
        raise ValueError(f"{relative}: not an ISO 9660 level 1 directory name (A-Z 0-9 _, up to 8)")
    if len(relative.parts) > MAX_DIR_DEPTH:
        raise ValueError(f"{relative}: deeper than the 8 directory levels of ISO 9660")


def _check_file(relative: Path) -> None:
    if not _FILE_NAME.match(relative.name):
        raise ValueError(f"{relative}: not an ISO 9660 level 1 file name (8.3 of A-Z 0-9 _)")


def _scan(folder: Path, foreign: tuple[str, ...] = ()) -> tuple[list[Path], list[Path]]:
    """Directories (parents first, as pycdlib needs them) and files, relative to folder.
    Names outside the ``foreign`` top folders must be ISO 9660 level 1 names."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory")
    dirs: list[Path] = []
    files: list[Path] = []
    for top, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        base = Path(top).relative_to(folder)
        strict = not base.parts or base.parts[0] not in foreign
        for name in dirnames:
            if (Path(top) / name).is_symlink():
                raise ValueError(f"{base / name}: a symbolic link to a directory")
            if strict:
                _check_dir(base / name)
            dirs.append(base / name)
        for name in sorted(filenames):
            if strict:
                _check_file(base / name)
            files.append(base / name)
    return dirs, files


class _IsoNames:
    """The ISO 9660 path of each entry: its own name where level 1 holds it, else a
    generated 8.3 name unique in its directory (``LONGNA_1.TXT``)."""

    def __init__(self) -> None:
        self._paths: dict[Path, str] = {Path("."): ""}
        self._taken: dict[Path, set[str]] = {}

    def path(self, relative: Path, is_file: bool) -> str:
        parent = self._paths[relative.parent]
        taken = self._taken.setdefault(relative.parent, set())
        name = self._short(relative.name, is_file, taken)
        taken.add(name)
        self._paths[relative] = f"{parent}/{name}"
        if not is_file:
            return self._paths[relative]
        # Ecma-119 file identifiers always carry the "." separator and a version number,
        # so "I0000001" is recorded as "I0000001.;1"; readers show it as "I0000001".
        return self._paths[relative] + (";1" if "." in name else ".;1")

    @staticmethod
    def _short(name: str, is_file: bool, taken: set[str]) -> str:
        valid = _FILE_NAME if is_file else _DIR_NAME
        if valid.match(name) and name not in taken:
            return name
        stem, dot, ext = name.rpartition(".") if is_file else ("", "", "")
        if not dot or not stem:  # no extension, or a name such as ".hidden"
            stem, ext = name, ""
        stem = _NOT_D_CHARACTER.sub("_", stem.upper()) or "_"
        ext = _NOT_D_CHARACTER.sub("_", ext.upper())[:3]
        for n in range(1, 10**6):
            suffix = f"_{n}"
            short = stem[: 8 - len(suffix)] + suffix + (f".{ext}" if ext else "")
            if short not in taken:
                return short
        raise ValueError(f"{name}: too many names alike in one directory")


class _FileProgress:
    """The output image, noticing when the last byte of each source file is written.

    pycdlib reports progress in bytes only; a file is complete when a write ends at its
    extent start plus its length. Extents are final only once pycdlib starts writing,
    so they are looked up at the first write.
    """

    def __init__(
        self, out: BinaryIO, iso: pycdlib.PyCdlib, paths: list[str], progress: Progress
    ) -> None:
        self._out = out
        self._iso = iso
        self._paths = paths
        self._progress = progress
        self._ends: dict[int, str] | None = None
        self.done = 0

    def _file_ends(self) -> dict[int, str]:
        ends: dict[int, str] = {}
        for path in self._paths:
            record = self._iso.get_record(iso_path=path)
            length = record.get_data_length()
            if length == 0:
                self._report()  # nothing to write: complete from the start
            else:
                ends[record.extent_location() * SECTOR + length] = path
        return ends

    def _report(self) -> None:
        self.done += 1
        self._progress(self.done, len(self._paths))

    def write(self, data: bytes) -> int:
        if self._ends is None:
            self._ends = self._file_ends()
        written = self._out.write(data)
        if self._ends.pop(self._out.tell(), None) is not None:
            self._report()
        return written

    def finish(self) -> None:
        """Report any file not seen ending (never expected), so progress reaches total."""
        while self.done < len(self._paths):
            self._report()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)  # seek, tell, flush: the real file's


def _stage(iso: pycdlib.PyCdlib, folder: Path, joliet: bool, foreign: tuple[str, ...]) -> list[str]:
    """Add the tree to the image (data is read only when the image is written)."""
    dirs, files = _scan(folder, foreign)
    names = _IsoNames()
    long_names: dict[str, str] = {}  # keyword arguments for the Joliet and Rock Ridge trees
    for relative in dirs:
        if joliet:
            long_names["joliet_path"] = "/" + relative.as_posix()
        if foreign:
            long_names["rr_name"] = relative.name
        iso.add_directory(iso_path=names.path(relative, False), **long_names)
    paths = []
    for relative in files:
        iso_path = names.path(relative, True)
        if joliet:
            long_names["joliet_path"] = "/" + relative.as_posix()
        if foreign:
            long_names["rr_name"] = relative.name
        # A path, not bytes: pycdlib opens each file only while copying it.
        iso.add_file(str(folder / relative), iso_path=iso_path, **long_names)
        paths.append(iso_path)
    return paths


def master_iso(
    folder: Path,
    iso_path: Path,
    volume_id: str,
    joliet: bool = False,
    progress: Progress = lambda done, total: None,
    foreign: tuple[str, ...] = (),
) -> int:
    """Write an ISO 9660 image of the tree ``folder`` to ``iso_path``; returns its size.

    ``progress(done, total)`` is called as each file's data has been written. A name
    that ISO 9660 level 1 cannot hold raises ValueError before anything is written,
    unless it is inside one of the ``foreign`` top folders: those present, the image
    has Joliet and Rock Ridge trees with the real names.
    """
    foreign = tuple(name for name in foreign if (folder / name).is_dir())
    joliet = joliet or bool(foreign)
    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=1,
        sys_ident="DICOMBOX",
        vol_ident=sanitize_volume_id(volume_id),
        app_ident_str="DICOMBOX",
        joliet=3 if joliet else None,
        rock_ridge="1.09" if foreign else None,
    )
    try:
        paths = _stage(iso, folder, joliet, foreign)
        _write(iso, iso_path, paths, progress)
    except pycdlib.pycdlibexception.PyCdlibInvalidInput as exc:  # a name Joliet cannot hold
        raise ValueError(f"{folder}: {exc}") from exc
    finally:
        iso.close()
    return iso_path.stat().st_size


def _write(iso: pycdlib.PyCdlib, iso_path: Path, paths: list[str], progress: Progress) -> None:
    try:
        with open(iso_path, "wb") as out:
            tracked = _FileProgress(out, iso, paths, progress)
            iso.write_fp(tracked)
            tracked.finish()
    except BaseException:
        iso_path.unlink(missing_ok=True)  # half an image must never be burned
        raise


def _sectors(size: int) -> int:
    return -(-size // SECTOR)


def iso_size_estimate(folder: Path, foreign: tuple[str, ...] = ()) -> int:
    """An upper estimate of master_iso's image size (with or without Joliet; with Rock
    Ridge when a ``foreign`` folder is there), in bytes, to choose the media before
    spending time mastering."""
    rock_ridge = any((folder / name).is_dir() for name in foreign)
    sectors = _FIXED_SECTORS
    directories = 0
    for top, dirnames, filenames in os.walk(folder):
        directories += 1
        names = [".", "..", *dirnames, *filenames]
        iso = sum(_ISO_RECORD + (_ROCK_RIDGE_RECORD + len(n) if rock_ridge else 0) for n in names)
        joliet = sum(max(_JOLIET_RECORD, 34 + 2 * len(n)) for n in names)
        # Records never straddle a sector, and Rock Ridge may continue them in one more.
        padding = 2 if rock_ridge else 0
        sectors += _sectors(iso) + _sectors(joliet) + padding
        for name in filenames:
            sectors += _sectors(os.path.getsize(os.path.join(top, name)))
    # Four path tables (little and big endian, ISO 9660 and Joliet), each a sector
    # at least; pycdlib keeps two copies of each.
    sectors += 4 * 2 * _sectors(directories * _PATH_TABLE_RECORD)
    return sectors * SECTOR
