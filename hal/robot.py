"""Disc robots (disc publishers) driven through their hot folders, as ``Burner`` devices.

A robot's PC software watches a shared folder for job files: Primera's PTBurn /
PTPublisher takes ``.JRQ`` files, Epson's TD Bridge (Total Disc Maker) ``.JDF`` files.
Both then rename the job file itself to show its state: ``<job>.INP`` while in progress,
``<job>.DON`` when done, ``<job>.ERR`` on failure (Epson adds ``.RJD`` before and
``.STP`` when paused). So a job is: copy the image in, write the job file, watch
``<job>.*``.

What the vendors' manuals leave open, and is assumed here (check on a real robot):

* the .ERR file's message: it is taken from a key such as ``Error=``/``Message=`` the
  robot adds, else from whatever lines it added to our job file (see robot_message);
* progress: a line ``Progress = <percent>`` in ``<job>.INP`` is read if present; the real
  robots report detail elsewhere (PTBurn's status file, Epson's .STF), not read here;
* Epson's key for burning a disc image is taken to be ``IMAGE=`` (``DATA=`` would write
  the .iso as a file onto the disc);
* disc type names beyond CD/DVD (``DVDR-DL``, ``BDR`` …; ``DVD-DL``, ``BD`` …).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from dicombox.hal.burner import (
    CHUNK,
    Burner,
    BurnerError,
    BurnProgress,
    DiscOptions,
    DriveGone,
    MediaInfo,
    NoMedia,
    check_fits,
    image_size,
)
from dicombox.hal.registry import DriverContext, Registry

CD_CAPACITY = 737_280_000
# The share of the progress bar for copying the image into the hot folder; the robot's
# burning (and printing) takes the rest.
COPY_SHARE = 0.1
# Both robots' software runs on Windows and reads job files as "ANSI" text.
JOB_ENCODING = "cp1252"

_NO_MEDIA = re.compile(
    r"no media|no disc|no blank|out of discs|out of media|input bin (is )?empty|bin empty",
    re.IGNORECASE,
)
_MESSAGE_KEYS = {"error", "errormessage", "errorstring", "error_message", "message", "reason"}
_PROGRESS = re.compile(r"^\s*progress\s*=\s*(\d+(?:\.\d+)?)\s*%?\s*$", re.IGNORECASE | re.MULTILINE)


def _no_progress(fraction: float) -> None:
    pass


@dataclass(frozen=True)
class RobotJob:
    """One burn as a job file describes it; paths are as the robot's PC sees them."""

    job_id: str
    image: str
    copies: int
    finalize: bool
    verify: bool
    speed: int  # 0: the robot's choice
    disc: str  # CD, DVD, DVD-DL, BD or BD-DL
    print_label: str  # a label design file, "" for no printing
    merge_text: str  # text merged into the printed label (the volume label)


def primera_jrq(job: RobotJob) -> str:
    """A PTBurn job request (.JRQ): ``Key = Value`` lines.

    Keys (PTBurn SDK "JRQ File Command Structure"): JobID and ClientID (≤ 32 chars),
    DiscType (CDR, DVDR; DVDR-DL/BDR/BDR-DL assumed), ImageFile (a disc image),
    Copies, CloseDisc and VerifyDisc (YES/NO), RejectIfNotBlank (never burn over a used
    disc), BurnSpeed (only when asked), PrintLabel (a label design, only when printing)
    and MergeField (text for the design's merge field). DeleteFiles is left at NO: we
    delete our image ourselves once the robot has finished with it.
    """
    disc = {"CD": "CDR", "DVD": "DVDR", "DVD-DL": "DVDR-DL", "BD": "BDR", "BD-DL": "BDR-DL"}
    lines = [
        f"JobID = {job.job_id}",
        "ClientID = dicombox",
        f"DiscType = {disc[job.disc]}",
        f"ImageFile = {job.image}",
        f"Copies = {job.copies}",
        f"CloseDisc = {_yes(job.finalize)}",
        f"VerifyDisc = {_yes(job.verify)}",
        "RejectIfNotBlank = YES",
    ]
    if job.speed:
        lines.append(f"BurnSpeed = {job.speed}")
    if job.print_label:
        lines += [f"PrintLabel = {job.print_label}", f"MergeField = {job.merge_text}"]
    return "\r\n".join(lines) + "\r\n"


