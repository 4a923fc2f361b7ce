"""Disc robots through their hot folders, against a simulated robot thread that reads the
job file, checks the image is whole, and answers the way PTBurn and TD Bridge do: by
renaming the job file to .INP, then to .DON or .ERR."""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dicombox.hal.burner import BurnerError, DiscTooSmall, DriveGone, NoMedia
from dicombox.hal.robot import (
    COPY_SHARE,
    ROBOTS,
    EpsonRobot,
    PrimeraRobot,
    RobotOptions,
    disc_family,
    job_keys,
    robot_message,
)

ISO_SIZE = 3 * (1 << 20) + 12_345  # several copy chunks and a ragged end


@dataclass(frozen=True)
class Vendor:
    cls: type
    suffix: str
    image_key: str
    verify_key: str
    close_key: str
    copies_key: str
    disc_key: str
    cd_name: str


PRIMERA = Vendor(
    PrimeraRobot, ".JRQ", "ImageFile", "VerifyDisc", "CloseDisc", "Copies", "DiscType", "CDR"
)
EPSON = Vendor(EpsonRobot, ".JDF", "IMAGE", "COMPARE", "CLOSE", "COPIES", "DISC_TYPE", "CD")


@dataclass(eq=False)  # a thread compares and hashes by identity
class FakeRobot(threading.Thread):
    """Watches the hot folder for one job file and answers it.

    ``answer`` is "DON", "ERR" or "gone" (the share disappears mid-job). When it sees the
    job file it records the image's size and bytes at that very moment.
    """

    folder: Path
    suffix: str
    image_key: str
    answer: str = "DON"
    message: str = ""
    done_ext: str = ".DON"
    keys: dict[str, str] = field(default_factory=dict)
    image_size_seen: int = -1
    image_bytes_seen: bytes = b""
    job_files_seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            jobs = [p for p in self.folder.glob("*") if p.suffix.upper() == self.suffix]
            if jobs:
                self._answer(jobs[0])
                return
            time.sleep(0.01)

    def _answer(self, job: Path) -> None:
        # The robot's PC may name the share differently (C:\PTBurnJobs): go by file name.
        written = job_keys(job.read_text(encoding="cp1252"))[self.image_key]
        image = self.folder / written.replace("\\", "/").rsplit("/", 1)[-1]
        self.image_size_seen = image.stat().st_size  # before anything else: the race
        self.image_bytes_seen = image.read_bytes()
        text = job.read_text(encoding="cp1252")
        self.keys = job_keys(text)
        self.job_files_seen = sorted(p.name for p in self.folder.iterdir())
        in_progress = job.with_suffix(".INP")
        job.rename(in_progress)
        in_progress.write_text(text + "Progress = 50\r\n", encoding="cp1252")
        time.sleep(0.15)
        if self.answer == "gone":
            shutil.rmtree(self.folder)
        elif self.answer == "DON":
            in_progress.rename(job.with_suffix(self.done_ext))
        else:
            failed = job.with_suffix(".ERR")
            in_progress.rename(failed)
            failed.write_text(text + f"Error = {self.message}\r\n", encoding="cp1252")


@pytest.fixture(params=[PRIMERA, EPSON], ids=["primera", "epson"])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    return request.param


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    path = tmp_path / "study.iso"
    path.write_bytes(os.urandom(ISO_SIZE))
    return path


@pytest.fixture
def hot(tmp_path: Path) -> Path:
    folder = tmp_path / "hot"
    folder.mkdir()
    return folder


def start_robot(vendor: Vendor, hot: Path, **kwargs: str) -> FakeRobot:
    robot = FakeRobot(hot, vendor.suffix, vendor.image_key, **kwargs)
    robot.start()
    return robot


def make(vendor: Vendor, hot: Path, **options: object):
    options.setdefault("poll_s", 0.02)
    options.setdefault("timeout_s", 10)
    return vendor.cls(hot, **options)


def test_burn_hands_a_whole_image_and_waits_for_done(vendor: Vendor, hot: Path, iso: Path):
    fake = start_robot(vendor, hot)
    robot = make(vendor, hot, copies=2)
    seen: list[float] = []

    robot.burn(iso, "PATIENT_1", progress=seen.append)
    fake.join(5)

    assert fake.image_size_seen == ISO_SIZE
    assert fake.image_bytes_seen == iso.read_bytes()
    assert not [n for n in fake.job_files_seen if n.endswith((".part", ".tmp"))]
    keys = fake.keys
    assert Path(keys[vendor.image_key]).parent == hot.resolve()
    assert keys[vendor.copies_key] == "2"
    assert keys[vendor.close_key] == "YES"
    assert keys[vendor.verify_key] == "YES"
    assert keys[vendor.disc_key] == vendor.cd_name
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)
    assert COPY_SHARE + (1 - COPY_SHARE) * 0.5 in seen  # the .INP's "Progress = 50"
    assert robot.verify(iso) is True
    assert not list(hot.glob("*.iso")), "the image is removed once the robot is done"


