"""Storage commitment both ways against a pynetdicom peer: the box as SCP (report on the
requestor's association, or on a new one; unknown instances fail with 0112) and as SCU
after a forward (report on our association, or on one the archive opens)."""

from __future__ import annotations

import sqlite3
import threading
import time
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from dicombox.core.net import commands, pdu
from tests.conftest import require
from tests.support import rawclient
from tests.support.boxproc import RunningBox
from tests.support.peers import free_port, storescu
from tests.test_forward import ct_files, jobs, remote, routed

PUSH_MODEL, PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.1.1"


def commit_request(pairs: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    ds.ReferencedSOPSequence = []
    for sop_class, uid in pairs:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
        ds.ReferencedSOPSequence.append(item)
    return ds


def stored_pairs(box: RunningBox, tmp_path: Path, count: int) -> list[tuple[str, str]]:
    files = ct_files(tmp_path / "ct", count)
    assert storescu(box.port, files).returncode == 0
    return [(str(d.SOPClassUID), str(d.SOPInstanceUID)) for d in map(pydicom.dcmread, files)]


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_scp_reports_on_the_same_association(make_box, tmp_path):
    require("storescu")
    box = make_box()
    pairs = stored_pairs(box, tmp_path, 2)
    unknown = (pairs[0][0], generate_uid())
    reports: list[tuple[int, Dataset]] = []

    def on_report(event: evt.Event) -> int:
        reports.append((event.event_type, event.event_information))
        return 0x0000

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(PUSH_MODEL)
    assoc = ae.associate(
        "127.0.0.1",
        box.port,
        ae_title="DICOMBOX",
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
    )
    assert assoc.is_established
    request = commit_request([*pairs, unknown])
    status, _ = assoc.send_n_action(request, 1, PUSH_MODEL, PUSH_MODEL_INSTANCE)
    assert status.Status == 0x0000
    wait_for(lambda: reports)
    assoc.release()
    ((event_type, report),) = reports
    assert event_type == 2  # some failed
    assert report.TransactionUID == request.TransactionUID
    assert sorted(i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence) == sorted(
        uid for _, uid in pairs
    )
    (failed,) = report.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == unknown[1] and failed.FailureReason == 0x0112


@pytest.fixture
def modality(tmp_path):
    """A pynetdicom modality on a port of its own that takes commitment reports on
    associations the box opens; yields (its port, the reports it got)."""
    port = free_port()
    reports: list[Dataset] = []

    def on_report(event: evt.Event) -> tuple[int, None]:
        reports.append(event.event_information)
        return 0x0000, None

    ae = AE(ae_title="MODALITY")
    ae.add_supported_context(PUSH_MODEL, scu_role=True, scp_role=True)
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
    )
    yield port, reports
    server.shutdown()


def ask_commitment(box: RunningBox, pairs: list[tuple[str, str]]) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(PUSH_MODEL)
    assoc = ae.associate("127.0.0.1", box.port, ae_title="DICOMBOX")
    status, _ = assoc.send_n_action(commit_request(pairs), 1, PUSH_MODEL, PUSH_MODEL_INSTANCE)
    assoc.release()
    assert status.Status == 0x0000


def test_scp_reports_on_a_new_association(make_box, tmp_path, modality):
    require("storescu")
    port, reports = modality
    box = make_box(remote("ct", port, ae="MODALITY") + '[commitment]\nreport_on = "new"\n')
    ask_commitment(box, stored_pairs(box, tmp_path, 3))
    wait_for(lambda: reports)
    (report,) = reports
    assert len(report.ReferencedSOPSequence) == 3 and "FailedSOPSequence" not in report


def commit_reports(box: RunningBox) -> list[dict]:
    return [j for j in jobs(box) if j["kind"] == "commit-report"]


def ask_and_release_at_once(box: RunningBox, pairs: list[tuple[str, str]]) -> None:
    """A requestor that sends its N-ACTION-RQ and its A-RELEASE-RQ together: it has
    released before the box could report on its association."""
    sock, _ = rawclient.associate(box.port, PUSH_MODEL, ExplicitVRLittleEndian, "MODALITY")
    command = commands.encode_command(
        CommandField=commands.N_ACTION_RQ,
        MessageID=1,
        CommandDataSetType=0,
        RequestedSOPClassUID=PUSH_MODEL,
        RequestedSOPInstanceUID=PUSH_MODEL_INSTANCE,
        ActionTypeID=1,
    )
    request = BytesIO()
    commit_request(pairs).save_as(request, implicit_vr=False, little_endian=True)
    out = pdu.p_data_pdus(1, command, True, 16384)
    out += pdu.p_data_pdus(1, request.getvalue(), False, 16384)
    sock.sendall(b"".join(out) + pdu.release_rq())
    pdu_type, body = rawclient.read_pdu(sock)
    assert pdu_type == pdu.P_DATA_TF
    assert commands.decode_command(body[6:]).Status == 0x0000
    assert rawclient.read_pdu(sock)[0] == pdu.A_RELEASE_RP
    sock.close()


