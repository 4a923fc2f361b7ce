"""Edges of the box's DIMSE message loop, over a socket pair: what a strict peer sees
when it cancels late, releases or asks while the box waits on it, or stores one class on
another's context, and what a peer trickling its request in gets. Real peers cannot be
made to do these on cue, so the test speaks PDUs itself, as they go on the wire."""

from __future__ import annotations

import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC as AcPdu

from dicombox.core.config import NetworkSection
from dicombox.core.net import commands, pdu
from dicombox.core.net.association import AssociationAcceptor
from dicombox.core.net.policy import AssociationSlots
from dicombox.core.net.registry import ServiceRegistry
from dicombox.core.net.server import AssociationServer, make_listener
from dicombox.core.net.service import MemorySink, Reply, Request, Service, SupportedContext
from tests.support.fuzz_seeds import association_request

IVR = "1.2.840.10008.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
VERIFY = "1.2.840.10008.1.1"
COMMIT = "1.2.840.10008.1.20.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
# Context IDs in the order association_request numbers them.
FIND_CX, VERIFY_CX, COMMIT_CX, CT_CX = 1, 3, 5, 7
PENDING, CANCELLED = 0xFF00, 0xFE00


class OpenPolicy:
    def check(self, *args: object) -> None:
        return None

    def permissions(self, *args: object) -> frozenset[str]:
        return frozenset()


class Session:
    """The peer's end of one association with an in-process acceptor."""

    def __init__(self, services: list[Service], network: NetworkSection | None = None) -> None:
        self.sock, theirs = socket.socketpair()
        self.sock.settimeout(10)
        self.published: list[tuple[str, dict[str, Any]]] = []
        acceptor = AssociationAcceptor(
            theirs,
            ("127.0.0.1", 40000),
            ServiceRegistry(services, "DICOMBOX"),
            OpenPolicy(),  # type: ignore[arg-type]
            network or NetworkSection(acse_timeout_s=5, dimse_timeout_s=5, network_timeout_s=5),
            lambda topic, **fields: self.published.append((topic, fields)),
        )
        self.thread = threading.Thread(target=acceptor.run, daemon=True)
        self.thread.start()

    def associate(
        self, called: str = "DICOMBOX", contexts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ) -> dict[str, int]:
        """Associate; the result the box gave each proposed abstract syntax (0: accepted)."""
        contexts = contexts or ((FIND, (IVR,)), (VERIFY, (IVR,)), (COMMIT, (IVR,)), (CT, (IVR,)))
        self.sock.sendall(association_request(called=called, contexts=contexts))
        pdu_type, body = self.read_pdu()
        assert pdu_type == pdu.A_ASSOCIATE_AC
        ac = AcPdu()
        ac.decode(bytes([pdu_type, 0]) + len(body).to_bytes(4, "big") + body)
        results = {
            int(cx.context_id): int(cx.result)
            for cx in ac.to_primitive().presentation_context_definition_results_list
        }
        return {uid: results[2 * i + 1] for i, (uid, _) in enumerate(contexts)}

    def request(self, context_id: int, data: bytes | None = None, **fields: Any) -> None:
        fields["CommandDataSetType"] = 0x0000 if data is not None else commands.NO_DATASET
        out = pdu.p_data_pdus(context_id, commands.encode_command(**fields), True, 0)
        if data is not None:
            out += pdu.p_data_pdus(context_id, data, False, 0)
        self.sock.sendall(b"".join(out))

    def read_pdu(self) -> tuple[int | None, bytes]:
        head = self._read(6)
        if len(head) < 6:
            return None, b""
        pdu_type, _, length = struct.unpack(">BBI", head)
        return pdu_type, self._read(length)

    def next_after_data(self) -> int | None:
        """The type of the next PDU that is not P-DATA (the rest of a data set), or None
        once the box has closed the connection."""
        while (pdu_type := self.read_pdu()[0]) == pdu.P_DATA_TF:
            pass
        return pdu_type

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            piece = self.sock.recv(n - len(data))
            if not piece:
                break
            data += piece
        return data

    def commands(self, n: int) -> list[commands.Command]:
        """The next ``n`` commands the box sends (their data sets skipped)."""
        found = []
        while len(found) < n:
            pdu_type, body = self.read_pdu()
            assert pdu_type == pdu.P_DATA_TF, f"expected P-DATA-TF, got {pdu_type}"
            if body[5] & 1:  # a command fragment (each is its own PDU here)
                found.append(commands.decode_command(body[6:]))
        return found

    def ended(self, timeout: float = 10) -> str:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the association did not end"
        return next(f["outcome"] for t, f in self.published if t == "association.ended")


