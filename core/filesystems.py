"""What the file system under the store promises about flushing a file's new name.

POSIX makes a new name durable only once its directory is fsynced. On a journalling
file system that logs metadata in order (ext4 with its journal, XFS), a link changes the
file's own inode in the same transaction as the directory, so the file's fsync after the
link commits the name too, and a directory fsync after it only waits on whatever the
other writers of that directory (the other associations storing into the same series)
put in the journal meanwhile. The store skips that second flush only where this holds;
anywhere else (another file system, ext4 without a journal, anything it cannot tell) it
fsyncs the directory as POSIX asks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

# File systems whose fsync of a file commits the transactions its inode took part in,
# and every one before them (one ordered log per file system).
_ORDERED_LOGS = {"xfs"}
_JOURNAL_IF_PRESENT = {"ext4", "ext3"}

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes a space in a path as \\040."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_of(path: Path, mountinfo: str) -> tuple[str, str] | None:
    """(file system type, major:minor) of the mount that holds ``path``, from the text
    of /proc/self/mountinfo, or None if no mount holds it."""
    real = os.path.realpath(path)
    best: tuple[str, str] | None = None
    best_length = -1
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        mount_point = _unescape(fields[4])
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best_length:  # the last, deepest mount wins
            best, best_length = (fields[separator + 1], fields[2]), len(mount_point)
    return best


def _has_jbd2_journal(device: str) -> bool:
    """Is the ext4 on block device ``major:minor`` running with its journal?"""
    try:
        name = Path(os.path.realpath(f"/sys/dev/block/{device}")).name
    except OSError:
        return False
    return Path(f"/proc/fs/jbd2/{name}-8").is_dir()


def file_fsync_makes_its_name_durable(path: Path) -> bool:
    """True where a file's fsync after ``link`` into a directory under ``path`` also
    makes that name durable, so the directory's own fsync can be skipped."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    mount = mount_of(path, mountinfo)
    if mount is None:
        return False
    fstype, device = mount
    if fstype in _ORDERED_LOGS:
        return True
    return fstype in _JOURNAL_IF_PRESENT and _has_jbd2_journal(device)


# sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start writing these pages back now,
# without waiting. Python's os module lacks it; libc has it on Linux.
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if sys.platform != "linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_start_writeback = _sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes at ``offset`` of ``fd`` to disk,
    and return at once. A data set written as it arrives is then mostly on its way to
    the disk when it is complete, and the fsync that must precede its answer waits for
    the last pieces and the flush, not for the whole file (about 0.3 against 0.8 ms
    for a 512 kB image here). Where the call is missing or refused, nothing happens:
    the fsync does all the work, as before."""
    global _start_writeback
    if _start_writeback is None:
        return
    refused = _start_writeback(fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0
    if refused and ctypes.get_errno() in (errno.ENOSYS, errno.EOPNOTSUPP):
        _start_writeback = None  # not in this kernel: stop asking


def writeback_available() -> bool:
    """Can this platform start writeback early (see ``start_writeback``)?"""
    return _start_writeback is not None
