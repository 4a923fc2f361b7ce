"""One association, as acceptor: negotiation, then the DIMSE message loop.

Runs on its own thread inside a network worker. Reads are blocking with timeouts (ACSE
while negotiating, network while idle between messages, DIMSE inside a message), so no
loop ever polls or sleeps.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pynetdicom.pdu import A_ASSOCIATE_AC as AcPdu
from pynetdicom.pdu import A_ASSOCIATE_RJ as RjPdu
from pynetdicom.pdu import A_ASSOCIATE_RQ as RqPdu
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassExtendedNegotiation,
)
from pynetdicom.presentation import negotiate_as_acceptor

from dicombox.core.config import NetworkSection
from dicombox.core.net import commands, pdu
from dicombox.core.net.policy import (
    ACSE_PROTOCOL_VERSION_NOT_SUPPORTED,
    REJECTED_PERMANENT,
    SOURCE_PROVIDER_ACSE,
    AssociationPolicy,
    Rejection,
)
from dicombox.core.net.registry import Offer, ServiceRegistry
from dicombox.core.net.sending import (
    StoredFile,
    context_to_send_on,
    prefer_sendable_syntaxes,
    send_store_request,
)
from dicombox.core.net.service import (
    AcceptedContext,
    DatasetSink,
    MemorySink,
    Peer,
    Reply,
    Request,
)
from dicombox.core.net.tally import AssociationTally

log = logging.getLogger("dicombox.association")
_ids = itertools.count(1)

# Statuses the host answers itself (PS3.7 Annex C)
STATUS_UNRECOGNIZED_OPERATION = 0x0211
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_CLASS_NOT_SUPPORTED = 0x0122
STATUS_OUT_OF_RESOURCES = 0xA700
PENDING = (0xFF00, 0xFF01)

EventSink = Callable[..., None]  # publish(topic, **fields)


@dataclass
class _Message:
    """A request being received: its command, then (maybe) its data set."""

    context: AcceptedContext
    command: commands.Command | None = None
    sink: DatasetSink | None = None
    command_bytes: bytearray | None = None


class AssociationAcceptor:
    def __init__(
        self,
        sock: socket.socket,
        address: tuple[Any, ...],
        registry: ServiceRegistry,
        policy: AssociationPolicy,
        network: NetworkSection,
        publish: EventSink,
        over_limit: Rejection | None = None,
    ) -> None:
        self.io = pdu.PduSocket(sock)
        self.address = address
        self.registry = registry
        self.policy = policy
        self.network = network
        self.publish = publish
        self.over_limit = over_limit  # set when no association slot was free
        self.id = f"{os.getpid()}-{next(_ids)}"
        self.peer: Peer | None = None
        self.contexts: dict[int, AcceptedContext] = {}
        self.offers: dict[str, Offer] = {}
        self._message: _Message | None = None
        self.messages = 0
        self._handling = False  # a handler is producing responses
        self._handling_id: int | None = None  # the Message ID of the request it answers
        self._answered = False  # ... and its final (not pending) response has gone out
        # A request that came while a handler, its operation answered, waited on the peer
        # (a commitment report): each side may have one operation outstanding (PS3.7
        # D.3.3.3), so it is taken once the handler is done.
        self._deferred: _Message | None = None
        self._cancelled: set[int] = set()  # message IDs the peer sent C-CANCEL-RQ for
        # What ended the association while a handler waited on the peer: the error, or
        # "released" / "aborted". The message loop ends the association as that says.
        self._lost: BaseException | None = None
        self._ended = ""
        self._responses: dict[int, commands.Command] = {}  # answers to our sub-operations
        self._sub_ids = itertools.count(1)
        self.extended: dict[str, bytes] = {}  # SOP class -> accepted extended negotiation
        self.permitted: frozenset[str] = frozenset()  # what the caller may ask of us
        self._refused: set[str] = set()  # permissions already refused (audited once)
        self._rejected_why = ""
        self._busy_when_aborted = False  # a request was coming in or being answered
        self.tally = AssociationTally()  # what was done, for the log line at the end

    # ---------------------------------------------------------------- lifecycle
    def run(self) -> None:
        started = time.monotonic()
        outcome, why, level = "aborted", "", logging.WARNING
        try:
            if self._negotiate():
                outcome = self._serve()
                if outcome == "released":
                    level = logging.INFO
                elif not self._busy_when_aborted:  # between operations: the peer's way out
                    why, level = "by the peer", logging.INFO
                else:
                    why = "by the peer in the middle of an operation"
            else:
                outcome, why = "rejected", self._rejected_why
        except pdu.ProtocolError as exc:
            why = f"{exc}; aborting"
            self._send_quietly(pdu.abort(pdu.ABORT_SOURCE_PROVIDER, exc.reason))
        except pdu.PeerClosed as exc:
            why = f"peer went away ({exc})"
        except pdu.TooSlow as exc:
            why = f"{exc}; aborting"
            self._send_quietly(pdu.abort())
        except TimeoutError:
            why = f"timed out; aborting after {self.io.timeout or 0:g} s without data"
            self._send_quietly(pdu.abort())
        except OSError as exc:
            why = f"network error: {exc}"
        finally:
            for left in (self._message, self._deferred):  # cut off, or never answered
                if left is not None and left.sink is not None:
                    left.sink.discard()  # an incomplete data set leaves nothing behind
            self.io.close()
            self.registry.association_ended(self.id)
        self._log_end(level, outcome, why, time.monotonic() - started)
        if outcome != "rejected":
            self.publish(
                "association.ended",
                association=self.id,
                outcome=outcome,
                messages=self.messages,
                seconds=round(time.monotonic() - started, 3),
                **self._peer_fields(),
            )

    def _log_end(self, level: int, outcome: str, why: str, seconds: float) -> None:
        """One line per association, however it ended: who, what was done, how long."""
        called = f" -> {self.peer.called_ae}" if self.peer else ""
        for left in (self._message, self._deferred):  # cut off, or never answered
            if left is not None and left.command is not None:
                self.tally.received(left.command.field)
        done = "" if outcome == "rejected" else f": {self.tally.summary()}"
        log.log(
            level,
            "association %s %s%s %s after %.1f s%s%s",
            self.id,
            self._who(),
            called,
            outcome,
            seconds,
            f" ({why})" if why else "",
            done,
            extra={"association": self.id, "outcome": outcome, "seconds": round(seconds, 3),
                   **self._peer_fields()},
        )  # fmt: skip

    def _who(self) -> str:
        host = f"{str(self.address[0]).removeprefix('::ffff:')}:{self.address[1]}"
        return f"{self.peer.calling_ae}@{host}" if self.peer else host

    def _peer_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"peer_host": self.address[0], "peer_port": self.address[1]}
        if self.peer:
            fields.update(calling_ae=self.peer.calling_ae, called_ae=self.peer.called_ae)
        return fields

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.io.send(data)
        except OSError:
            pass

    # -------------------------------------------------------------- negotiation
    def _negotiate(self) -> bool:
        # The whole request within the ACSE timeout, however it trickles in: each waiting
        # connection holds an association slot.
        self.io.deadline = time.monotonic() + self.network.acse_timeout_s
        try:
            pdu_type, length = self.io.read_pdu_header()
            if pdu_type != pdu.A_ASSOCIATE_RQ:
                raise pdu.ProtocolError(f"expected A-ASSOCIATE-RQ, got {pdu.PDU_NAMES[pdu_type]}")
            body = self.io.read_small_pdu_body(pdu_type, length)
        finally:
            self.io.deadline = None
            self.io.settimeout(self.network.acse_timeout_s)  # for the answer, in full
        rq_pdu = RqPdu()
        try:
            rq_pdu.decode(bytes([pdu_type, 0]) + length.to_bytes(4, "big") + body)
            rq = rq_pdu.to_primitive()
        except Exception as exc:  # pynetdicom raises assorted errors on malformed items
            raise pdu.ProtocolError(
                f"malformed A-ASSOCIATE-RQ ({exc})", pdu.REASON_INVALID_PARAMETER
            ) from None
        calling, called = str(rq.calling_ae_title).strip(), str(rq.called_ae_title).strip()
        user_info = {type(item): item for item in rq.user_information}
        max_length = user_info.get(MaximumLengthNotification)
        impl_uid = user_info.get(ImplementationClassUIDNotification)
        impl_version = user_info.get(ImplementationVersionNameNotification)
        self.peer = Peer(
            calling_ae=calling,
            called_ae=called,
            address=str(self.address[0]),
            port=int(self.address[1]),
            max_pdu=int(max_length.maximum_length_received or 0) if max_length else 0,
            implementation_class_uid=str(getattr(impl_uid, "implementation_class_uid", "")),
            implementation_version=str(
                getattr(impl_version, "implementation_version_name", "") or ""
            ),
            association_id=self.id,
        )
        rejection = self._rejection(rq_pdu, rq)
        if rejection is not None:
            self._reject(rq, rejection)
            return False
        self.permitted = self.policy.permissions(calling, self.peer.address)
        roles = {
            str(item.sop_class_uid): (item.scu_role, item.scp_role)
            for item in rq.user_information
            if isinstance(item, SCP_SCU_RoleSelectionNegotiation)
        }
        proposed = rq.presentation_context_definition_list
        supported, self.offers = self.registry.acceptor_contexts(called, proposed)
        try:
            results, role_replies = negotiate_as_acceptor(proposed, supported, roles or None)
        except Exception as exc:  # pynetdicom trusts each context to have its syntaxes
            raise pdu.ProtocolError(
                f"malformed presentation context ({exc})", pdu.REASON_INVALID_PARAMETER
            ) from None
        prefer_sendable_syntaxes(results, proposed, supported)  # where the box sends (C-GET)
        for cx in results:
            if cx.result == 0:
                self.contexts[int(cx.context_id)] = AcceptedContext(
                    int(cx.context_id),
                    str(cx.abstract_syntax),
                    str(cx.transfer_syntax[0]),
                    as_scu=bool(cx.as_scu),
                    as_scp=bool(cx.as_scp),
                )
        extended = self._extended_replies(rq)
        self._accept(
            rq,
            results,
            [*role_replies, *extended],
            AsynchronousOperationsWindowNegotiation in user_info,
        )
        self.publish(
            "association.accepted",
            association=self.id,
            accepted=len(self.contexts),
            proposed=len(proposed),
            **self._peer_fields(),
        )
        return True

    def _rejection(self, rq_pdu: RqPdu, rq: A_ASSOCIATE) -> Rejection | None:
        if not rq_pdu.protocol_version & 1:
            return Rejection(
                REJECTED_PERMANENT,
                SOURCE_PROVIDER_ACSE,
                ACSE_PROTOCOL_VERSION_NOT_SUPPORTED,
                f"protocol version {rq_pdu.protocol_version} is not 1",
            )
        assert self.peer is not None
        found = self.policy.check(
            self.peer.calling_ae,
            self.peer.called_ae,
            self.peer.address,
            str(rq.application_context_name),
        )
        return found or self.over_limit

    def _reject(self, rq: A_ASSOCIATE, rejection: Rejection) -> None:
        primitive = A_ASSOCIATE()
        primitive.result = rejection.result
        primitive.result_source = rejection.source
        primitive.diagnostic = rejection.reason
        rj = RjPdu()
        rj.from_primitive(primitive)
        self.io.send(rj.encode())
        self._rejected_why = rejection.why
        self.publish(
            "association.rejected",
            association=self.id,
            reason=rejection.why,
            result=rejection.result,
            source=rejection.source,
            diagnostic=rejection.reason,
            **self._peer_fields(),
        )
        # Give the peer the chance to close first (PS3.8 state Sta13), then drop.
        self.io.settimeout(1.0)
        try:
            self.io.read_exact(1)
        except (OSError, pdu.PeerClosed):
            pass

    def _extended_replies(self, rq: A_ASSOCIATE) -> list[SOPClassExtendedNegotiation]:
        """Answer SOP Class Extended Negotiation for the classes whose service takes it."""
        replies = []
        for item in rq.user_information:
            if not isinstance(item, SOPClassExtendedNegotiation):
                continue
            uid = str(item.sop_class_uid)
            offer = self.offers.get(uid)
            answer = offer.service.extended_negotiation if offer else None
            accepted = answer(item.service_class_application_information or b"") if answer else None
            if accepted is None:
                continue
            reply = SOPClassExtendedNegotiation()
            reply.sop_class_uid = uid
            reply.service_class_application_information = accepted
            replies.append(reply)
            self.extended[uid] = accepted
        return replies

    def _accept(
        self, rq: A_ASSOCIATE, results: list[Any], roles: list[Any], async_ops: bool
    ) -> None:
        primitive = A_ASSOCIATE()
        primitive.application_context_name = rq.application_context_name
        primitive.calling_ae_title = rq.calling_ae_title
        primitive.called_ae_title = rq.called_ae_title
        primitive.result = 0x00
        primitive.result_source = 0x01
        primitive.presentation_context_definition_results_list = results
        max_length = MaximumLengthNotification()
        max_length.maximum_length_received = self.network.max_pdu
        impl_uid = ImplementationClassUIDNotification()
        impl_uid.implementation_class_uid = self.network.implementation_class_uid
        impl_version = ImplementationVersionNameNotification()
        impl_version.implementation_version_name = self.network.implementation_version
        user_info: list[Any] = [max_length, impl_uid, impl_version, *roles]
        if async_ops:  # we perform one operation at a time and say so (PS3.7 D.3.3.3)
            window = AsynchronousOperationsWindowNegotiation()
            window.maximum_number_operations_invoked = 1
            window.maximum_number_operations_performed = 1
            user_info.append(window)
        primitive.user_information = user_info
        ac = AcPdu()
        ac.from_primitive(primitive)
        self.io.send(ac.encode())

    # ------------------------------------------------------------- message loop
    def _serve(self) -> str:
        if self.network.min_data_rate:
            window = self.network.data_rate_window_s
            self.io.min_rate = pdu.MinimumRate(
                max(1, round(self.network.min_data_rate * window)), window
            )
        while True:
            self.io.settimeout(
                self.network.dimse_timeout_s if self._message else self.network.network_timeout_s
            )
            ended = self._read_pdu() or self._ended
            if ended:
                return ended

    def _read_pdu(self) -> str:
        """Read and act on one PDU; returns "released" or "aborted" when the association
        ends with it, else ""."""
        ended = self._act_on_pdu()
        if self._message is None:
            self.io.rest()  # nothing owed until the peer begins its next PDU
        return ended

    def _act_on_pdu(self) -> str:
        pdu_type, length = self.io.read_pdu_header()
        if pdu_type == pdu.P_DATA_TF:
            self.io.read_p_data(
                length, self._on_pdv, self._on_chunk, self._on_pdv_end, self.network.max_pdu
            )
            return ""
        if pdu_type == pdu.A_RELEASE_RQ:
            self.io.read_small_pdu_body(pdu_type, length)
            if self._message is not None or self._handling:
                log.warning("association %s released in the middle of a message", self.id)
            self.io.send(pdu.release_rp())
            return "released"
        if pdu_type == pdu.A_ABORT:
            self.io.read_small_pdu_body(pdu_type, length)
            self._busy_when_aborted = self._message is not None or self._handling
            return "aborted"
        raise pdu.ProtocolError(f"unexpected {pdu.PDU_NAMES[pdu_type]} in an association")

    def _store_back(self, item: StoredFile) -> int:
        """One C-GET sub-operation: C-STORE ``item`` to the peer on this association, in a
        context it opened for the SCP role, and wait for its answer."""
        assert self.peer is not None
        context = context_to_send_on(item, self.contexts.values())
        if self._lost is not None or self._ended:
            raise pdu.AssociationLost("the association has ended")
        message_id = next(self._sub_ids)
        send_store_request(
            self.io,
            context.context_id,
            context.transfer_syntax,
            self.peer.max_pdu,
            item,
            message_id,
        )
        return int(self._await_response(message_id).Status)

    def _await_response(self, message_id: int) -> commands.Command:
        while message_id not in self._responses:
            self._read_for_handler()
        response = self._responses.pop(message_id)
        self.tally.answered_by_peer(response.field, int(response.Status))
        return response

    def _read_for_handler(self) -> None:
        """Read and act on one PDU while a handler waits on the peer. An end or a break
        here is recorded before the handler hears of it (``AssociationLost``): a handler
        that carries on regardless must not keep the association going."""
        if self._lost is not None or self._ended:
            raise pdu.AssociationLost("the association has ended")
        try:
            ended = self._read_pdu()
        except (OSError, pdu.ProtocolError, pdu.PeerClosed) as exc:
            self._lost = exc
            raise pdu.AssociationLost(f"association lost: {exc or type(exc).__name__}") from exc
        if ended:
            self._ended = ended
            raise pdu.AssociationLost(f"the peer {ended} the association")

    def _event_report(self, context: AcceptedContext, fields: dict[str, Any], data: bytes) -> int:
        """Send an N-EVENT-REPORT-RQ to the peer on this association (a storage
        commitment report while the requestor still listens) and return its status.
        A peer that has already asked to release raises ``PeerClosed`` unsent."""
        assert self.peer is not None
        if self._lost is not None or self._ended:
            raise pdu.AssociationLost("the association has ended")
        if self.io.readable():
            raise pdu.PeerClosed("the peer is leaving; the report goes on a new association")
        message_id = next(self._sub_ids)
        command = commands.encode_command(
            CommandField=commands.N_EVENT_REPORT_RQ,
            MessageID=message_id,
            CommandDataSetType=0x0000,
            **fields,
        )
        out = pdu.p_data_pdus(context.context_id, command, True, self.peer.max_pdu)
        out += pdu.p_data_pdus(context.context_id, data, False, self.peer.max_pdu)
        self.io.send(b"".join(out))
        return int(self._await_response(message_id).Status)

    def _cancel_requested(self, message_id: int) -> bool:
        """Between the responses to one request the peer may send only a C-CANCEL-RQ
        (we agreed to one operation at a time): read what is there and say whether it
        cancelled ``message_id``."""
        while message_id not in self._cancelled and self.io.readable():
            self._read_for_handler()
        return message_id in self._cancelled

    def _on_pdv(self, pdv: pdu.PdvHeader, length: int) -> None:
        context = self.contexts.get(pdv.context_id)
        if context is None:
            raise pdu.ProtocolError(
                f"PDV on presentation context {pdv.context_id}, which was not accepted",
                pdu.REASON_INVALID_PARAMETER,
            )
        message = self._message
        if pdv.is_command:
            if message is None:
                message = self._message = _Message(context, command_bytes=bytearray())
            elif message.command is not None:
                raise pdu.ProtocolError("a command fragment arrived where a data set was due")
        elif message is None or message.command is None:
            raise pdu.ProtocolError("a data set fragment arrived with no command before it")
        if message.context.context_id != pdv.context_id:
            raise pdu.ProtocolError("a message switched presentation context mid-way")

    def _on_chunk(self, chunk: bytes) -> None:
        message = self._message
        assert message is not None
        if message.command is None:
            assert message.command_bytes is not None
            message.command_bytes += chunk
            if len(message.command_bytes) > 1 << 20:
                raise pdu.ProtocolError(
                    "command set larger than 1 MiB", pdu.REASON_INVALID_PARAMETER
                )
        else:
            assert message.sink is not None
            message.sink.write(chunk)

    def _on_pdv_end(self, pdv: pdu.PdvHeader) -> None:
        message = self._message
        assert message is not None
        if not pdv.is_last:
            return
        if message.command is None:
            assert message.command_bytes is not None
            try:
                message.command = commands.decode_command(bytes(message.command_bytes))
            except commands.CommandError as exc:
                raise pdu.ProtocolError(f"bad command set: {exc}") from None
            if message.command.has_dataset:
                message.sink = self._open_sink(message)
                return
            if message.command.field in commands.DATASET_REQUIRED:
                raise pdu.ProtocolError(f"{message.command.name} without its data set")
        elif message.sink is not None:
            message.sink.close()
        self._message = None
        self.io.rest()  # what the handler reads of the peer is timed from its own start
        self._dispatch(message)

    def _open_sink(self, message: _Message) -> DatasetSink:
        assert message.command is not None and self.peer is not None
        offer = self.offers.get(message.context.abstract_syntax)
        factory = offer.service.sinks.get(message.command.field) if offer else None
        if factory is None:
            return MemorySink()
        if self._missing_permission(offer, message.command) or self._off_context(message):
            return MemorySink(limit=0)  # refused once complete; nothing of it is kept
        return factory(Request(message.command, message.context, self.peer))

    def _dispatch(self, message: _Message) -> None:
        command = message.command
        assert command is not None and self.peer is not None
        self.messages += 1
        if command.field == commands.C_CANCEL_RQ:
            # Noted for the operation in progress only: a late cancel needs no answer, and
            # kept, it would cancel a later request that reuses the Message ID.
            if self._handling and command.MessageIDBeingRespondedTo == self._handling_id:
                self._cancelled.add(command.MessageIDBeingRespondedTo)
            return
        if command.field & 0x8000:
            if self._handling:  # the answer to a sub-operation we sent (C-GET)
                self._responses[command.MessageIDBeingRespondedTo] = command
            else:
                log.info("association %s: unsolicited %s ignored", self.id, command.name)
            return
        self.tally.received(command.field)
        if self._handling:
            if self._answered and self._deferred is None:
                self._deferred = message
                return
            if message.sink is not None:  # no handler will take its data set: keep nothing
                message.sink.discard()
            raise pdu.ProtocolError("a second request arrived while one was in progress")
        next_message: _Message | None = message
        while next_message is not None:  # a loop, not recursion: a peer may chain them
            self._handle(next_message)
            next_message, self._deferred = self._deferred, None
            if next_message is not None and self._ended:  # nobody waits for its answer
                if next_message.sink is not None:
                    next_message.sink.discard()
                next_message = None

    def _handle(self, message: _Message) -> None:
        """Answer a request: with its service's handler, or with the status the host
        gives when there is none or the caller may not ask it."""
        command = message.command
        assert command is not None and self.peer is not None
        offer = self.offers.get(message.context.abstract_syntax)
        handler = offer.service.handlers.get(command.field) if offer else None
        if handler is None:
            self._respond(message.context, command, Reply(STATUS_UNRECOGNIZED_OPERATION))
            return
        if missing := self._missing_permission(offer, command):
            self._refuse(message.context, command, missing)
            return
        if why := self._off_context(message):
            log.warning("association %s from %s: %s", self.id, self._who(), why)
            refusal = Reply(STATUS_CLASS_NOT_SUPPORTED, fields={"ErrorComment": why[:64]})
            self._respond(message.context, command, refusal)
            return
        request = Request(
            command,
            message.context,
            self.peer,
            message.sink,
            cancelled=lambda: self._cancel_requested(command.MessageID),
            store_back=self._store_back,
            event_report=lambda fields, data: self._event_report(message.context, fields, data),
            extended=self.extended.get(message.context.abstract_syntax, b""),
        )
        self._handling, self._handling_id, self._answered = True, command.MessageID, False
        replies: Iterable[Reply] = ()
        try:
            replies = handler(request)
            for reply in replies:
                if self._lost is not None or self._ended:
                    break  # the handler carried on after the association ended under it
                self._respond(message.context, command, reply)
                self._answered = reply.status not in PENDING
        except pdu.AssociationLost:
            pass  # what ended the association is recorded: see below
        except (OSError, pdu.ProtocolError, pdu.PeerClosed):
            raise
        except Exception as exc:
            log.exception("association %s: %s handler failed", self.id, command.name)
            if not self._answered and self._lost is None and not self._ended:
                self._respond(
                    message.context,
                    command,
                    Reply(STATUS_PROCESSING_FAILURE, fields={"ErrorComment": str(exc)[:64]}),
                )
        finally:
            self._close_handler(replies, command)
            self._handling, self._handling_id = False, None
            self._cancelled.discard(command.MessageID)
        if self._lost is not None:
            raise self._lost  # ``run`` ends the association as this error asks

    def _close_handler(self, replies: Iterable[Reply], command: commands.Command) -> None:
        """Let a handler left mid-way run its own cleanup now; its failure there is
        logged, not raised over what ended it."""
        close = getattr(replies, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:
            log.exception("association %s: %s handler failed to close", self.id, command.name)

    @staticmethod
    def _off_context(message: _Message) -> str:
        """Why a C-STORE's class is not its presentation context's, or "". A context
        negotiated for one class carries only that class: else a peer could store a class
        the box refused (``accept_unknown_classes = false``) on another's context."""
        command = message.command
        assert command is not None
        if command.field != commands.C_STORE_RQ:
            return ""  # N- services of a meta SOP class (print) name its parts, rightly
        announced = str(command.AffectedSOPClassUID or "")
        if not announced or announced == message.context.abstract_syntax:
            return ""  # none named: the data set's own class is checked (A900)
        return f"SOP class {announced} on the context of {message.context.abstract_syntax}"

    def _missing_permission(self, offer: Offer | None, command: commands.Command) -> str:
        """The permission this request needs and the caller lacks, or ""."""
        needed = offer.service.permissions.get(command.field, "") if offer else ""
        return needed if needed and needed not in self.permitted else ""

    def _refuse(self, context: AcceptedContext, command: commands.Command, needed: str) -> None:
        assert self.peer is not None
        why = f"{self.peer.calling_ae} may not {needed} ([[remote]] services)"
        if needed not in self._refused:  # a refused study is one alert, not one per image
            self._refused.add(needed)
            log.warning(
                "association %s from %s: %s refused: %s", self.id, self._who(), command.name, why
            )
            self.publish(
                "security.refused",
                association=self.id,
                permission=needed,
                command=command.name,
                why=why,
                **self._peer_fields(),
            )
        self._respond(
            context, command, Reply(STATUS_NOT_AUTHORIZED, fields={"ErrorComment": why[:64]})
        )

    def _respond(self, context: AcceptedContext, request: commands.Command, reply: Reply) -> None:
        assert self.peer is not None
        fields = dict(reply.fields)
        fields["CommandDataSetType"] = 0x0000 if reply.dataset is not None else commands.NO_DATASET
        command = commands.response_for(request, reply.status, **fields)
        out = pdu.p_data_pdus(context.context_id, command, True, self.peer.max_pdu)
        if reply.dataset is not None:
            out += pdu.p_data_pdus(context.context_id, reply.dataset, False, self.peer.max_pdu)
        self.io.send(b"".join(out))
        self.tally.answered(request.field, reply.status, reply.summary)
