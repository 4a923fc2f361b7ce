"""Orthanc as the other archive: the box queries and pulls from it, and Orthanc queries
and pulls from the box (through its REST API, which drives its DICOM client)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import require
from tests.support.orthanc import ORTHANC, OrthancPeer
from tests.support.peers import storescu
from tests.support.synthetic import ct_dataset


@pytest.fixture
def pair(tmp_path, make_box):
    """A box and an Orthanc that know each other, Orthanc holding a 4-image study."""
    require("storescu")
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc not installed (make test installs it)")
    orthanc = OrthancPeer(tmp_path / "orthanc")
    box = make_box(f"""
[[remote]]
name = "orthanc"
ae_title = "ORTHANC"
host = "127.0.0.1"
port = {orthanc.dicom_port}
""")
    orthanc.modalities["dicombox"] = ("DICOMBOX", "127.0.0.1", box.port)
    orthanc.start()
    study, series = generate_uid(), generate_uid()
    data = tmp_path / "data"
    data.mkdir()
    for n in range(1, 5):
        ct_dataset(
            study, series, n, rows=32, columns=32, patient="ORTH^ANC", patient_id="OR1"
        ).save_as(data / f"{n}.dcm", enforce_file_format=True)
    assert (
        storescu(
            orthanc.dicom_port, sorted(data.iterdir()), aec="ORTHANC", aet="DICOMBOX"
        ).returncode
        == 0
    )
    yield box, orthanc, study
    orthanc.stop()


def test_box_finds_moves_and_gets_from_orthanc(pair, tmp_path):
    box, orthanc, study = pair
    config = ("--config", str(box.config))
    found = box.cli(*config, "find", "orthanc", "-k", "PatientID=OR1", "-k", "StudyInstanceUID")
    assert found.returncode == 0 and f"StudyInstanceUID={study}" in found.stdout, found.stdout
    moved = box.cli(*config, "move", "orthanc", "DICOMBOX", "-k", f"StudyInstanceUID={study}")
    assert moved.returncode == 0 and "4 completed" in moved.stdout, moved.stdout + moved.stderr
    (row,) = json.loads(box.cli("studies", "--json").stdout)
    assert row["instances"] == 4
    got = box.cli(
        *config,
        "--data-dir",
        str(tmp_path / "other"),
        "get",
        "orthanc",
        "-k",
        f"StudyInstanceUID={study}",
    )
    assert got.returncode == 0 and "4 completed" in got.stdout, got.stdout + got.stderr
    assert len(list((tmp_path / "other" / "studies").rglob("*.dcm"))) == 4


def test_orthanc_queries_and_retrieves_from_the_box(pair, tmp_path):
    box, orthanc, _ = pair
    mine = tmp_path / "mine"
    mine.mkdir()
    other_study = generate_uid()
    for n in range(1, 3):
        ct_dataset(
            other_study,
            generate_uid(),
            n,
            rows=16,
            columns=16,
            patient="BOX^ONLY",
            patient_id="BX1",
        ).save_as(mine / f"{n}.dcm", enforce_file_format=True)
    assert storescu(box.port, sorted(mine.iterdir())).returncode == 0
    query = orthanc.rest(
        "/modalities/dicombox/query",
        {"Level": "Study", "Query": {"PatientID": "BX1", "StudyInstanceUID": ""}},
    )
    answers = orthanc.rest(f"/queries/{query['ID']}/answers?expand")
    assert [a["0020,000d"]["Value"] for a in answers] == [other_study]
    orthanc.rest(f"/queries/{query['ID']}/retrieve", {"TargetAet": "ORTHANC", "Synchronous": True})
    studies = orthanc.rest(
        "/tools/find", {"Level": "Study", "Query": {"PatientID": "BX1"}, "Expand": True}
    )
    assert len(studies) == 1
    instances = orthanc.rest(f"/studies/{studies[0]['ID']}/instances")
    assert len(instances) == 2
    uids = {i["MainDicomTags"]["SOPInstanceUID"] for i in instances}
    stored = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in mine.iterdir()
    }
    assert uids == stored
