"""A burn or a USB export that leaves instances out: the job ends "done with problems"
(not a green "done"), with one plain line per instance left out in ``dicombox jobs``,
the console and the front panel, and the decoder's own exception only in the log. The
disc's README.TXT says what is on it and whose institution wrote it; ``dicombox burn``
and ``dicombox export usb`` say where the result went."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from dicombox.core.events import EventBus
from dicombox.core.index.engine import open_engine, sqlite_url
from dicombox.core.jobs import DONE_WITH_PROBLEMS, JobQueue, JobRunner
from dicombox.plugins.media.fileset import build_fileset
from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import run, storescu
from tests.support.synthetic import ct_dataset
from tests.support.webconsole import add_user, signed_in, wait_job, web_url
from tests.test_panel import PtyDisplay

INSTITUTION = "Sint-Elisabeth Hospital"
RAW_DECODER_TEXT = ("Traceback", "RuntimeError", "libjpeg", "plugins:")


def damaged_jpeg(plain: Path, damaged: Path) -> None:
    """``plain`` compressed with DCMTK's dcmcjpeg (JPEG Lossless), its JPEG stream then
    cut after 20 bytes: a whole DICOM file whose pixel data no decoder can read."""
    compressed = damaged.with_suffix(".jpeg.dcm")
    done = run(["dcmcjpeg", plain, compressed])
    assert done.returncode == 0, done.stderr
    ds = pydicom.dcmread(compressed)
    (frame,) = [b"".join(f) for f in generate_fragmented_frames(ds.PixelData)]
    ds.PixelData = encapsulate([frame[:20]])
    ds.save_as(damaged, enforce_file_format=True)
    compressed.unlink()


def study_with_a_damaged_image(folder: Path) -> tuple[str, list[Path], Path]:
    """Images 1-3 whole, image 4 with undecodable pixel data."""
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(1, 5):
        path = folder / f"{n}.dcm"
        ds = ct_dataset(study, series, n, rows=32, columns=32, patient="GAP^GRETA")
        ds.WindowCenter, ds.WindowWidth = 1000, 2000
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    damaged = folder / "4.damaged.dcm"
    damaged_jpeg(files[3], damaged)
    files[3].unlink()
    return study, files[:3], damaged


@pytest.fixture(scope="module")
def display() -> Iterator[PtyDisplay]:
    end = PtyDisplay()
    yield end
    end.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory, display) -> Iterator[RunningBox]:
    """A box with a front panel (on a pty), its console, the simulated burner and a
    USB stick, holding a study one of whose four images cannot be decoded."""
    require("storescu", "dcmsend", "dcmcjpeg", "xorriso")
    root = tmp_path_factory.mktemp("media")
    (root / "usb" / "STICK").mkdir(parents=True)
    config = (
        f'[box]\ninstitution = "{INSTITUTION}"\n'
        f'[panel]\nport = "{display.path}"\nscreen_s = 60\n'
        '[web]\nlisten = "127.0.0.1:0"\n'
        f'[media]\ndiscs_dir = "{root / "discs"}"\nusb_root = "{root / "usb"}"\n'
    )
    box = RunningBox(root / "var", config).start()
    try:
        study, whole, damaged = study_with_a_damaged_image(root / "study")
        sent = storescu(box.port, whole)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        # dcmsend offers the file's own syntax, JPEG Lossless (storescu would decode it).
        sent = run(["dcmsend", "-aec", "DICOMBOX", "127.0.0.1", box.port, damaged])
        assert sent.returncode == 0, sent.stdout + sent.stderr
        box.study = study  # type: ignore[attr-defined]
        box.damaged_uid = str(pydicom.dcmread(damaged).SOPInstanceUID)  # type: ignore[attr-defined]
        box.root = root  # type: ignore[attr-defined]
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
def burned(media: RunningBox) -> dict:
    """The study burned: the CLI's answer and the job once it has ended."""
    answer = media.cli("burn", media.study)  # type: ignore[attr-defined]
    assert answer.returncode == 0, answer.stderr
    job = media.wait_job("burn", "problems")
    return {"answer": answer.stdout, "job": job}


def test_a_burn_that_leaves_an_image_out_is_done_with_problems(media, burned):
    job = burned["job"]
    (problem,) = job["last_error"].splitlines()  # one line for the one image left out
    assert problem.startswith("left out CT series 1 image 4"), problem
    assert media.damaged_uid in problem and "cannot be decoded" in problem, problem
    (iso,) = (media.root / "discs").glob("disc-*.iso")
    assert job["progress"] == f"3 instances burned, 1 disc(s): {iso}; 1 left out", job
    for raw in RAW_DECODER_TEXT:
        assert raw not in job["last_error"] + job["progress"], raw
    # The decoder's own words and the traceback are in the log, for whoever digs deeper.
    log = media.output()
    assert "Traceback" in log and "libjpeg" in log and "A misplaced marker" in log
    # `dicombox jobs` says so, and names the image left out in a line of its own.
    listing = media.cli("jobs").stdout
    assert "done with problems" in listing and problem in listing.splitlines()[-1], listing


def test_the_burn_command_says_where_the_discs_go(media, burned):
    assert f"ISO images in {media.root / 'discs'}" in burned["answer"], burned["answer"]


