"""C-MOVE and C-GET against DCMTK's movescu (into storescp) and getscu: every instance of a
study comes back byte for byte; unknown and unreachable destinations are reported."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import free_port, popen, run, storescu
from tests.support.synthetic import ct_dataset
from tests.test_storage_peers import dataset_bytes


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A box holding one CT study of five images and one JPEG 2000 image, with a
    configured move destination MOVEDEST on a port of its own."""
    require("storescu", "dcmsend", "movescu", "getscu", "storescp")
    root = tmp_path_factory.mktemp("retrieve")
    data = root / "data"
    data.mkdir()
    study, series = generate_uid(), generate_uid()
    for n in range(1, 6):
        ct_dataset(study, series, n, rows=64, columns=64).save_as(
            data / f"ct{n}.dcm", enforce_file_format=True
        )
    dest_port = free_port()
    box = RunningBox(
        root / "var",
        f"""
[[remote]]
name = "viewer"
ae_title = "MOVEDEST"
host = "127.0.0.1"
port = {dest_port}

[[remote]]
name = "down"
ae_title = "DOWN"
host = "127.0.0.1"
port = {free_port()}
""",
    ).start()
    assert storescu(box.port, sorted(data.iterdir())).returncode == 0
    j2k = Path(get_testdata_file("JPEG2000.dcm"))
    assert run(["dcmsend", "-aec", "DICOMBOX", "127.0.0.1", box.port, j2k]).returncode == 0
    box.study, box.dest_port, box.j2k = study, dest_port, pydicom.dcmread(j2k)
    yield box
    box.stop()


def stored(box, sop_uid: str) -> Path:
    (path,) = (box.data_dir / "studies").rglob(f"{sop_uid}.dcm")
    return path


def received_match_store(box, folder: Path, expected: int) -> None:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert len(files) == expected, [p.name for p in files]
    for path in files:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert dataset_bytes(path) == dataset_bytes(stored(box, uid)), path.name


def test_c_move_study_to_storescp_byte_identical(archive, tmp_path):
    out = tmp_path / "dest"
    out.mkdir()
    peer = popen(["storescp", "-aet", "MOVEDEST", "-B", "+xa", "-od", out, str(archive.dest_port)])
    try:
        time.sleep(0.5)
        result = run(
            [
                "movescu",
                "-v",
                "-S",
                "-aec",
                "DICOMBOX",
                "-aem",
                "MOVEDEST",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={archive.study}",
                "127.0.0.1",
                archive.port,
            ]
        )
    finally:
        peer.terminate()
        peer.wait()
    log = result.stdout + result.stderr
    assert "Received Final Move Response (Success)" in log, log
    assert "Received Move Response 4 (Pending)" in log  # one pending response per image
    received_match_store(archive, out, 5)


def test_c_get_series_byte_identical(archive, tmp_path):
    out = tmp_path / "get"
    out.mkdir()
    result = run(
        [
            "getscu",
            "-v",
            "-S",
            "+B",
            "-aec",
            "DICOMBOX",
            "-od",
            out,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={archive.study}",
            "127.0.0.1",
            archive.port,
        ]
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    received_match_store(archive, out, 5)


def test_c_get_of_a_syntax_the_requestor_did_not_offer_fails_cleanly(archive, tmp_path):
    out = tmp_path / "get"
    out.mkdir()
    uid = archive.j2k.SOPInstanceUID
    result = run(
        [
            "getscu",
            "-v",
            "-S",
            "-aec",
            "DICOMBOX",
            "-od",
            out,  # proposes native only
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            f"StudyInstanceUID={archive.j2k.StudyInstanceUID}",
            "-k",
            f"SeriesInstanceUID={archive.j2k.SeriesInstanceUID}",
            "-k",
            f"SOPInstanceUID={uid}",
            "127.0.0.1",
            archive.port,
        ]
    )
    log = result.stdout + result.stderr
    assert "Number of Failed Suboperations    : 1" in log, log
    assert list(out.iterdir()) == []
    assert "opened no context for" in archive.output()


def test_c_move_to_unknown_destination_is_a801(archive):
    result = run(
        [
            "movescu",
            "-S",
            "-aec",
            "DICOMBOX",
            "-aem",
            "NOBODY",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={archive.study}",
            "127.0.0.1",
            archive.port,
        ]
    )
    assert "MoveDestinationUnknown" in result.stdout + result.stderr


def test_c_move_to_a_destination_that_is_down_is_a702(archive):
    result = run(
        [
            "movescu",
            "-S",
            "-aec",
            "DICOMBOX",
            "-aem",
            "DOWN",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={archive.study}",
            "127.0.0.1",
            archive.port,
        ]
    )
    log = result.stdout + result.stderr
    assert "OutOfResourcesSubOperations" in log, log  # A702
    # and the box goes on answering
    assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", archive.port]).returncode == 0


def test_c_move_cancelled_midway(make_box, tmp_path):
    require("storescu", "movescu", "storescp")
    data = tmp_path / "data"
    data.mkdir()
    study, series = generate_uid(), generate_uid()
    for n in range(200):
        ct_dataset(study, series, n, rows=8, columns=8).save_as(
            data / f"{n:03d}.dcm", enforce_file_format=True
        )
    dest_port = free_port()
    box = make_box(
        f'[[remote]]\nname = "d"\nae_title = "MOVEDEST"\nhost = "127.0.0.1"\nport = {dest_port}\n'
    )
    assert storescu(box.port, sorted(data.iterdir())).returncode == 0
    out = tmp_path / "dest"
    out.mkdir()
    peer = popen(["storescp", "-aet", "MOVEDEST", "-od", out, str(dest_port)])
    try:
        time.sleep(0.5)
        result = run(
            [
                "movescu",
                "-v",
                "-S",
                "--cancel",
                "1",
                "-aec",
                "DICOMBOX",
                "-aem",
                "MOVEDEST",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study}",
                "127.0.0.1",
                box.port,
            ]
        )
    finally:
        peer.terminate()
        peer.wait()
    log = result.stdout + result.stderr
    assert "Received Final Move Response (Cancel" in log, log
    assert 1 <= len(list(out.iterdir())) < 200
