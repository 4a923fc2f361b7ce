"""C-MOVE and C-GET against DCMTK's movescu (into storescp) and getscu: every instance of a
study comes back byte for byte; unknown and unreachable destinations are reported."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

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


def retrieve(tool: str, port: int, keys: list[str], *options: object):
    """Run movescu or getscu against the box (Study Root) with these keys."""
    args: list[object] = [tool, "-v", "-S", "-aec", "DICOMBOX", *options]
    for key in keys:
        args += ["-k", key]
    return run([*args, "127.0.0.1", port])


def study_keys(study_uid: str) -> list[str]:
    return ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_uid}"]


def test_c_move_study_to_storescp_byte_identical(archive, tmp_path):
    out = tmp_path / "dest"
    out.mkdir()
    peer = popen(["storescp", "-aet", "MOVEDEST", "-B", "+xa", "-od", out, str(archive.dest_port)])
    try:
        time.sleep(0.5)
        result = retrieve("movescu", archive.port, study_keys(archive.study), "-aem", "MOVEDEST")
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
    result = retrieve("getscu", archive.port, study_keys(archive.study), "+B", "-od", out)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    received_match_store(archive, out, 5)


def test_c_get_decompresses_for_a_requestor_that_takes_native_only(archive, tmp_path):
    out = tmp_path / "get"
    out.mkdir()
    j2k = archive.j2k
    keys = [
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={j2k.StudyInstanceUID}",
        f"SeriesInstanceUID={j2k.SeriesInstanceUID}",
        f"SOPInstanceUID={j2k.SOPInstanceUID}",
    ]
    result = retrieve("getscu", archive.port, keys, "-od", out)  # proposes native only
    log = result.stdout + result.stderr
    assert "Number of Completed Suboperations : 1" in log, log
    (received,) = out.iterdir()
    got = pydicom.dcmread(received)
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    assert np.array_equal(got.pixel_array, j2k.pixel_array)


def test_c_get_stores_nothing_to_a_requestor_that_took_no_scp_role(archive):
    """Without SCP/SCU role selection the requestor stays the SCU of the storage class
    (PS3.4 C.4.3.1): the box may not C-STORE to it, so every sub-operation fails and
    nothing is sent."""
    ae = AE(ae_title="NOROLE")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    received: list[str] = []  # every DIMSE message that reached the requestor

    def on_message(event: Event) -> None:
        received.append(type(event.message).__name__)

    assoc = ae.associate(
        "127.0.0.1",
        archive.port,
        ae_title="DICOMBOX",
        evt_handlers=[(evt.EVT_DIMSE_RECV, on_message)],
    )
    assert assoc.is_established
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", archive.study
    answers = [
        status
        for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        if status
    ]
    assoc.release()
    final = answers[-1]
    assert final.Status in (0xA702, 0xB000), hex(final.Status)
    assert (final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (5, 0)
    assert "C_STORE_RQ" not in received and "C_GET_RSP" in received


def test_c_move_to_unknown_destination_is_a801(archive):
    result = retrieve("movescu", archive.port, study_keys(archive.study), "-aem", "NOBODY")
    assert "MoveDestinationUnknown" in result.stdout + result.stderr


def test_c_move_to_a_destination_that_is_down_is_a702(archive):
    result = retrieve("movescu", archive.port, study_keys(archive.study), "-aem", "DOWN")
    log = result.stdout + result.stderr
    assert "OutOfResourcesSubOperations" in log, log  # A702
    # and the box goes on answering
    assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", archive.port]).returncode == 0


def many_images(make_box, tmp_path, count: int, remote: str = ""):
    """A box holding one study of ``count`` tiny CT images; returns it and the study UID."""
    data = tmp_path / "data"
    data.mkdir()
    study, series = generate_uid(), generate_uid()
    for n in range(count):
        ct_dataset(study, series, n, rows=8, columns=8).save_as(
            data / f"{n:03d}.dcm", enforce_file_format=True
        )
    box = make_box(remote)
    assert storescu(box.port, sorted(data.iterdir())).returncode == 0
    return box, study


def test_c_move_cancelled_midway(make_box, tmp_path):
    require("storescu", "movescu", "storescp")
    dest_port = free_port()
    box, study = many_images(
        make_box,
        tmp_path,
        200,
        f'[[remote]]\nname = "d"\nae_title = "MOVEDEST"\nhost = "127.0.0.1"\nport = {dest_port}\n',
    )
    out = tmp_path / "dest"
    out.mkdir()
    peer = popen(["storescp", "-aet", "MOVEDEST", "-od", out, str(dest_port)])
    try:
        time.sleep(0.5)
        result = retrieve(
            "movescu", box.port, study_keys(study), "--cancel", "1", "-aem", "MOVEDEST"
        )
    finally:
        peer.terminate()
        peer.wait()
    log = result.stdout + result.stderr
    assert "Received Final Move Response (Cancel" in log, log
    assert 1 <= len(list(out.iterdir())) < 200


def test_c_get_cancelled_midway(make_box, tmp_path):
    """getscu cannot cancel, so a pynetdicom requestor sends the C-CANCEL after the first
    image arrives; the box stops and answers FE00 with the counts so far."""
    require("storescu")
    box, study = many_images(make_box, tmp_path, 200)
    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    received: list[str] = []

    def on_store(event: Event) -> int:
        received.append(event.request.AffectedSOPInstanceUID)
        if len(received) == 1:
            event.assoc.send_c_cancel(1, context_id=get_context)
        return 0x0000

    assoc = ae.associate(
        "127.0.0.1",
        box.port,
        ae_title="DICOMBOX",
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    get_context = next(
        c.context_id
        for c in assoc.accepted_contexts
        if c.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
    )
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", study
    statuses = [
        status.Status
        for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        if status
    ]
    assoc.release()
    assert statuses[-1] == 0xFE00, [hex(s) for s in statuses]
    assert 1 <= len(received) < 200
