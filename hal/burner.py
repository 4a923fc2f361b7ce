"""The optical burner: a simulator that burns to files, and real drives through xorriso.

Errors are worded for the operator at the front panel ("no disc in the drive"), and
sorted into the few cases a caller acts on differently: no disc (wait for one), a disc
too small (a fresh disc of the same kind will not help), a drive gone (call service).
Burn progress is reported as a fraction from 0.0 to 1.0.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from dicombox.hal.registry import DriverContext, Registry

SECTOR = 2048
CHUNK = 1 << 20
MB = 1 << 20

# Free space of blank media, in bytes (a drive reports the real figure).
DISC_CAPACITY = {
    "CD": 737_280_000,  # 80-minute CD-R: 360,000 sectors of 2048 bytes (the "700 MB" CD)
    "DVD": 4_700_000_000,
    "DVD-DL": 8_500_000_000,
    "BD": 25_000_000_000,
}
DiscKind = Literal["CD", "DVD", "DVD-DL", "BD"]

BurnProgress = Callable[[float], None]


def _no_progress(fraction: float) -> None:
    pass


class BurnerError(Exception):
    """A burn, verify or eject that did not work; the message is for the operator."""


class NoMedia(BurnerError):
    def __init__(self, message: str = "no disc in the drive") -> None:
        super().__init__(message)


class DiscTooSmall(BurnerError):
    def __init__(self, needed_bytes: int, free_bytes: int) -> None:
        # Needed rounds up and free rounds down, so the two figures never look equal.
        needed_mb, free_mb = -(-needed_bytes // MB), free_bytes // MB
        super().__init__(f"disc too small: needs {needed_mb} MB, {free_mb} MB free")
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.needed_bytes, self.free_bytes)


class DriveGone(BurnerError):
    def __init__(self, device: str) -> None:
        super().__init__(f"drive not found: {device}")
        self.device = device

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.device,)


@dataclass(frozen=True)
class MediaInfo:
    present: bool
    blank: bool
    capacity_bytes: int  # free space a burn may use now
    kind: str  # CD-R, DVD+R … as the drive reports it


class Burner(Protocol):
    name: str
    destination: str  # where the discs go, for the operator: "the drive /dev/sr0"

    def media(self) -> MediaInfo: ...

    def burn(
        self,
        iso: Path,
        label: str,
        finalize: bool = True,
        speed: int = 0,
        progress: BurnProgress = _no_progress,
    ) -> None: ...

    def verify(self, iso: Path) -> bool: ...

    def eject(self) -> None: ...


def image_size(iso: Path) -> int:
    """The image's size, or a BurnerError naming it when it is not there."""
    try:
        return iso.stat().st_size
    except OSError as exc:
        raise BurnerError(f"no image to burn: {iso}: {exc.strerror}") from None


def check_fits(info: MediaInfo, size: int) -> None:
    """Refuse before writing: a burn that cannot complete only makes a coaster."""
    if not info.present:
        raise NoMedia()
    if not info.blank and info.capacity_bytes == 0:
        raise BurnerError("the disc in the drive is already written: insert a blank disc")
    if size > info.capacity_bytes:
        raise DiscTooSmall(size, info.capacity_bytes)


def _sha256_of_first(path: Path, size: int) -> str | None:
    """sha256 of the first ``size`` bytes of path; None if it holds fewer.

    A disc holds more than the image (run-out and padding sectors), so only the image's
    own length is compared.
    """
    digest = hashlib.sha256()
    left = size
    with open(path, "rb") as disc:
        while left:
            chunk = disc.read(min(CHUNK, left))
            if not chunk:
                return None
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _same_content(disc: Path, iso: Path) -> bool:
    size = iso.stat().st_size
    return _sha256_of_first(disc, size) == _sha256_of_first(iso, size)


