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
    yield box, study
    proc.terminate()
    proc.wait()


def test_find_move_and_get_against_dcmqrscp(dcmqrscp, tmp_path: Path):
    box, study = dcmqrscp
    found = box.cli(
        "--config",
        str(box.config),
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
        "--config",
        str(box.config),
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
        "--config",
        str(box.config),
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