def test_the_disc_readme_names_the_institution_and_the_previews(media, burned, tmp_path):
    (iso,) = (media.root / "discs").glob("disc-*.iso")
    out = tmp_path / "disc"
    assert run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out]).returncode == 0
    assert len(list(FileSet(out / "DICOMDIR"))) == 3
    assert list((out / "IHE_PDI").glob("*.JPG"))
    readme = (out / "README.TXT").read_text()
    assert re.search(rf"^Institution: +{INSTITUTION}\r?$", readme, re.MULTILINE), readme
    assert "DICOMBOX" not in readme  # the AE title is no institution
    assert "no web-viewable" not in readme
    assert "IHE_PDI/INDEX.HTM" in readme and "preview" in readme, readme


def test_the_panel_error_screen_shows_the_problem(media, burned, display):
    display.press(b"B")  # DOWN: from the box's identity to the next screen, the error
    shown = " ".join(display.wait_for("problems").split())
    assert "ERROR" in shown and f"burn job {burned['job']['id']}" in shown, shown
    assert "left out" in shown, shown


def test_the_console_shows_the_problem_state_and_last_failure(media, burned):
    add_user(media, "otto", "operator")
    client = signed_in(web_url(media), "otto")
    try:
        job = client.get(f"/api/jobs/{burned['job']['id']}").json()
        assert job["state"] == "problems" and job["state_label"] == "done with problems"
        assert job["percent"] == 100 and not job["can_retry"]
        listed = client.get("/api/jobs", params={"state": "problems"}).json()
        assert [j["id"] for j in listed] == [job["id"]]
        dashboard = client.get("/").text
        failure = dashboard.split("Last failure", 1)[1].split("</section>", 1)[0]
        assert "done with problems" in failure and "left out CT series 1 image 4" in failure
        assert "none" not in failure
        jobs = client.get("/jobs").text
        row = jobs.split(f'id="job-{job["id"]}"', 1)[1].split("</tr>", 1)[0]
        assert "state-problems" in jobs and "done with problems" in row
    finally:
        client.close()


def test_usb_export_names_the_stick_and_what_was_already_there(media):
    stick = media.root / "usb" / "STICK"
    first = media.cli("export", "usb", media.study)
    assert first.returncode == 3, first.stdout + first.stderr
    assert f"3 instances written to the stick 'STICK' ({stick})" in first.stdout, first.stdout
    (problem,) = first.stderr.splitlines()
    assert problem.startswith("left out CT series 1 image 4") and "cannot be decoded" in problem
    for raw in RAW_DECODER_TEXT:
        assert raw not in first.stdout + first.stderr, raw
    again = media.cli("export", "usb", media.study)
    assert again.returncode == 3, again.stdout + again.stderr
    assert "0 instances written" in again.stdout and "3 were already there" in again.stdout
    assert len(list(FileSet(stick / "DICOMDIR"))) == 3


def test_a_console_export_that_leaves_an_image_out_is_done_with_problems(media):
    add_user(media, "ulla", "operator")
    client = signed_in(web_url(media), "ulla")
    try:
        queued = client.post("/api/actions/export", json={"studies": [media.study]}).json()
        job = wait_job(client, queued["job"], "problems")
    finally:
        client.close()
    assert job["kind"] == "console" and "instances written" in job["progress"], job
    (problem,) = job["last_error"].splitlines()
    assert problem.startswith("left out CT series 1 image 4"), problem


def test_readme_says_dicom_only_without_previews_or_viewer(tmp_path):
    source = tmp_path / "one.dcm"
    ct_dataset(generate_uid(), generate_uid(), 1, rows=16, columns=16).save_as(
        source, enforce_file_format=True
    )
    build_fileset([source], tmp_path / "plain", label={"institution": INSTITUTION})
    plain = (tmp_path / "plain" / "README.TXT").read_text()
    assert "DICOM only" in plain and "no web-viewable" in plain
    assert f"Institution: {INSTITUTION}" in plain
    build_fileset([source], tmp_path / "web", previews=True)
    web = (tmp_path / "web" / "README.TXT").read_text()
    assert "DICOM only" not in web and "IHE_PDI/INDEX.HTM" in web


def test_a_handler_that_returns_problems_ends_its_job_done_with_problems(tmp_path):
    """The core's side, for any job kind: the problems become the job's last error, one
    line each, and the bus hears "job.problems" (the panel and console listen)."""
    from dicombox.core.index.study_index import StudyIndex

    queue = JobQueue(StudyIndex(open_engine(sqlite_url(tmp_path))).engine)
    bus, heard = EventBus(), []
    bus.subscribe("job.problems", heard.append)
    job_id = queue.enqueue("partial", {})
    runner = JobRunner(
        queue, {"partial": lambda job, progress: ["first\nwrapped", "second"]}, bus, poll_s=0.05
    )
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while queue.get(job_id).state != DONE_WITH_PROBLEMS:
            assert time.monotonic() < deadline, queue.get(job_id)
            time.sleep(0.05)
    finally:
        runner.stop()
    assert queue.get(job_id).last_error == "first wrapped\nsecond"
    (event,) = heard
    assert event.fields == {
        "job": job_id,
        "kind": "partial",
        "problems": ["first wrapped", "second"],
    }