@pytest.mark.parametrize("report_on", ["new", "same-or-new"])
def test_scp_report_on_a_new_association_arrives_once_and_its_job_is_done(
    make_box, tmp_path, modality, report_on
):
    """The requestor has released before the report: the commit-report job brings it on
    an association to the requestor's own port, once, and is done at its first run."""
    require("storescu")
    port, reports = modality
    box = make_box(remote("ct", port, ae="MODALITY") + f'[commitment]\nreport_on = "{report_on}"\n')
    pairs = stored_pairs(box, tmp_path, 3)
    if report_on == "new":
        ask_commitment(box, pairs)  # pynetdicom, which releases once answered
    else:
        ask_and_release_at_once(box, pairs)

    def settled() -> bool:  # done, or a first failure to show
        found = commit_reports(box)
        return bool(found) and (found[0]["state"] == "done" or bool(found[0]["last_error"]))

    # Each look runs the CLI, which takes seconds on a busy machine: a generous deadline.
    wait_for(settled, timeout=90)
    (job,) = commit_reports(box)
    assert job["state"] == "done", job
    assert (job["attempts"], job["last_error"]) == (1, ""), job
    (report,) = reports
    assert sorted(
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in report.ReferencedSOPSequence
    ) == sorted(pairs)
    assert "FailedSOPSequence" not in report
    assert "crashed" not in box.output()


def test_scp_after_burn_commits_what_was_burned_and_times_out_the_rest(
    make_box, tmp_path, modality
):
    """Seed 001: commitment only once burned. The media plugin records burned instances
    as delivered to "media"; here the test records two of three itself."""
    require("storescu")
    port, reports = modality
    box = make_box(
        remote("ct", port, ae="MODALITY")
        + "[commitment]\nafter_burn = true\nburn_check_s = 0.3\nburn_timeout_s = 4\n"
    )
    pairs = stored_pairs(box, tmp_path, 3)
    ask_commitment(box, pairs)
    time.sleep(1)
    assert reports == []  # nothing burned yet: no report
    with sqlite3.connect(box.data_dir / "index.sqlite") as db:
        db.executemany(
            "insert into deliveries (sop_instance_uid, remote, state, transaction_uid, detail,"
            " updated_at) values (?, 'media', 'committed', '', '', 0)",
            [(uid,) for _, uid in pairs[:2]],
        )
    wait_for(lambda: reports)
    (report,) = reports
    assert sorted(i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence) == sorted(
        uid for _, uid in pairs[:2]
    )
    (failed,) = report.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == pairs[2][1] and failed.FailureReason == 0x0110


