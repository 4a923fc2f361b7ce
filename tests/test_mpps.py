"""Modality Performed Procedure Step both ways against pynetdicom peers: a modality
N-CREATEs and N-SETs a step on the box (and is held to the PS3.4 F.7 state rules), and
the box forwards each accepted message to a RIS, in order, retrying while it is down."""

from __future__ import annotations

import sqlite3
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association

from tests.support.boxproc import RunningBox
from tests.support.peers import free_port
from tests.test_forward import jobs, remote

MPPS = "1.2.840.10008.3.1.2.3.3"


def step(status: str = "IN PROGRESS", study_uid: str = "1.2.3.4") -> Dataset:
    """An N-CREATE data set with what PS3.4 Table F.7.2-1 asks of the SCU."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = "Müller^Anna", "P1"
    item = Dataset()
    item.StudyInstanceUID, item.AccessionNumber = study_uid, "ACC1"
    item.ScheduledProcedureStepID, item.RequestedProcedureID = "SPS1", "RP1"
    ds.ScheduledStepAttributesSequence = [item]
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "MODALITY"
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = "20240501", "101500"
    ds.PerformedProcedureStepStatus = status
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    return ds


def completion(status: str = "COMPLETED", end: bool = True) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    if end:
        ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = "20240501", "103000"
    return ds


def connect(box: RunningBox) -> Association:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", box.port, ae_title="DICOMBOX")
    assert assoc.is_established
    return assoc


def create(assoc: Association, ds: Dataset, uid: str | None) -> int:
    status, _ = assoc.send_n_create(ds, MPPS, uid)
    return int(status.Status)


def set_(assoc: Association, ds: Dataset, uid: str) -> int:
    status, _ = assoc.send_n_set(ds, MPPS, uid)
    return int(status.Status)


def mpps_rows(box: RunningBox) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(box.data_dir / "index.sqlite") as db:
        rows = db.execute("select sop_instance_uid, status, calling_ae from mpps").fetchall()
    return {uid: (status, caller) for uid, status, caller in rows}


def wait_for(condition, box: RunningBox, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out; jobs {jobs(box)}\n{box.output()[-3000:]}"
        time.sleep(0.1)


def test_modality_creates_then_completes_a_step(make_box):
    box = make_box()
    uid = str(generate_uid())
    assoc = connect(box)
    try:
        assert create(assoc, step(), uid) == 0x0000
        assert mpps_rows(box)[uid] == ("IN PROGRESS", "MODALITY")
        assert set_(assoc, completion(), uid) == 0x0000
    finally:
        assoc.release()
    assert mpps_rows(box)[uid] == ("COMPLETED", "MODALITY")
    assert jobs(box) == []  # no RIS configured: nothing to forward


def test_box_assigns_the_instance_uid_when_the_modality_leaves_it_out(make_box):
    box = make_box()
    assoc = connect(box)
    try:
        status, _ = assoc.send_n_create(step(), MPPS)
        assert status.Status == 0x0000
        (uid,) = mpps_rows(box)
        assert set_(assoc, completion("DISCONTINUED"), uid) == 0x0000
    finally:
        assoc.release()
    assert mpps_rows(box)[uid][0] == "DISCONTINUED"


def test_state_rules(make_box):
    box = make_box()
    uid, other, unknown = str(generate_uid()), str(generate_uid()), str(generate_uid())
    no_modality = step()
    del no_modality.Modality
    no_study = step()
    del no_study.ScheduledStepAttributesSequence[0].StudyInstanceUID
    empty_id = step()
    empty_id.PerformedProcedureStepID = ""
    assoc = connect(box)
    try:
        assert create(assoc, step("COMPLETED"), str(generate_uid())) == 0x0106
        assert create(assoc, no_modality, str(generate_uid())) == 0x0120
        assert create(assoc, no_study, str(generate_uid())) == 0x0120
        assert create(assoc, empty_id, str(generate_uid())) == 0x0121
        assert create(assoc, step(), uid) == 0x0000
        assert create(assoc, step(), uid) == 0x0111
        assert set_(assoc, completion(), unknown) == 0x0112
        assert set_(assoc, completion("SCHEDULED"), uid) == 0x0106
        assert set_(assoc, completion(end=False), uid) == 0x0120
        typical = step()  # End Date/Time type 2 in the N-CREATE: sent empty
        typical.PerformedProcedureStepEndDate = typical.PerformedProcedureStepEndTime = ""
        assert create(assoc, typical, other) == 0x0000
        assert set_(assoc, completion("DISCONTINUED", end=False), other) == 0x0120
        assert set_(assoc, completion("IN PROGRESS", end=False), uid) == 0x0000
        assert set_(assoc, completion(), uid) == 0x0000
        status, _ = assoc.send_n_set(completion("DISCONTINUED"), MPPS, uid)
        assert status.Status == 0x0110 and status.ErrorID == 0xA710
    finally:
        assoc.release()
    assert mpps_rows(box) == {uid: ("COMPLETED", "MODALITY"), other: ("IN PROGRESS", "MODALITY")}


class Ris:
    """A pynetdicom MPPS SCP that records what arrives, in order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[str, str, Dataset]] = []
        self.server = None
        self.create_status: int | Dataset = 0x0000
        self.set_status: int | Dataset = 0x0000

    def start(self) -> Ris:
        ae = AE(ae_title="RIS")
        ae.add_supported_context(MPPS)
        handlers = [(evt.EVT_N_CREATE, self.on_create), (evt.EVT_N_SET, self.on_set)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)
        return self

    def on_create(self, event: evt.Event) -> tuple[int | Dataset, Dataset]:
        uid = str(event.request.AffectedSOPInstanceUID)
        self.received.append(("create", uid, event.attribute_list))
        return self.create_status, event.attribute_list

    def on_set(self, event: evt.Event) -> tuple[int | Dataset, Dataset]:
        uid = str(event.request.RequestedSOPInstanceUID)
        self.received.append(("set", uid, event.modification_list))
        return self.set_status, event.modification_list

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