def epson_jdf(job: RobotJob, publisher: str = "") -> str:
    """A TD Bridge job description (.JDF): ``KEY=value`` lines, keys case sensitive and
    no spaces around them (TD Bridge ignores such keys).

    Keys (TD Bridge Technical Reference Guide "Setting Item List"): JOB_ID (≤ 40 chars),
    PUBLISHER (the machine's name in Total Disc Setup; left out, TD Bridge's default),
    COPIES, DISC_TYPE (CD, DVD, DVD-DL, BD, BD-DL), IMAGE (the disc image: an assumption,
    see the module), CLOSE and COMPARE (YES/NO), WRITING_SPEED (only when asked), LABEL
    (a .tdd label design, only when printing). FORMAT and VOLUME_LABEL are for DATA=
    jobs, where TD Bridge builds the file system; our image has its own.
    """
    lines = [f"JOB_ID={job.job_id}"]
    if publisher:
        lines.append(f"PUBLISHER={publisher}")
    lines += [
        f"COPIES={job.copies}",
        f"DISC_TYPE={job.disc}",
        f"IMAGE={job.image}",
        f"CLOSE={_yes(job.finalize)}",
        f"COMPARE={_yes(job.verify)}",
    ]
    if job.speed:
        lines.append(f"WRITING_SPEED={job.speed}")
    if job.print_label:
        lines.append(f"LABEL={job.print_label}")
    return "\r\n".join(lines) + "\r\n"


def _yes(flag: bool) -> str:
    return "YES" if flag else "NO"


def disc_family(kind: str) -> str:
    """CD, DVD, DVD-DL, BD or BD-DL from a media kind such as "DVD+R DL" or "BD-R"."""
    upper = kind.upper()
    base = "BD" if upper.startswith("BD") else "DVD" if upper.startswith("DVD") else "CD"
    return f"{base}-DL" if base != "CD" and "DL" in upper else base


def job_keys(text: str) -> dict[str, str]:
    """``key = value`` lines of a job or status file, keys as written."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not line.lstrip().startswith(("#", ";")):
            keys.setdefault(key.strip(), value.strip())
    return keys


def robot_message(text: str, job_text: str) -> str:
    """The robot's words in an .ERR file, which is our job file renamed (an assumption
    on what the robot adds, see the module): an error key, else the lines it added."""
    ours = {line.strip() for line in job_text.splitlines()}
    added = [line.strip() for line in text.splitlines() if line.strip() not in ours]
    added = [line for line in added if line]
    for line in added:
        key, sep, value = line.partition("=")
        if sep and key.strip().replace(" ", "").lower() in _MESSAGE_KEYS and value.strip():
            return value.strip()
    return " / ".join(added[-3:]) or "no message from the robot"


def robot_error(message: str) -> BurnerError:
    """Out of blank discs is NoMedia (load discs and retry); the rest is the robot's say."""
    if _NO_MEDIA.search(message):
        return NoMedia(f"the robot has no blank discs: {message}")
    return BurnerError(f"the robot failed: {message}")


def inp_progress(text: str) -> float | None:
    """The robot's own fraction from a ``Progress = NN`` line (our convention)."""
    if match := _PROGRESS.search(text):
        return min(1.0, float(match.group(1)) / 100)
    return None


def _new_job_id() -> str:
    # Letters and digits only, 23 characters: fits both vendors' limits and file names.
    return f"DBX{datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:6].upper()}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding=JOB_ENCODING, errors="replace")
    except OSError:
        return ""  # moved away by the robot's clean-up in the meantime


def _write_durably(path: Path, data: bytes) -> None:
    # fsync before the rename: on a network share the robot must never see the name
    # before the bytes.
    with open(path, "wb") as target:
        target.write(data)
        target.flush()
        os.fsync(target.fileno())


@dataclass(frozen=True)
class _Burned:
    iso: Path
    verified: bool