def service(name: str, uid: str, field: int, handler: Callable[[Request], Iterator[Reply]],
            **extra: Any) -> Service:  # fmt: skip
    return Service(name, [SupportedContext(uid, (IVR,))], {field: handler}, **extra)


def echo(_request: Request) -> Iterator[Reply]:
    yield Reply(0)


def counted_find(request: Request) -> Iterator[Reply]:
    for _ in range(3):
        if request.cancelled():
            yield Reply(CANCELLED)
            return
        yield Reply(PENDING, dataset=b"")
    yield Reply(0)


def find_rq(message_id: int) -> dict[str, Any]:
    return {"CommandField": commands.C_FIND_RQ, "MessageID": message_id,
            "AffectedSOPClassUID": FIND, "Priority": 0}  # fmt: skip


def committing(outcomes: list[str]) -> Callable[[Request], Iterator[Reply]]:
    """An N-ACTION handler that answers, then reports on the same association, as a
    storage commitment SCP does; what became of the report goes to ``outcomes``."""

    def handle(request: Request) -> Iterator[Reply]:
        yield Reply(0)
        fields = {"AffectedSOPClassUID": COMMIT, "AffectedSOPInstanceUID": COMMIT + ".1",
                  "EventTypeID": 1}  # fmt: skip
        try:
            outcomes.append(f"answered {request.event_report(fields, b''):04X}")
        except (OSError, pdu.PeerClosed, pdu.ProtocolError) as exc:
            outcomes.append(f"queued: {type(exc).__name__}")  # as the commitment SCP does

    return handle


N_ACTION = {"CommandField": commands.N_ACTION_RQ, "MessageID": 1, "ActionTypeID": 1,
            "RequestedSOPClassUID": COMMIT, "RequestedSOPInstanceUID": COMMIT + ".1"}  # fmt: skip


def test_a_late_c_cancel_does_not_cancel_a_later_request_with_its_message_id() -> None:
    s = Session([service("find", FIND, commands.C_FIND_RQ, counted_find)])
    s.associate()
    s.request(FIND_CX, b"", **find_rq(7))
    assert [c.Status for c in s.commands(4)] == [PENDING, PENDING, PENDING, 0]
    s.request(FIND_CX, CommandField=commands.C_CANCEL_RQ, MessageIDBeingRespondedTo=7)
    s.request(FIND_CX, b"", **find_rq(7))  # an SCU that numbers every request 7
    assert [c.Status for c in s.commands(4)] == [PENDING, PENDING, PENDING, 0]
    s.sock.sendall(pdu.release_rq())
    assert s.read_pdu()[0] == pdu.A_RELEASE_RP
    assert s.ended() == "released"