class SimulatedBurner:
    """A drive whose discs are files: each burn writes ``<folder>/disc-<n>-<label>.iso``.

    The tray holds a blank disc unless ``<folder>/NO_DISC`` exists (an operator or a
    test "empties the tray" by creating it). Ejecting moves on to a fresh blank disc,
    while there are any: ``<folder>/BLANKS``, when there, holds how many blanks are
    left, and each burned disc takes one. The simulator burns one session per disc.
    """

    def __init__(self, folder: Path, capacity_bytes: int = 737_280_000, kind: str = "CD-R") -> None:
        self.folder = Path(folder)
        self.capacity_bytes = capacity_bytes
        self.kind = kind
        self.name = f"simulated:{self.folder}"
        self.destination = f"ISO images in {self.folder}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._number = self._next_number()  # never overwrite discs of an earlier run
        self._written: Path | None = None
        self._finalized = False
        self.last_disc: Path | None = None  # the ISO file of the last disc burned

    def _next_number(self) -> int:
        numbers = [0]
        for path in self.folder.glob("disc-*-*.iso"):
            number = path.name.split("-")[1]
            if number.isdigit():
                numbers.append(int(number))
        return max(numbers) + 1

    def _tray_empty(self) -> bool:
        return (self.folder / "NO_DISC").exists() or self._blanks() == 0

    def _blanks(self) -> int | None:
        """Blank discs left, when counted (None: as many as it takes)."""
        try:
            return int((self.folder / "BLANKS").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return None

    def media(self) -> MediaInfo:
        if self._tray_empty():
            return MediaInfo(present=False, blank=False, capacity_bytes=0, kind="")
        if self._written is None:
            return MediaInfo(True, True, self.capacity_bytes, self.kind)
        used = _sectors_bytes(self._written.stat().st_size)
        free = 0 if self._finalized else max(0, self.capacity_bytes - used)
        return MediaInfo(True, False, free, self.kind)

    def burn(
        self,
        iso: Path,
        label: str,
        finalize: bool = True,
        speed: int = 0,
        progress: BurnProgress = _no_progress,
    ) -> None:
        size = image_size(iso)
        info = self.media()
        check_fits(info, size)
        if not info.blank:
            raise BurnerError("the simulator burns one session per disc: insert a blank disc")
        disc = self.folder / f"disc-{self._number}-{_file_label(label)}.iso"
        _copy(iso, disc, size, progress)
        self._written, self._finalized = disc, finalize
        self.last_disc = disc

    def verify(self, iso: Path) -> bool:
        if self._tray_empty():
            raise NoMedia()
        return self._written is not None and _same_content(self._written, iso)

    def eject(self) -> None:
        if self._written is not None:
            self._number += 1
            blanks = self._blanks()
            if blanks:
                (self.folder / "BLANKS").write_text(str(blanks - 1))
        self._written, self._finalized = None, False


def _sectors_bytes(size: int) -> int:
    return -(-size // SECTOR) * SECTOR


def _file_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", label)[:32] or "DISC"


def _copy(iso: Path, disc: Path, size: int, progress: BurnProgress) -> None:
    """Copy in chunks, reporting progress; a failed copy leaves no disc file behind."""
    partial = disc.with_name(disc.name + ".part")
    done = 0
    try:
        with open(iso, "rb") as source, open(partial, "wb") as target:
            while chunk := source.read(CHUNK):
                target.write(chunk)
                done += len(chunk)
                progress(done / size if size else 1.0)
        partial.rename(disc)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BurnerError(f"burn failed at {_percent(done, size)}: {exc}") from None


def _percent(done: int, size: int) -> str:
    return f"{100 * done // size if size else 0}%"


# What xorriso (and libburn under it) print, as classified here. Real output, e.g.:
#   libburn : FAILURE : File object '/dev/sr9' not found
#   xorriso : FAILURE : Cannot acquire drive '/dev/sr9'
#   Media current: is not present
#   Media status : is blank
#   Media blocks : 0 readable , 359847 writable , 359847 overall
#   xorriso : UPDATE : Writing:      4096s   43.1%   fifo 100%  buf  50%    8.0xC
#   xorriso : UPDATE :   12 of  650 MB written [buf  50%]       (-as cdrecord)
_DRIVE_GONE = re.compile(
    r"cannot acquire drive|cannot open|cannot access|not found|no such file|no drive",
    re.IGNORECASE,
)
_NO_MEDIA = re.compile(
    r"no media|no medium|no disc|is not present|not present|medium not present", re.IGNORECASE
)
_TOO_SMALL = re.compile(
    r"exceeds free space|exceeds remaining|not enough space|insufficient space|"
    r"too small|does not fit|would exceed",
    re.IGNORECASE,
)
_PERCENT = re.compile(r"Writing:\s+\d+s\s+(\d+(?:\.\d+)?)%")
_MB_WRITTEN = re.compile(r"(\d+)\s+of\s+(\d+)\s+MB written")
_MEDIA_CURRENT = re.compile(r"^Media current:\s*(.*?)\s*$", re.MULTILINE)
_MEDIA_STATUS = re.compile(r"^Media status\s*:\s*(.*?)\s*$", re.MULTILINE)
_MEDIA_BLOCKS = re.compile(r"^Media blocks\s*:.*?(\d+)\s+writable", re.MULTILINE)
_SUMMARY_FREE = re.compile(r"^Media summary:.*?([\d.]+)([kmgt]?)\s+free", re.MULTILINE)
_PROBLEM = re.compile(r"\b(FATAL|FAILURE|SORRY)\b")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
QUERY_TIMEOUT_S = 120.0  # a drive spinning up a disc takes tens of seconds


def parse_progress(line: str) -> float | None:
    """The fraction written, from a progress line of xorriso or its cdrecord emulation."""
    if match := _PERCENT.search(line):
        return min(1.0, float(match.group(1)) / 100)
    if (match := _MB_WRITTEN.search(line)) and int(match.group(2)):
        return min(1.0, int(match.group(1)) / int(match.group(2)))
    return None


def parse_toc(output: str) -> MediaInfo:
    """MediaInfo from the output of ``xorriso -outdev DEV -toc``."""
    current = _MEDIA_CURRENT.search(output)
    kind = current.group(1) if current else ""
    if not current or _NO_MEDIA.search(kind):
        return MediaInfo(present=False, blank=False, capacity_bytes=0, kind="")
    status = _MEDIA_STATUS.search(output)
    blank = bool(status and "is blank" in status.group(1))
    return MediaInfo(True, blank, _free_bytes(output), kind)


def _free_bytes(output: str) -> int:
    if blocks := _MEDIA_BLOCKS.search(output):
        return int(blocks.group(1)) * SECTOR
    # Older xorriso prints no "Media blocks" line; the summary's figure is rounded.
    if summary := _SUMMARY_FREE.search(output):
        return int(float(summary.group(1)) * _UNITS[summary.group(2)])
    return 0


def _tool_message(lines: Iterable[str]) -> str:
    """The lines worth showing: xorriso's own complaints, else the last lines."""
    kept = [line.strip() for line in lines if line.strip()]
    problems = [line for line in kept if _PROBLEM.search(line) and "aborting" not in line]
    return " / ".join((problems or kept)[-3:]) or "no message"


class XorrisoBurner:
    """A real drive driven through the xorriso program.

    Burns use xorriso's cdrecord emulation on one data track; the write mode is left to
    libburn, which picks SAO for a single session on CD (no gaps, best read by old
    drives) and the right mode for DVD and BD. ``finalize=False`` adds ``-multi``.
    verify() reads the image's length back through the device node and compares
    sha256: it needs nothing recorded in the image (xorriso's -check_md5 would need
    MD5 sums that only xorriso itself writes). A "stdio:/path" device is a file.
    """

    def __init__(self, device: str, xorriso: str = "xorriso", speed: int = 0) -> None:
        self.device = device
        self.xorriso = xorriso
        self.speed = speed
        self.name = f"xorriso:{device}"
        self.destination = f"the drive {device}"

    def _run(self, *args: str) -> tuple[int, list[str]]:
        try:
            done = subprocess.run(
                [self.xorriso, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=_c_locale(),
                timeout=QUERY_TIMEOUT_S,
            )
        except FileNotFoundError:
            raise BurnerError(f"burner program not found: {self.xorriso}") from None
        except subprocess.TimeoutExpired:
            raise BurnerError(f"the drive did not answer in {QUERY_TIMEOUT_S:.0f} s") from None
        return done.returncode, done.stdout.splitlines()

    def _raise_known(self, lines: list[str]) -> None:
        text = "\n".join(lines)
        if _DRIVE_GONE.search(text):
            raise DriveGone(self.device)
        if _NO_MEDIA.search(text):
            raise NoMedia()

    def media(self) -> MediaInfo:
        code, lines = self._run("-outdev", self.device, "-toc")
        if code != 0:
            try:
                self._raise_known(lines)
            except NoMedia:
                return MediaInfo(present=False, blank=False, capacity_bytes=0, kind="")
            raise BurnerError(f"cannot read the disc: {_tool_message(lines)}")
        return parse_toc("\n".join(lines))

    def burn(
        self,
        iso: Path,
        label: str,
        finalize: bool = True,
        speed: int = 0,
        progress: BurnProgress = _no_progress,
    ) -> None:
        """Burn ``iso``; ``label`` is not used, the volume id is inside the image."""
        size = image_size(iso)
        info = self.media()
        check_fits(info, size)
        code, lines, reached = self._burn(self._burn_args(iso, finalize, speed), progress)
        if code == 0:
            if reached < 1.0:
                progress(1.0)  # xorriso's last progress line may come before the end
            return
        self._raise_known(lines)
        if _TOO_SMALL.search("\n".join(lines)):
            raise DiscTooSmall(size, info.capacity_bytes)
        raise BurnerError(f"burn failed at {reached:.0%}: {_tool_message(lines)}")

    def _burn_args(self, iso: Path, finalize: bool, speed: int) -> list[str]:
        args = ["-as", "cdrecord", "-v", f"dev={self.device}"]
        if speed or self.speed:
            args.append(f"speed={speed or self.speed}")
        if not finalize:
            args.append("-multi")
        # An absolute path can never be taken for an option.
        return [*args, str(iso.resolve())]

    def _burn(self, args: list[str], progress: BurnProgress) -> tuple[int, deque[str], float]:
        """Run a burn, following its progress lines; no timeout, a BD takes an hour."""
        tail: deque[str] = deque(maxlen=20)
        reached = 0.0
        try:
            # Text mode reads "\r"-ended progress lines as lines too.
            with subprocess.Popen(
                [self.xorriso, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=_c_locale(),
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail.append(line.rstrip("\n"))
                    fraction = parse_progress(line)
                    if fraction is not None and fraction > reached:
                        reached = fraction
                        progress(fraction)
                code = proc.wait()
        except FileNotFoundError:
            raise BurnerError(f"burner program not found: {self.xorriso}") from None
        return code, tail, reached

    def verify(self, iso: Path) -> bool:
        """Read the disc back and compare. On Linux a drive that was not reloaded since
        the burn may still report the old (blank) size; eject and reload it then."""
        disc = Path(self.device.removeprefix("stdio:"))
        if not disc.exists():
            raise DriveGone(self.device)
        size = image_size(iso)
        expected = _sha256_of_first(iso, size)
        try:
            return _sha256_of_first(disc, size) == expected
        except OSError as exc:
            if exc.errno == getattr(os, "ENOMEDIUM", None):
                raise NoMedia() from None
            return False  # unreadable sectors: the disc is not good

    def eject(self) -> None:
        code, lines = self._run("-outdev", self.device, "-eject", "all")
        if code != 0:
            self._raise_known(lines)
            raise BurnerError(f"eject failed: {_tool_message(lines)}")


def _c_locale() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C"}  # messages are parsed: keep them in English


@dataclass(frozen=True)
class DiscOptions:
    """The discs a burner without a drive of its own to ask takes: ``[media] disc``
    and ``disc_capacity_mb`` (0: the kind's size)."""

    disc: DiscKind = "CD"
    disc_capacity_mb: int = 0

    @property
    def capacity_bytes(self) -> int:
        return (self.disc_capacity_mb << 20) or DISC_CAPACITY[self.disc]


@dataclass(frozen=True)
class SimulatedBurnerOptions(DiscOptions):
    discs_dir: str = ""  # where the discs go ("" = <data_dir>/media/discs)


@dataclass(frozen=True)
class XorrisoOptions:
    device: str = "/dev/sr0"
    speed: int = 0  # 0 = the drive's choice


def _open_simulated(options: SimulatedBurnerOptions, context: DriverContext) -> SimulatedBurner:
    folder = Path(options.discs_dir) if options.discs_dir else context.data_dir / "media" / "discs"
    return SimulatedBurner(folder, capacity_bytes=options.capacity_bytes)


def _open_xorriso(options: XorrisoOptions, context: DriverContext) -> XorrisoBurner:
    return XorrisoBurner(options.device, speed=options.speed)


BURNERS: Registry[Burner] = Registry("burner")
BURNERS.register("simulated", _open_simulated, SimulatedBurnerOptions)
BURNERS.register("xorriso", _open_xorriso, XorrisoOptions)
