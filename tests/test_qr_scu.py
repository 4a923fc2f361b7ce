"""The box as query/retrieve user against DCMTK's dcmqrscp: find, move into the box, and
get into the box's store."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import require
from tests.support.peers import free_port, popen, storescu
from tests.support.synthetic import ct_dataset


@pytest.fixture
def dcmqrscp(tmp_path, make_box):
    """A dcmqrscp archive (AE ARCHIVE) holding a 3-image study, and a box that knows it."""
    require("dcmqrscp", "storescu")
    port = free_port()
    box = make_box(f"""
[[remote]]
name = "archive"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = {port}

[storage]
forward_delay_s = 0.2

[[route]]
when = {{ PatientID = "PRIOR*" }}
fetch_priors = "archive"
""")
    db = tmp_path / "qrdb"
    db.mkdir()
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text(f"""
NetworkTCPPort  = {port}
MaxPDUSize      = 65536
MaxAssociations = 16
HostTable BEGIN
dicombox = (DICOMBOX, 127.0.0.1, {box.port})
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
ARCHIVE {db} RW (200, 1024mb) ANY
AETable END
""")
    proc = popen(["dcmqrscp", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(0.7)
    study = generate_uid()
    data = tmp_path / "data"
    data.mkdir()
    series = generate_uid()
    for n in range(1, 4):
        ct_dataset(
            study, series, n, rows=32, columns=32, patient="ARCH^IVE", patient_id="AR1"
        ).save_as(data / f"{n}.dcm", enforce_file_format=True)
    assert storescu(port, sorted(data.iterdir()), aec="ARCHIVE").returncode == 0
    box.archive_port = port
    yield box, study
    proc.terminate()
    proc.wait()


def test_find_move_and_get_against_dcmqrscp(dcmqrscp, tmp_path: Path):
    box, study = dcmqrscp
    found = box.cli(
        "find",
        "archive",
        "-k",
        "PatientID=AR1",
        "-k",
        "StudyInstanceUID",
        "-k",
        "PatientName",
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert f"StudyInstanceUID={study}" in found.stdout and "1 match(es)" in found.stdout

    moved = box.cli(
        "move",
        "archive",
        "DICOMBOX",
        "-k",
        f"StudyInstanceUID={study}",
    )
    assert moved.returncode == 0 and "3 completed" in moved.stdout, moved.stdout + moved.stderr
    (row,) = json.loads(box.cli("studies", "--json").stdout)
    assert (row["study_instance_uid"], row["instances"]) == (study, 3)

    # get: into a second box's store, through the CLI alone (that box is not running)
    other = tmp_path / "other"
    got = box.cli(
        "--data-dir",
        str(other),
        "get",
        "archive",
        "-k",
        f"StudyInstanceUID={study}",
    )
    assert got.returncode == 0 and "3 completed" in got.stdout, got.stdout + got.stderr
    files = sorted((other / "studies").rglob("*.dcm"))
    assert len(files) == 3
    assert {str(pydicom.dcmread(f).StudyInstanceUID) for f in files} == {study}


def test_unknown_remote_is_a_clear_error(box):
    result = box.cli("find", "nowhere", "-k", "PatientID")
    assert result.returncode != 0
    assert "'nowhere' is no [[remote]] name" in result.stdout + result.stderr


def test_route_fetches_priors_of_an_arriving_study(dcmqrscp, tmp_path: Path):
    box, _ = dcmqrscp
    prior, current = generate_uid(), generate_uid()
    for study, folder, date in ((prior, "prior", "20240101"), (current, "current", "20261123")):
        (tmp_path / folder).mkdir()
        ds = ct_dataset(study, generate_uid(), 1, rows=16, columns=16, patient_id="PRIOR1")
        ds.StudyDate = date
        ds.save_as(tmp_path / folder / "1.dcm", enforce_file_format=True)
    assert storescu(box.archive_port, [tmp_path / "prior" / "1.dcm"], aec="ARCHIVE").returncode == 0
    assert storescu(box.port, [tmp_path / "current" / "1.dcm"]).returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = {r["study_instance_uid"] for r in json.loads(box.cli("studies", "--json").stdout)}
        if prior in held:
            break
        time.sleep(0.3)
    assert held == {prior, current}, box.cli("jobs").stdout
    (job,) = [
        j for j in json.loads(box.cli("jobs", "--json").stdout) if j["kind"] == "fetch-priors"
    ]
    assert job["state"] == "done" and "fetched 1" in job["progress"], job