def test_a_handler_failing_after_its_final_answer_sends_no_second_answer() -> None:
    def answers_then_fails(_request: Request) -> Iterator[Reply]:
        yield Reply(0)
        raise RuntimeError("database is locked")

    s = Session([service("commit", COMMIT, commands.N_ACTION_RQ, answers_then_fails),
                 service("echo", VERIFY, commands.C_ECHO_RQ, echo)])  # fmt: skip
    s.associate()
    s.request(COMMIT_CX, b"", **N_ACTION)
    s.request(VERIFY_CX, CommandField=commands.C_ECHO_RQ, MessageID=2,
              AffectedSOPClassUID=VERIFY)  # fmt: skip
    answers = s.commands(2)
    assert [(c.name, c.MessageIDBeingRespondedTo, c.Status) for c in answers] == [
        ("N-ACTION-RSP", 1, 0), ("C-ECHO-RSP", 2, 0)
    ]  # fmt: skip


def test_a_release_while_a_report_awaits_its_answer_ends_the_association_released() -> None:
    outcomes: list[str] = []
    s = Session([service("commit", COMMIT, commands.N_ACTION_RQ, committing(outcomes))])
    s.associate()
    s.request(COMMIT_CX, b"", **N_ACTION)
    assert [c.name for c in s.commands(2)] == ["N-ACTION-RSP", "N-EVENT-REPORT-RQ"]
    s.sock.sendall(pdu.release_rq())
    assert s.next_after_data() == pdu.A_RELEASE_RP  # after the report's data set
    assert s.read_pdu()[0] is None  # then the box closes: nothing more is read or sent
    assert s.ended() == "released"
    assert outcomes == ["queued: AssociationLost"]  # the report goes on a new association


def test_a_request_while_a_report_awaits_its_answer_is_answered_after_it() -> None:
    outcomes: list[str] = []
    s = Session([service("commit", COMMIT, commands.N_ACTION_RQ, committing(outcomes)),
                 service("echo", VERIFY, commands.C_ECHO_RQ, echo)])  # fmt: skip
    s.associate()
    s.request(COMMIT_CX, b"", **N_ACTION)
    report = s.commands(2)[1]
    # Each side may have one operation outstanding: the peer asks before it answers.
    s.request(VERIFY_CX, CommandField=commands.C_ECHO_RQ, MessageID=2,
              AffectedSOPClassUID=VERIFY)  # fmt: skip
    s.request(COMMIT_CX, CommandField=commands.N_EVENT_REPORT_RSP, Status=0,
              MessageIDBeingRespondedTo=report.MessageID,
              AffectedSOPClassUID=COMMIT)  # fmt: skip
    echo_rsp = s.commands(1)[0]
    assert (echo_rsp.name, echo_rsp.MessageIDBeingRespondedTo, echo_rsp.Status) == (
        "C-ECHO-RSP", 2, 0
    )  # fmt: skip
    assert outcomes == ["answered 0000"]
    s.sock.sendall(pdu.release_rq())
    assert s.read_pdu()[0] == pdu.A_RELEASE_RP
    assert s.ended() == "released"


def test_a_c_store_of_another_class_than_its_context_is_refused_0122() -> None:
    stored: list[bytes] = []

    def store(request: Request) -> Iterator[Reply]:
        stored.append(request.dataset.data if request.dataset else b"")
        yield Reply(0)

    storage = service("storage", CT, commands.C_STORE_RQ, store,
                      sinks={commands.C_STORE_RQ: lambda request: MemorySink()})  # fmt: skip
    s = Session([storage])
    s.associate()
    fields = {"CommandField": commands.C_STORE_RQ, "Priority": 0,
              "AffectedSOPInstanceUID": "1.2.3.4"}  # fmt: skip
    s.request(CT_CX, b"\x08\x00\x16\x00", MessageID=1, AffectedSOPClassUID=MR, **fields)
    s.request(CT_CX, b"\x08\x00\x16\x00", MessageID=2, AffectedSOPClassUID=CT, **fields)
    answers = s.commands(2)
    assert [(c.MessageIDBeingRespondedTo, c.Status) for c in answers] == [(1, 0x0122), (2, 0)]
    assert MR in str(answers[0].ErrorComment)
    assert stored == [b"\x08\x00\x16\x00"]  # only the one on its own class's context