class HotFolderRobot:
    """What both robots share; a subclass says only how its job file looks.

    ``robot_folder`` is the hot folder as the robot's PC sees it (``C:\\PTBurnJobs``,
    ``\\\\box\\robot``), used for the paths inside job files; by default our own path.
    ``print_label`` is the robot's label design file (path as the robot sees it).
    """

    vendor = "robot"
    job_suffix = ".JOB"

    def __init__(
        self,
        hot_folder: Path,
        timeout_s: float = 3600,
        poll_s: float = 1.0,
        copies: int = 1,
        capacity_bytes: int = CD_CAPACITY,
        kind: str = "CD-R",
        robot_folder: str = "",
        print_label: str = "",
    ) -> None:
        if copies < 1:
            raise ValueError(f"copies must be at least 1, not {copies}")
        self.hot_folder = Path(hot_folder)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.copies = copies
        self.capacity_bytes = capacity_bytes
        self.kind = kind
        self.robot_folder = robot_folder
        self.print_label = print_label
        self.name = f"{self.vendor}:{self.hot_folder}"
        self.destination = f"the {self.vendor} robot (hot folder {self.hot_folder})"
        self._last: _Burned | None = None

    def job_text(self, job: RobotJob) -> str:
        raise NotImplementedError

    def media(self) -> MediaInfo:
        """Always a blank disc: the robot loads one from its input bin for each copy."""
        self._check_folder()
        return MediaInfo(True, True, self.capacity_bytes, self.kind)

    def burn(
        self,
        iso: Path,
        label: str,
        finalize: bool = True,
        speed: int = 0,
        progress: BurnProgress = _no_progress,
    ) -> None:
        """Hand the image to the robot and wait until it has burned (and printed) it."""
        size = image_size(iso)
        check_fits(self.media(), size)  # checks the hot folder is there, too
        self._last = None
        job_id = _new_job_id()
        image = self.hot_folder / f"{job_id}.iso"
        progress(0.0)
        self._copy_in(iso, image, size, progress)
        job_text = self.job_text(self._job(job_id, image.name, label, finalize, speed))
        job_file = self.hot_folder / f"{job_id}{self.job_suffix}"
        self._submit(job_file, job_text, image)
        status = self._wait(job_id, job_file, image, progress)
        image.unlink(missing_ok=True)  # the robot has finished with it, either way
        text = _read_text(status)
        if status.suffix.upper() == ".ERR":
            raise robot_error(robot_message(text, job_text))
        progress(1.0)
        self._last = _Burned(iso.resolve(), self._verified(job_keys(text)))

    def verify(self, iso: Path) -> bool:
        """True when the last burn was of this image and its .DON still asks for
        verification: the robot compares each disc itself and fails the job (.ERR) on a
        bad one, so a .DON of a verifying job means verified discs. We cannot read the
        discs: they are in the robot's output bin."""
        last = self._last
        return last is not None and last.iso == Path(iso).resolve() and last.verified

    def eject(self) -> None:
        """Nothing to do: the robot moves each disc to its output bin itself."""

    def _verified(self, done_keys: dict[str, str]) -> bool:
        return False

    def _job(self, job_id: str, image: str, label: str, finalize: bool, speed: int) -> RobotJob:
        return RobotJob(
            job_id=job_id,
            image=self._robot_path(image),
            copies=self.copies,
            finalize=finalize,
            verify=True,
            speed=speed,
            disc=disc_family(self.kind),
            print_label=self.print_label,
            merge_text=label,
        )

    def _robot_path(self, name: str) -> str:
        if not self.robot_folder:
            return str(self.hot_folder.resolve() / name)
        if "\\" in self.robot_folder or re.match(r"^[A-Za-z]:", self.robot_folder):
            return str(PureWindowsPath(self.robot_folder) / name)
        return str(PurePosixPath(self.robot_folder) / name)

    def _check_folder(self) -> None:
        # A missing hot folder is an unmounted share or a robot PC that is off: service.
        if not self.hot_folder.is_dir():
            raise DriveGone(f"robot hot folder {self.hot_folder}")

    def _copy_in(self, iso: Path, image: Path, size: int, progress: BurnProgress) -> None:
        """Copy under a temporary name, then rename: the robot never sees half an image."""
        partial = image.with_name(image.name + ".part")
        done = 0
        try:
            with open(iso, "rb") as source, open(partial, "wb") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    done += len(chunk)
                    progress(COPY_SHARE * done / size if size else 0.0)
                target.flush()
                os.fsync(target.fileno())
            partial.rename(image)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            self._check_folder()
            raise BurnerError(f"cannot copy the image to the robot: {exc}") from None

    def _submit(self, job_file: Path, job_text: str, image: Path) -> None:
        """Write the job file under a name the robot ignores, then rename it into view."""
        partial = job_file.with_suffix(".tmp")
        try:
            _write_durably(partial, job_text.encode(JOB_ENCODING, errors="replace"))
            partial.rename(job_file)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            image.unlink(missing_ok=True)
            self._check_folder()
            raise BurnerError(f"cannot hand the job to the robot: {exc}") from None

    def _wait(self, job_id: str, job_file: Path, image: Path, progress: BurnProgress) -> Path:
        """Poll until the job's .DON or .ERR appears; return that file."""
        deadline = time.monotonic() + self.timeout_s
        reached = COPY_SHARE
        while True:
            self._check_folder()
            files = _job_files(self.hot_folder, job_id)
            for state in (".DON", ".ERR"):
                if state in files:
                    return files[state]
            if ".INP" in files:
                fraction = inp_progress(_read_text(files[".INP"]))
                if fraction is not None and COPY_SHARE + (1 - COPY_SHARE) * fraction > reached:
                    reached = COPY_SHARE + (1 - COPY_SHARE) * fraction
                    progress(reached)
            left = deadline - time.monotonic()
            if left <= 0:
                self._withdraw(job_file, image)
                raise BurnerError(f"the robot did not answer within {self.timeout_s:g} s")
            time.sleep(min(self.poll_s, left))

    def _withdraw(self, job_file: Path, image: Path) -> None:
        """Take back a job the robot never picked up, so it does not burn it later behind
        the caller's back (a retry would then make two discs). A job the robot already
        renamed is its own now: its image stays until it is done."""
        try:
            job_file.unlink()
        except OSError:
            return
        image.unlink(missing_ok=True)