@pytest.fixture
def ris():
    """A RIS on a free port, not yet started."""
    peer = Ris(free_port())
    yield peer
    peer.stop()


def report_a_step(box: RunningBox) -> str:
    uid = str(generate_uid())
    assoc = connect(box)
    try:
        assert create(assoc, step(), uid) == 0x0000
        assert set_(assoc, completion(), uid) == 0x0000
    finally:
        assoc.release()
    return uid


def assert_forwarded(peer: Ris, uid: str) -> None:
    assert [(action, sop_uid) for action, sop_uid, _ in peer.received] == [
        ("create", uid),
        ("set", uid),
    ]
    created, completed = peer.received[0][2], peer.received[1][2]
    assert created.PerformedProcedureStepStatus == "IN PROGRESS"
    assert created.PatientName == "Müller^Anna"
    assert created.ScheduledStepAttributesSequence[0].StudyInstanceUID == "1.2.3.4"
    assert completed.PerformedProcedureStepStatus == "COMPLETED"
    assert completed.PerformedProcedureStepEndTime == "103000"


def test_box_forwards_create_and_set_to_the_ris_in_order(make_box, ris):
    ris.start()
    box = make_box(remote("ris", ris.port, ae="RIS") + '[worklist]\nmpps_remote = "ris"\n')
    uid = report_a_step(box)
    wait_for(lambda: len(ris.received) == 2, box)
    assert_forwarded(ris, uid)
    wait_for(lambda: {j["state"] for j in jobs(box)} == {"done"}, box)


def jobs_by_action(box: RunningBox) -> dict[str, dict]:
    return {j["payload"]["action"]: j for j in jobs(box)}


def test_box_retries_until_the_ris_comes_up(make_box, ris):
    box = make_box(
        remote("ris", ris.port, ae="RIS", extra="retries = 10")
        + '[worklist]\nmpps_remote = "ris"\n'
    )
    uid = report_a_step(box)
    # The RIS is down: the N-CREATE fails attempt after attempt, and the N-SET waits
    # behind it without trying (else it could overtake the N-CREATE's growing backoff).
    wait_for(lambda: jobs_by_action(box)["create"]["attempts"] >= 2, box)
    waiting = jobs_by_action(box)[
        "set"
    ]  # last_error: never tried (the runner may hold it just now)
    assert waiting["last_error"] == "" and waiting["state"] in ("queued", "running"), waiting
    assert waiting["progress"].startswith("after older MPPS messages")
    assert ris.received == []
    ris.start()
    wait_for(lambda: len(ris.received) == 2, box)
    assert_forwarded(ris, uid)
    wait_for(lambda: {j["state"] for j in jobs(box)} == {"done"}, box)


def test_a_ris_that_already_has_the_step_counts_as_done(make_box, ris):
    """The modality reports to the RIS directly too: its N-CREATE meets 0x0111 and its
    N-SET 0x0110 with Error ID A710. Retrying cannot help, and the RIS has the step."""
    final = Dataset()
    final.Status, final.ErrorID = 0x0110, 0xA710
    ris.create_status, ris.set_status = 0x0111, final
    ris.start()
    box = make_box(remote("ris", ris.port, ae="RIS") + '[worklist]\nmpps_remote = "ris"\n')
    report_a_step(box)
    wait_for(lambda: {j["state"] for j in jobs(box)} == {"done"}, box)
    assert [action for action, _, _ in ris.received] == ["create", "set"]
    assert all("it already had it" in j["progress"] for j in jobs(box))


def test_a_ris_refusal_fails_the_job(make_box, ris):
    ris.create_status, ris.set_status = 0x0106, 0x0112
    ris.start()
    box = make_box(remote("ris", ris.port, ae="RIS") + '[worklist]\nmpps_remote = "ris"\n')
    report_a_step(box)
    wait_for(lambda: {j["state"] for j in jobs(box)} == {"failed"}, box)
    assert [action for action, _, _ in ris.received] == ["create", "set"]  # one try each
    assert "0x0106" in jobs_by_action(box)["create"]["last_error"]
