"""Bad input of every kind gets a clear status or rejection, and leaves nothing behind."""

from __future__ import annotations

import io
import socket
import struct

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from dicombox.core.net import pdu
from tests.conftest import require
from tests.support import rawclient
from tests.support.faults import tmp_leftovers
from tests.support.peers import run
from tests.support.synthetic import ct_dataset


def encoded(ds: pydicom.Dataset) -> bytes:
    """The data set alone, Explicit VR Little Endian, as a C-STORE carries it."""
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def small_ct(**changes: object) -> pydicom.Dataset:
    ds = ct_dataset(generate_uid(), generate_uid(), 1, rows=64, columns=64)
    del ds.file_meta
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def nothing_left_behind(box) -> None:
    assert tmp_leftovers(box.data_dir, box.pids()) == [], "something was left in tmp/"
    assert list((box.data_dir / "studies").rglob("*.dcm")) == [], "something was stored"


def still_answers(box) -> None:
    ae = AE(ae_title="CHECK")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", box.port, ae_title="DICOMBOX")
    assert assoc.is_established, "the box stopped answering"
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def raw_store(box, data: bytes, sop_uid: str, sop_class: str = CTImageStorage) -> int:
    sock, answer = rawclient.associate(box.port, CTImageStorage, ExplicitVRLittleEndian)
    assert answer == pdu.A_ASSOCIATE_AC
    status = rawclient.c_store(sock, sop_class, sop_uid, data)
    rawclient.release(sock)
    return status


def test_truncated_data_set_is_c000_and_not_kept(box):
    ds = small_ct()
    data = encoded(ds)
    status = raw_store(box, data[: len(data) - 1000], str(ds.SOPInstanceUID))
    assert status == 0xC000
    nothing_left_behind(box)
    still_answers(box)


def test_garbage_data_set_is_c000(box):
    status = raw_store(box, b"\x08\x00\x16\x00UI\xff\xff" + b"\x01" * 500, generate_uid())
    assert status == 0xC000
    nothing_left_behind(box)


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_missing_uids_are_a900(box, missing):
    ds = small_ct(**{missing: None})
    status = raw_store(box, encoded(ds), str(ds.get("SOPInstanceUID", generate_uid())))
    assert status == 0xA900
    nothing_left_behind(box)


def test_data_set_of_another_class_than_its_command_is_a900(box):
    ds = small_ct(SOPClassUID="1.2.840.10008.5.1.4.1.1.4")  # says MR, sent as CT
    assert raw_store(box, encoded(ds), str(ds.SOPInstanceUID)) == 0xA900
    nothing_left_behind(box)


def test_garbage_bytes_on_the_port_are_aborted(box):
    sock = rawclient.connect(box.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: dicombox\r\n\r\n")
    pdu_type, body = rawclient.read_pdu(sock)
    assert pdu_type == pdu.A_ABORT and body[2:4] == b"\x02\x01"  # provider, unrecognised PDU
    sock.close()
    still_answers(box)


def test_bogus_pdu_length_is_aborted_without_reading_it(box):
    sock = rawclient.connect(box.port)
    sock.sendall(struct.pack(">BBI", pdu.A_ASSOCIATE_RQ, 0, 0x7FFFFFFF) + b"\x00" * 64)
    pdu_type, body = rawclient.read_pdu(sock)
    assert pdu_type == pdu.A_ABORT and body[3] == pdu.REASON_INVALID_PARAMETER
    sock.close()
    still_answers(box)


def test_pdv_longer_than_its_pdu_is_aborted(box):
    sock, _ = rawclient.associate(box.port, CTImageStorage, ExplicitVRLittleEndian)
    sock.sendall(struct.pack(">BBIIBB", pdu.P_DATA_TF, 0, 10, 5000, 1, 3) + b"\x00" * 4)
    pdu_type, _ = rawclient.read_pdu(sock)
    assert pdu_type == pdu.A_ABORT
    sock.close()
    nothing_left_behind(box)
    still_answers(box)


def test_connection_dropped_mid_data_set_leaves_nothing(box):
    ds = small_ct()
    data = encoded(ds)
    sock, _ = rawclient.associate(box.port, CTImageStorage, ExplicitVRLittleEndian)
    command = rawclient.store_command(CTImageStorage, str(ds.SOPInstanceUID))
    fragment = pdu.p_data_pdus(1, data, False, 0)[0]
    sock.sendall(pdu.p_data_pdus(1, command, True, 0)[0] + fragment[: len(fragment) // 2])
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    still_answers(box)
    nothing_left_behind(box)


def test_unknown_calling_ae_is_rejected_when_the_allow_list_is_on(make_box):
    require("echoscu")
    box = make_box("""
[network]
accept_unknown_callers = false

[[remote]]
name = "ct"
ae_title = "CT01"
host = "127.0.0.1"
port = 104
""")
    stranger = run(["echoscu", "-aet", "STRANGER", "-aec", "DICOMBOX", "127.0.0.1", box.port])
    assert stranger.returncode != 0
    assert "Calling AE Title Not Recognized" in stranger.stdout + stranger.stderr
    known = run(["echoscu", "-aet", "CT01", "-aec", "DICOMBOX", "127.0.0.1", box.port])
    assert known.returncode == 0, known.stdout + known.stderr
    assert "calling AE 'STRANGER' is not a configured [[remote]]" in box.output()


def test_unknown_called_ae_is_rejected(box):
    require("echoscu")
    result = run(["echoscu", "-aec", "NOTUS", "127.0.0.1", box.port])
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr


def test_disk_reserve_gives_a700_and_keeps_nothing(make_box):
    box = make_box("[storage]\nreserve_mb = 1000000000\n")
    ds = small_ct()
    assert raw_store(box, encoded(ds), str(ds.SOPInstanceUID)) == 0xA700
    nothing_left_behind(box)
    assert "below the" in box.output()


def test_association_limit_rejects_transiently(make_box):
    require("echoscu")
    box = make_box("[network]\nmax_associations = 1\n")
    held, answer = rawclient.associate(box.port, CTImageStorage, ExplicitVRLittleEndian)
    assert answer == pdu.A_ASSOCIATE_AC
    try:
        result = run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", box.port])
        assert result.returncode != 0
        assert "Local Limit Exceeded" in result.stdout + result.stderr
    finally:
        rawclient.release(held)
    assert run(["echoscu", "-aec", "DICOMBOX", "127.0.0.1", box.port]).returncode == 0