def _job_files(folder: Path, job_id: str) -> dict[str, Path]:
    """The job's files by upper-case extension; software on Windows may write .don."""
    return {path.suffix.upper(): path for path in folder.glob(f"{job_id}.*")}


class PrimeraRobot(HotFolderRobot):
    """Primera Bravo through PTBurn/PTPublisher's job request folder (.JRQ files)."""

    vendor = "primera"
    job_suffix = ".JRQ"

    def job_text(self, job: RobotJob) -> str:
        return primera_jrq(job)

    def _verified(self, done_keys: dict[str, str]) -> bool:
        return done_keys.get("VerifyDisc", "").upper() == "YES"


class EpsonRobot(HotFolderRobot):
    """Epson PP-100 (Discproducer) through TD Bridge's monitoring folder (.JDF files).

    ``publisher`` is the machine's name in EPSON Total Disc Setup; empty: TD Bridge's
    default machine.
    """

    vendor = "epson"
    job_suffix = ".JDF"

    def __init__(self, hot_folder: Path, publisher: str = "", **options: Any) -> None:
        super().__init__(hot_folder, **options)
        self.publisher = publisher

    def job_text(self, job: RobotJob) -> str:
        return epson_jdf(job, self.publisher)

    def _verified(self, done_keys: dict[str, str]) -> bool:
        return done_keys.get("COMPARE", "").upper() == "YES"


@dataclass(frozen=True)
class RobotOptions(DiscOptions):
    hot_folder: str = ""  # the folder the robot's software watches
    robot_folder: str = ""  # that folder as the robot's PC names it ("" = hot_folder)
    robot_timeout_s: float = 3600.0

    def validate(self, name: str) -> None:
        if not self.hot_folder:
            raise ValueError("needs hot_folder, the robot's")


def _opener(robot: type[HotFolderRobot]) -> Callable[[RobotOptions, DriverContext], Burner]:
    def open_hot_folder(options: RobotOptions, context: DriverContext) -> Burner:
        return robot(
            Path(options.hot_folder),
            timeout_s=options.robot_timeout_s,
            capacity_bytes=options.capacity_bytes,
            robot_folder=options.robot_folder,
        )

    return open_hot_folder


# Disc robots are burners to whoever burns: ``[media] burner`` names one of these too.
ROBOTS: Registry[Burner] = Registry("robot")
ROBOTS.register("primera", _opener(PrimeraRobot), RobotOptions)
ROBOTS.register("epson", _opener(EpsonRobot), RobotOptions)