def test_an_association_request_trickling_in_is_cut_off_at_the_acse_timeout() -> None:
    gap_s = 0.3
    network = NetworkSection(acse_timeout_s=1, dimse_timeout_s=5, network_timeout_s=5)
    s = Session([service("echo", VERIFY, commands.C_ECHO_RQ, echo)], network)
    request = association_request(contexts=((VERIFY, (IVR,)),))
    started = time.monotonic()
    try:
        for byte in request[:20]:  # each byte well within the timeout of the one before
            s.sock.sendall(bytes([byte]))
            time.sleep(gap_s)
            if not s.thread.is_alive():
                break
    except OSError:
        pass  # the box closed the connection under the sender
    s.thread.join(5)
    assert not s.thread.is_alive()
    assert time.monotonic() - started < 3  # 1 s and a gap, not 20 gaps
    assert s.read_pdu()[0] == pdu.A_ABORT


def test_unknown_classes_are_accepted_on_any_called_ae_title_the_box_answers() -> None:
    """With ``accept_any_called_ae``, a made-up called title gets the box's default
    services: promiscuous storage among them."""
    private = "1.2.826.0.1.3680043.9.9999.77"
    storage = Service(
        "storage",
        [SupportedContext(CT, (IVR,))],
        {},
        accepts_unknown=lambda uid: True,
        fallback_transfer_syntaxes=(IVR,),
    )
    s = Session([storage])
    results = s.associate(called="ANY_TITLE", contexts=((CT, (IVR,)), (private, (IVR,))))
    assert results == {CT: 0, private: 0}


def test_connections_past_twice_the_association_limit_are_closed_at_once(tmp_path: Path) -> None:
    """Each connection costs a thread in its worker; past twice the box's limit (one
    here) a flood of silent connections is closed instead of growing threads."""
    network = NetworkSection(
        acse_timeout_s=5, dimse_timeout_s=5, network_timeout_s=5, max_associations=1
    )
    listener = make_listener("127.0.0.1", 0)
    server = AssociationServer(
        listener,
        ServiceRegistry([service("echo", VERIFY, commands.C_ECHO_RQ, echo)], "DICOMBOX"),
        OpenPolicy(),  # type: ignore[arg-type]
        network,
        AssociationSlots(tmp_path / "slots", network.max_associations),
        lambda topic, **fields: None,
    )
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    port = listener.getsockname()[1]
    silent = []
    try:
        for _ in range(3):
            conn = socket.create_connection(("127.0.0.1", port), timeout=1)
            silent.append(conn)
            time.sleep(0.2)  # accepted, one at a time
        closed = []
        for conn in silent:
            try:
                closed.append(conn.recv(1) == b"")
            except TimeoutError:
                closed.append(False)  # still waiting for its A-ASSOCIATE-RQ
        assert closed == [False, False, True]
        assert server.active == 2
    finally:
        for conn in silent:
            conn.close()
        server.stop()
        serving.join(5)


