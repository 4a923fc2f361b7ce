"""C-GET of a study stored in several transfer syntaxes (explicit and implicit VR little
endian, JPEG Lossless, RLE): on a C-GET association the box is the sender, so for a
storage context offering several syntaxes it accepts one it can make of any instance (a
native one), whatever a receiver would prefer; a requestor with one context per syntax
gets each instance as stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import run
from tests.support.synthetic import ct_dataset
from tests.test_retrieve import retrieve, stored, study_keys
from tests.test_storage_peers import dataset_bytes

SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLosslessSV1, RLELossless)
COMPRESSORS = {JPEGLosslessSV1: "dcmcjpeg", RLELossless: "dcmcrle"}  # DCMTK's encoders


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A box holding one CT study of four images, each stored in one of ``SYNTAXES``
    (sent by pynetdicom in the file's own syntax); ``box.originals`` maps each SOP
    Instance UID to its pixels as made."""
    require("dcmcjpeg", "dcmcrle", "getscu")
    root = tmp_path_factory.mktemp("mixed")
    study, series = generate_uid(), generate_uid()
    originals: dict[str, np.ndarray] = {}
    sent: list[Dataset] = []
    for n, syntax in enumerate(SYNTAXES, 1):
        ds = ct_dataset(study, series, n, rows=32, columns=32)
        originals[str(ds.SOPInstanceUID)] = ds.pixel_array
        path = root / f"{n}.dcm"
        if syntax == ImplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
        if syntax in COMPRESSORS:
            assert run([COMPRESSORS[syntax], path, path]).returncode == 0
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == syntax
        sent.append(ds)
    box = RunningBox(root / "var", "").start()
    ae = AE(ae_title="MODALITY")
    for syntax in SYNTAXES:
        ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", box.port, ae_title="DICOMBOX")
    assert assoc.is_established
    try:
        assert [assoc.send_c_store(ds).Status for ds in sent] == [0, 0, 0, 0]
    finally:
        assoc.release()
    stored_syntaxes = {
        uid: str(pydicom.dcmread(stored(box, uid)).file_meta.TransferSyntaxUID) for uid in originals
    }
    assert sorted(stored_syntaxes.values()) == sorted(SYNTAXES)
    box.study, box.originals, box.syntaxes = study, originals, stored_syntaxes
    yield box
    box.stop()


def assert_received_match(box: RunningBox, received: dict[str, Dataset]) -> None:
    """Every instance came, with the pixels it was made with, and every other element
    as the box holds it."""
    assert sorted(received) == sorted(box.originals)
    for uid, got in received.items():
        assert np.array_equal(got.pixel_array, box.originals[uid]), uid
        held = pydicom.dcmread(stored(box, uid))
        for ds in (got, held):
            del ds.PixelData
        assert got == held, uid


def getscu(box: RunningBox, folder: Path, *options: str) -> dict[str, Dataset]:
    """Retrieve the study with getscu and these options; what it wrote, by instance."""
    folder.mkdir()
    result = retrieve("getscu", box.port, study_keys(box.study), "+B", "-od", folder, *options)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "Number of Completed Suboperations : 4" in log, log
    assert "Number of Failed Suboperations    : 0" in log, log
    files = [pydicom.dcmread(p) for p in folder.iterdir()]
    return {str(ds.SOPInstanceUID): ds for ds in files}


def test_getscu_preferring_jpeg_lossless_gets_every_instance_of_a_mixed_study(mixed, tmp_path):
    """getscu +xs offers JPEG Lossless and the native syntaxes in one context: the box
    takes explicit VR little endian, which it can make of all four."""
    received = getscu(mixed, tmp_path / "xs", "+xs")
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in received.values()} == {
        ExplicitVRLittleEndian
    }
    assert_received_match(mixed, received)
    # What went out as stored went byte for byte.
    (as_is,) = [u for u, s in mixed.syntaxes.items() if s == ExplicitVRLittleEndian]
    path = next((tmp_path / "xs").glob(f"*{as_is}*"))
    assert dataset_bytes(path) == dataset_bytes(stored(mixed, as_is))


def test_plain_getscu_gets_every_instance_of_a_mixed_study(mixed, tmp_path):
    received = getscu(mixed, tmp_path / "plain")
    assert_received_match(mixed, received)


def pynetdicom_get(
    box: RunningBox, contexts: list[tuple[str, list[str]]]
) -> tuple[list[int], dict[str, tuple[str, bytes]]]:
    """A C-GET of the study by pynetdicom proposing ``contexts`` (class, syntaxes) with
    the SCP role for CT: its statuses, and per instance received the syntax and raw data
    set bytes."""
    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    received: dict[str, tuple[str, bytes]] = {}

    def on_store(event: evt.Event) -> int:
        raw = event.request.DataSet.getvalue()
        received[str(event.request.AffectedSOPInstanceUID)] = (
            str(event.context.transfer_syntax),
            raw,
        )
        return 0x0000

    assoc = ae.associate(
        "127.0.0.1",
        box.port,
        ae_title="DICOMBOX",
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", box.study
    statuses = [
        int(status.Status)
        for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        if status
    ]
    assoc.release()
    return statuses, received


def test_one_context_per_syntax_gets_each_instance_as_stored(mixed):
    statuses, received = pynetdicom_get(mixed, [(CTImageStorage, [s]) for s in SYNTAXES])
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    assert sorted(received) == sorted(mixed.originals)
    for uid, (syntax, raw) in received.items():
        assert syntax == mixed.syntaxes[uid]
        assert (syntax, raw) == dataset_bytes(stored(mixed, uid)), uid


def test_a_context_offering_only_jpeg_lossless_takes_what_is_stored_so(mixed):
    """The one syntax offered is accepted; what the box cannot encode in it fails, and
    the log says so without blaming the requestor."""
    statuses, received = pynetdicom_get(mixed, [(CTImageStorage, [JPEGLosslessSV1])])
    (as_stored,) = [u for u, s in mixed.syntaxes.items() if s == JPEGLosslessSV1]
    assert list(received) == [as_stored]
    assert statuses[-1] == 0xB000, [hex(s) for s in statuses]
    log = mixed.output()
    assert "which this box cannot send in any syntax it accepted" in log
    assert "no encoder for JPEG Lossless" in log
    assert "opened no context" not in log