class CommittingArchive:
    """A pynetdicom archive: stores, and answers commitment requests either on the
    requestor's association or by opening one to the box."""

    def __init__(self, port: int, on_new_association_to: int | None = None) -> None:
        self.stored: set[str] = set()
        self.box_port = on_new_association_to
        self.ae = AE(ae_title="ARCHIVE")
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.ae.add_supported_context(PUSH_MODEL)
        self.server = self.ae.start_server(
            ("127.0.0.1", port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self.on_store), (evt.EVT_N_ACTION, self.on_action)],
        )

    def on_store(self, event: evt.Event) -> int:
        self.stored.add(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def report_for(self, request: Dataset) -> Dataset:
        report = Dataset()
        report.TransactionUID = request.TransactionUID
        report.ReferencedSOPSequence = [
            i for i in request.ReferencedSOPSequence if i.ReferencedSOPInstanceUID in self.stored
        ]
        return report

    def on_action(self, event: evt.Event):
        report = self.report_for(event.action_information)
        if self.box_port is None:
            threading.Timer(
                0.3, event.assoc.send_n_event_report, (report, 1, PUSH_MODEL, PUSH_MODEL_INSTANCE)
            ).start()
        else:
            threading.Timer(0.3, self.report_on_new_association, (report,)).start()
        return 0x0000, None

    reporter = "ARCHIVE"  # the AE title its report comes from
    report_status: int | None = None  # what the box answered the N-EVENT-REPORT

    def report_on_new_association(self, report: Dataset) -> None:
        ae = AE(ae_title=self.reporter)
        ae.add_requested_context(PUSH_MODEL)
        assoc = ae.associate(
            "127.0.0.1",
            self.box_port,
            ae_title="DICOMBOX",
            ext_neg=[build_role(PUSH_MODEL, scp_role=True)],
        )
        assert assoc.is_established
        status, _ = assoc.send_n_event_report(report, 1, PUSH_MODEL, PUSH_MODEL_INSTANCE)
        self.report_status = int(status.Status)
        assoc.release()


def delivery_states(box: RunningBox) -> dict[str, str]:
    with sqlite3.connect(box.data_dir / "index.sqlite") as db:
        return dict(db.execute("select sop_instance_uid, state from deliveries").fetchall())


def test_scu_asks_after_forwarding_and_marks_committed(make_box, tmp_path):
    require("storescu")
    port = free_port()
    archive = CommittingArchive(port)
    try:
        extra = "commit = true\ncommit_delay_s = 0.2"
        box = make_box(remote("pacs", port, extra=extra) + routed("pacs"))
        pairs = stored_pairs(box, tmp_path, 4)
        wait_for(lambda: set(delivery_states(box).values()) == {"committed"})
    finally:
        archive.server.shutdown()
    assert set(delivery_states(box)) == {uid for _, uid in pairs}


def reported_on_new_associations(make_box, port: int) -> RunningBox:
    """A box forwarding to "pacs" on ``port`` and asking it for commitment, whose
    report comes on an association of its own."""
    require("storescu")
    return make_box(
        remote("pacs", port, extra="commit = true\ncommit_delay_s = 0.2")
        + routed("pacs")
        + "[commitment]\nreport_wait_s = 0\n"
    )


def test_scu_takes_the_report_on_a_new_association(make_box, tmp_path):
    port = free_port()
    box = reported_on_new_associations(make_box, port)
    archive = CommittingArchive(port, on_new_association_to=box.port)
    try:
        pairs = stored_pairs(box, tmp_path, 3)
        wait_for(lambda: set(delivery_states(box).values()) == {"committed"})
    finally:
        archive.server.shutdown()
    assert len(delivery_states(box)) == len(pairs)
    # The report came on the archive's own association; the timeout check stays queued
    # and will find nothing left to ask for.
    states = {j["kind"]: j["state"] for j in jobs(box)}
    assert states == {"forward": "done", "commit-request": "done", "commit-timeout": "queued"}


class SpoofedReport(CommittingArchive):
    """Its report comes from another AE title than the remote that was asked."""

    reporter = "INTRUDER"


def test_a_report_from_another_ae_commits_nothing(make_box, tmp_path):
    """Committed instances may be deleted by the watermark: only the remote asked may
    say they are committed."""
    port = free_port()
    box = reported_on_new_associations(make_box, port)
    archive = SpoofedReport(port, on_new_association_to=box.port)
    try:
        stored_pairs(box, tmp_path, 2)
        wait_for(lambda: archive.report_status is not None)
    finally:
        archive.server.shutdown()
    assert archive.report_status == 0x0124
    assert set(delivery_states(box).values()) == {"requested"}
    assert "INTRUDER reported on a commitment asked of pacs" in box.output()


class SilentArchive(CommittingArchive):
    """Accepts the request and never reports."""

    def on_action(self, event: evt.Event):
        return 0x0000, None


def test_scu_asks_again_then_gives_up_with_timed_out(make_box, tmp_path):
    require("storescu")
    port = free_port()
    archive = SilentArchive(port)
    try:
        box = make_box(
            remote("pacs", port, extra="commit = true\ncommit_delay_s = 0.1")
            + routed("pacs")
            + "[commitment]\nreport_wait_s = 0.2\nreport_timeout_s = 0.5\nrequest_retries = 1\n"
        )
        stored_pairs(box, tmp_path, 2)
        wait_for(lambda: set(delivery_states(box).values()) == {"refused"}, timeout=30)
    finally:
        archive.server.shutdown()
    kinds = sorted(j["kind"] for j in jobs(box))
    assert kinds.count("commit-request") == 2  # asked, then asked once more
    with sqlite3.connect(box.data_dir / "index.sqlite") as db:
        assert {d for (d,) in db.execute("select detail from deliveries")} == {"timed out"}


def test_watermark_deletes_only_committed_instances(make_box, tmp_path):
    require("storescu")
    port = free_port()
    archive = CommittingArchive(port)
    try:
        box = make_box(
            remote("pacs", port, extra="commit = true\ncommit_delay_s = 0.1")
            + routed("pacs", 'modality = "CT"', storage="watermark_mb = 0.001")
        )
        committed = stored_pairs(box, tmp_path, 3)
        kept = ct_files(tmp_path / "mr", 2, modality="MR")
        assert storescu(box.port, kept).returncode == 0
        wait_for(lambda: set(delivery_states(box).values()) == {"committed"})
    finally:
        archive.server.shutdown()
    result = box.cli("watermark")
    assert "deleted 3 instances" in result.stdout, result.stdout + result.stderr
    left = sorted(p.name for p in (box.data_dir / "studies").rglob("*.dcm"))
    assert left == sorted(f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in kept)
    assert not any(uid in box.cli("studies").stdout for _, uid in committed)