def test_primera_job_file_keys(hot: Path, iso: Path):
    fake = start_robot(PRIMERA, hot)
    robot = make(PRIMERA, hot, print_label=r"C:\labels\dicom.std", robot_folder=r"C:\PTBurnJobs")
    robot.burn(iso, "PATIENT_1", speed=16)
    fake.join(5)
    keys = fake.keys
    assert keys["JobID"].startswith("DBX") and len(keys["JobID"]) <= 32
    assert keys["ImageFile"].startswith("C:\\PTBurnJobs\\DBX") and keys["ImageFile"].endswith(
        ".iso"
    )
    assert keys["ClientID"] == "dicombox"
    assert keys["RejectIfNotBlank"] == "YES"
    assert keys["BurnSpeed"] == "16"
    assert keys["PrintLabel"] == r"C:\labels\dicom.std"
    assert keys["MergeField"] == "PATIENT_1"


def test_epson_job_file_keys(hot: Path, iso: Path):
    fake = start_robot(EPSON, hot)
    robot = make(EPSON, hot, publisher="PP-100 #1", kind="DVD+R DL", capacity_bytes=8 << 30)
    robot.burn(iso, "PATIENT_1", finalize=False)
    fake.join(5)
    keys = fake.keys
    assert keys["JOB_ID"].startswith("DBX")
    assert keys["PUBLISHER"] == "PP-100 #1"
    assert keys["DISC_TYPE"] == "DVD-DL"
    assert keys["CLOSE"] == "NO"
    assert "LABEL" not in keys and "WRITING_SPEED" not in keys


def test_lower_case_done_extension_is_understood(vendor: Vendor, hot: Path, iso: Path):
    fake = start_robot(vendor, hot, done_ext=".don")
    make(vendor, hot).burn(iso, "X")
    fake.join(5)


def test_empty_input_bin_is_no_media(vendor: Vendor, hot: Path, iso: Path):
    start_robot(vendor, hot, answer="ERR", message="Input bin empty")
    robot = make(vendor, hot)
    with pytest.raises(NoMedia, match="Input bin empty"):
        robot.burn(iso, "X")
    assert robot.verify(iso) is False
    assert not list(hot.glob("*.iso"))


def test_robot_error_carries_its_message(vendor: Vendor, hot: Path, iso: Path):
    start_robot(vendor, hot, answer="ERR", message="Disc write error")
    with pytest.raises(BurnerError, match="Disc write error") as caught:
        make(vendor, hot).burn(iso, "X")
    assert not isinstance(caught.value, NoMedia)


def test_no_answer_times_out_and_withdraws_the_job(vendor: Vendor, hot: Path, iso: Path):
    robot = make(vendor, hot, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(BurnerError, match="did not answer within 0.5 s"):
        robot.burn(iso, "X")
    assert time.monotonic() - started < 5
    assert list(hot.iterdir()) == [], "an unclaimed job must not be burned later"


def test_missing_hot_folder_is_drive_gone(vendor: Vendor, tmp_path: Path, iso: Path):
    robot = make(vendor, tmp_path / "not-mounted")
    with pytest.raises(DriveGone):
        robot.burn(iso, "X")
    with pytest.raises(DriveGone):
        robot.media()


def test_hot_folder_vanishing_mid_job_is_drive_gone(vendor: Vendor, hot: Path, iso: Path):
    start_robot(vendor, hot, answer="gone")
    with pytest.raises(DriveGone):
        make(vendor, hot).burn(iso, "X")


def test_media_eject_and_refusals(vendor: Vendor, hot: Path, iso: Path):
    robot = make(vendor, hot, capacity_bytes=1 << 20)
    info = robot.media()
    assert (info.present, info.blank, info.capacity_bytes, info.kind) == (
        True,
        True,
        1 << 20,
        "CD-R",
    )
    robot.eject()  # nothing to do, and no error
    with pytest.raises(DiscTooSmall):
        robot.burn(iso, "X")
    with pytest.raises(BurnerError, match="no image"):
        robot.burn(iso.with_name("missing.iso"), "X")
    assert robot.verify(iso) is False
    assert list(hot.iterdir()) == []


def test_open_robot():
    assert isinstance(ROBOTS.open("primera", RobotOptions(hot_folder="/x")), PrimeraRobot)
    options = RobotOptions(hot_folder="/x", robot_timeout_s=9, disc="DVD", robot_folder="C:\\J")
    epson = ROBOTS.open("epson", options)
    assert isinstance(epson, EpsonRobot)
    assert (epson.timeout_s, epson.capacity_bytes, epson.robot_folder, epson.hot_folder) == (
        9,
        4_700_000_000,
        "C:\\J",
        Path("/x"),
    )
    assert epson.destination == "the epson robot (hot folder /x)"
    epson = EpsonRobot(hot_folder="/x", publisher="P", kind="BD-R", copies=3)
    assert (epson.publisher, epson.kind, epson.copies) == ("P", "BD-R", 3)
    with pytest.raises(ValueError, match="unknown robot driver 'rimage'; known: primera, epson"):
        ROBOTS.open("rimage", RobotOptions(hot_folder="/x"))
    with pytest.raises(ValueError, match="copies"):
        PrimeraRobot(hot_folder=Path("/x"), copies=0)


def test_helpers():
    assert [disc_family(k) for k in ("CD-R", "DVD+R", "DVD+R DL", "BD-R", "BD-R DL", "")] == [
        "CD", "DVD", "DVD-DL", "BD", "BD-DL", "CD",
    ]  # fmt: skip
    job = "JobID = A\r\nCopies = 1\r\n"
    assert robot_message(job + "ErrorString = Printer jam\r\n", job) == "Printer jam"
    assert robot_message(job + "Cover open\r\n", job) == "Cover open"
    assert robot_message(job, job) == "no message from the robot"