def test_a_request_deferred_behind_a_report_leaves_nothing_when_the_peer_goes() -> None:
    """The peer sends a C-STORE while the box waits for its report's answer, then drops
    the connection: the data set taken in for the deferred request is discarded."""
    outcomes: list[str] = []
    sinks: list[Any] = []

    class Sink(MemorySink):
        discarded = False

        def discard(self) -> None:
            self.discarded = True
            super().discard()

    def new_sink(_request: Request) -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    storage = service(
        "storage", CT, commands.C_STORE_RQ, echo, sinks={commands.C_STORE_RQ: new_sink}
    )
    s = Session([service("commit", COMMIT, commands.N_ACTION_RQ, committing(outcomes)), storage])
    s.associate()
    s.request(COMMIT_CX, b"", **N_ACTION)
    assert [c.name for c in s.commands(2)] == ["N-ACTION-RSP", "N-EVENT-REPORT-RQ"]
    s.request(CT_CX, b"\x08\x00\x16\x00", CommandField=commands.C_STORE_RQ, MessageID=2,
              AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.3.4", Priority=0)  # fmt: skip
    time.sleep(0.3)  # taken in and deferred
    s.sock.close()
    assert s.ended() == "aborted"
    assert [sink.discarded for sink in sinks] == [True]
    assert outcomes == ["queued: AssociationLost"]


def test_the_end_of_an_association_is_logged_once_with_what_was_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One line when it ends: who, to whom, how it ended, how long, and the requests
    counted by command and status class, with C-FIND's pending answers as matches, the
    requests the box sent the peer, and what handlers added."""
    caplog.set_level(logging.INFO, logger="dicombox.association")

    def find(request: Request) -> Iterator[Reply]:
        yield from (Reply(PENDING, dataset=b"") for _ in range(3))
        yield Reply(0, summary="searched the index")

    outcomes: list[str] = []
    report_back = committing(outcomes)
    s = Session([service("find", FIND, commands.C_FIND_RQ, find),
                 service("commit", COMMIT, commands.N_ACTION_RQ, report_back)])  # fmt: skip
    s.associate()
    for message_id in (1, 2):
        s.request(FIND_CX, b"", **find_rq(message_id))
        assert [c.Status for c in s.commands(4)] == [PENDING, PENDING, PENDING, 0]
    s.request(COMMIT_CX, b"", **N_ACTION)
    report = s.commands(2)[1]
    s.request(COMMIT_CX, CommandField=commands.N_EVENT_REPORT_RSP, Status=0,
              MessageIDBeingRespondedTo=report.MessageID,
              AffectedSOPClassUID=COMMIT)  # fmt: skip
    s.request(FIND_CX, CommandField=commands.C_ECHO_RQ, MessageID=4,
              AffectedSOPClassUID=FIND)  # fmt: skip
    assert s.commands(1)[0].Status == 0x0211  # no handler for it: refused, and counted
    s.sock.sendall(pdu.release_rq())
    assert s.read_pdu()[0] == pdu.A_RELEASE_RP
    assert s.ended() == "released"
    lines = [r for r in caplog.records if r.name == "dicombox.association"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert re.fullmatch(
        r"association \S+ FUZZSCU@127\.0\.0\.1:40000 -> DICOMBOX released after \d+\.\d s: "
        r"C-FIND 2 success, 6 matches; N-ACTION 1 success; C-ECHO 1 failed; "
        r"sent N-EVENT-REPORT 1 success; searched the index \(x2\)",
        lines[0].getMessage(),
    ), lines[0].getMessage()


def test_an_association_cut_off_is_logged_as_a_warning_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dicombox.association")
    storage = service("storage", CT, commands.C_STORE_RQ, echo,
                      sinks={commands.C_STORE_RQ: lambda request: MemorySink()})  # fmt: skip
    s = Session([storage])
    s.associate()
    s.request(CT_CX, b"\x08\x00\x16\x00", CommandField=commands.C_STORE_RQ, MessageID=1,
              AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.3.4", Priority=0)  # fmt: skip
    assert s.commands(1)[0].Status == 0
    command = commands.encode_command(CommandField=commands.C_STORE_RQ, MessageID=2,
                                      AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.3.5",
                                      Priority=0, CommandDataSetType=0)  # fmt: skip
    s.sock.sendall(pdu.p_data_pdus(CT_CX, command, True, 0)[0])  # and no data set: gone
    s.sock.close()
    assert s.ended() == "aborted"
    lines = [r for r in caplog.records if r.name == "dicombox.association"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert re.fullmatch(
        r"association \S+ FUZZSCU@127\.0\.0\.1:40000 -> DICOMBOX aborted after \d+\.\d s "
        r"\(peer went away \(.*\)\): C-STORE 1 success, 1 unanswered",
        lines[0].getMessage(),
    ), lines[0].getMessage()
