"""Storage and verification against real peers: DCMTK's echoscu, storescu and dcmsend."""

from __future__ import annotations

import json
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom import AE

from tests.conftest import require, sample_file
from tests.support.peers import free_port, popen, run, storescu
from tests.support.synthetic import write_ct_series

UNCOMPRESSED = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "rtstruct.dcm",
    "reportsi.dcm",
    "waveform_ecg.dcm",
    "examples_rgb_color.dcm",
    "liver_1frame.dcm",
]
COMPRESSED = [
    "JPEG2000.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG-lossy.dcm",
    "JPGExtended.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "image_dfl.dcm",
]


def dataset_bytes(path: Path) -> tuple[str, bytes]:
    """(transfer syntax, the bytes after the file meta) of a Part 10 file."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00"
    (meta_length,) = struct.unpack("<I", raw[140:144])
    ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    return ts, raw[144 + meta_length :]


def studies(box) -> list[dict]:
    return json.loads(box.cli("studies", "--json").stdout)


def stored_file(box, path: Path) -> Path:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    matches = list((box.data_dir / "studies").rglob(f"{ds.SOPInstanceUID}.dcm"))
    assert len(matches) == 1, f"{path.name} not stored once: {matches}"
    return matches[0]


def test_echoscu_gets_success(box):
    require("echoscu")
    result = run(["echoscu", "-v", "-aec", "DICOMBOX", "127.0.0.1", box.port])
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


def inflate(data: bytes) -> bytes:
    return zlib.decompress(data, -zlib.MAX_WBITS)


def send_with_dcmsend(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return run(["dcmsend", "-aec", "DICOMBOX", "127.0.0.1", port, *files])


def capture_with_storescp(
    files: list[Path], out: Path, sender=storescu
) -> dict[str, tuple[str, bytes]]:
    """What a DCMTK sender really puts on the wire for ``files`` (it re-encodes them), as
    storescp in bit-preserving mode writes it: SOP Instance UID -> (syntax, data set)."""
    require("storescp")
    out.mkdir()
    port = free_port()
    peer = popen(["storescp", "-B", "+xa", "-od", out, str(port)])
    try:
        time.sleep(0.5)
        result = sender(port, files)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        peer.terminate()
        peer.wait()
    captured = {}
    for path in out.iterdir():
        captured[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = (
            dataset_bytes(path)
        )
    return captured


def renamed(name: str, directory: Path) -> Path:
    """A sample file under a new SOP Instance UID, in its own transfer syntax (pydicom's
    samples share UIDs across their transfer-syntax variants)."""
    ds = pydicom.dcmread(sample_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    directory.mkdir(exist_ok=True)
    ds.save_as(directory / name, enforce_file_format=True)
    return directory / name


def test_storescu_uncompressed_classes_are_stored_byte_for_byte(box, tmp_path):
    require("storescu")
    files = [sample_file(n) for n in UNCOMPRESSED] + [
        renamed(n, tmp_path / "variants")
        for n in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm")
    ]
    sent = capture_with_storescp(files, tmp_path / "storescp")
    result = storescu(box.port, files)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        stored = stored_file(box, path)
        ours = pydicom.dcmread(stored)
        ts, received = dataset_bytes(stored)
        sent_ts, sent_bytes = sent[str(ours.SOPInstanceUID)]
        if ts == sent_ts:
            assert received == sent_bytes, f"{path.name}: differs from what was sent"
        else:  # storescu chose another of the syntaxes it proposed for the other peer
            theirs = pydicom.dcmread(
                next(
                    p
                    for p in (tmp_path / "storescp").iterdir()
                    if str(ours.SOPInstanceUID) in p.name
                )
            )
            pixels = "7FE00010"  # compared decoded: its raw bytes follow the byte order
            assert {k: v for k, v in ours.to_json_dict().items() if k != pixels} == {
                k: v for k, v in theirs.to_json_dict().items() if k != pixels
            }, path.name
            if "PixelData" in ours:
                assert (ours.pixel_array == theirs.pixel_array).all(), path.name
    instances = sum(s["instances"] for s in studies(box))
    assert instances == len(files)


def test_dcmsend_compressed_syntaxes_are_kept_as_received(box, tmp_path):
    require("dcmsend")
    files = [renamed(n, tmp_path / "unique") for n in COMPRESSED]
    sent = capture_with_storescp(files, tmp_path / "storescp", send_with_dcmsend)
    result = send_with_dcmsend(box.port, files)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        source_ts, _ = dataset_bytes(path)
        stored = stored_file(box, path)
        stored_ts, received = dataset_bytes(stored)
        assert stored_ts == source_ts, f"{path.name}: not kept in its own syntax"
        uid = str(pydicom.dcmread(stored, stop_before_pixels=True).SOPInstanceUID)
        sent_ts, sent_bytes = sent[uid]
        if stored_ts == DeflatedExplicitVRLittleEndian:  # storescp re-deflates what it got
            received, sent_bytes = inflate(received), inflate(sent_bytes)
        assert (stored_ts, received) == (sent_ts, sent_bytes), f"{path.name}: not as sent"


def test_four_concurrent_associations_lose_nothing(box, tmp_path):
    require("storescu")
    files = write_ct_series(tmp_path / "ct", 40, rows=128, columns=128)
    codes: list[int] = []
    threads = [
        threading.Thread(
            target=lambda c=files[i::4]: codes.append(storescu(box.port, c).returncode)
        )
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0, 0, 0, 0]
    (study,) = studies(box)
    assert (study["instances"], study["series"], study["modalities"]) == (40, 1, "CT")
    assert all(dataset_bytes(stored_file(box, f))[1] == dataset_bytes(f)[1] for f in files)


def test_private_csa_non_image_class_is_accepted(box, tmp_path):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.SOPClassUID = "1.3.12.2.1107.5.9.1"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    del ds.PixelData
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context("1.3.12.2.1107.5.9.1")
    assoc = ae.associate("127.0.0.1", box.port, ae_title="DICOMBOX")
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status.Status == 0x0000
    assert list((box.data_dir / "studies").rglob(f"{ds.SOPInstanceUID}.dcm"))


def test_studies_cli_lists_patient_date_modality_counts(box, tmp_path):
    require("storescu")
    files = write_ct_series(tmp_path / "ct", 3, rows=64, columns=64, patient="DOE^JANE")
    assert storescu(box.port, files).returncode == 0
    out = box.cli("studies")
    line = next(x for x in out.stdout.splitlines() if "DOE^JANE" in x)
    assert "20261123" in line and " CT " in line and " 3 " in line


def test_dicombox_echo_reaches_a_dcmtk_peer(box, tmp_path):
    require("storescp")
    port = free_port()
    peer = popen(["storescp", "-od", tmp_path, str(port)])
    try:
        time.sleep(0.5)
        out = box.cli("echo", "127.0.0.1", str(port))
        assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
    finally:
        peer.terminate()
        peer.wait()
