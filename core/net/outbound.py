"""The box as association requestor on its own lean path: open an association, send
stored instances as C-STOREs, read the answers, release. pynetdicom encodes the
A-ASSOCIATE-RQ and decodes the answer; the data flows as in ``sending``."""

from __future__ import annotations

import itertools
import socket
import ssl
from dataclasses import dataclass
from types import TracebackType

from pynetdicom.pdu import A_ASSOCIATE_AC as AcPdu
from pynetdicom.pdu import A_ASSOCIATE_RJ as RjPdu
from pynetdicom.pdu import A_ASSOCIATE_RQ as RqPdu
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

from dicombox.core.config import NetworkSection
from dicombox.core.net import commands, pdu
from dicombox.core.net.requestor import Destination
from dicombox.core.net.sending import StoredFile, send_store_request
from dicombox.core.net.service import AcceptedContext
from dicombox.core.net.tls import connect_tls


class AssociationFailed(Exception):
    """The peer could not be reached, rejected us, or broke off."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # rejected permanently: retrying will not help


@dataclass(frozen=True)
class Proposal:
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


class RequestorAssociation:
    def __init__(
        self,
        io: pdu.PduSocket,
        accepted: dict[int, AcceptedContext],
        peer_max_pdu: int,
        network: NetworkSection,
    ) -> None:
        self.io = io
        self.accepted = accepted
        self.peer_max_pdu = peer_max_pdu
        self.network = network
        self._ids = itertools.count(1)

    @classmethod
    def open(
        cls,
        destination: Destination,
        calling_ae: str,
        proposals: list[Proposal],
        network: NetworkSection,
    ) -> RequestorAssociation:
        if not proposals:
            raise AssociationFailed("nothing to propose", permanent=True)
        if len(proposals) > 128:
            raise AssociationFailed("more than 128 presentation contexts", permanent=True)
        try:
            sock = socket.create_connection(
                (destination.host, destination.port), timeout=network.acse_timeout_s
            )
        except OSError as exc:
            raise AssociationFailed(f"cannot reach {destination}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if destination.tls:
            try:
                sock = connect_tls(sock, network, destination.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise AssociationFailed(f"TLS with {destination} failed: {exc}") from None
        io = pdu.PduSocket(sock)
        try:
            io.send(_request(destination, calling_ae, proposals, network))
            pdu_type, length = io.read_pdu_header()
            body = io.read_small_pdu_body(pdu_type, length)
            raw = bytes([pdu_type, 0]) + length.to_bytes(4, "big") + body
            if pdu_type == pdu.A_ASSOCIATE_RJ:
                rj = RjPdu()
                rj.decode(raw)
                raise AssociationFailed(
                    f"{destination} rejected the association: {rj.reason_str}",
                    permanent=rj.result == 1,
                )
            if pdu_type != pdu.A_ASSOCIATE_AC:
                raise AssociationFailed(f"{destination} answered {pdu.PDU_NAMES[pdu_type]}")
            ac = AcPdu()
            ac.decode(raw)
            primitive = ac.to_primitive()
        except AssociationFailed:
            io.close()
            raise
        except (OSError, pdu.PeerClosed, pdu.ProtocolError) as exc:
            io.close()
            raise AssociationFailed(f"association with {destination} failed: {exc}") from None
        by_id = {2 * i + 1: p for i, p in enumerate(proposals)}
        accepted = {}
        for cx in primitive.presentation_context_definition_results_list:
            proposal = by_id.get(int(cx.context_id))
            if cx.result == 0 and proposal is not None:
                accepted[int(cx.context_id)] = AcceptedContext(
                    int(cx.context_id),
                    proposal.abstract_syntax,
                    str(cx.transfer_syntax[0]),
                    as_scu=True,  # the box asks, with no role selection: the SCU
                    as_scp=False,
                )
        max_pdu = next(
            (
                int(i.maximum_length_received or 0)
                for i in primitive.user_information
                if isinstance(i, MaximumLengthNotification)
            ),
            0,
        )
        io.settimeout(network.dimse_timeout_s)
        return cls(io, accepted, max_pdu, network)

    def context_for(self, sop_class: str, syntaxes: tuple[str, ...]) -> AcceptedContext | None:
        """The accepted context for ``sop_class`` in the first of ``syntaxes`` it has."""
        for syntax in syntaxes:
            for cx in self.accepted.values():
                if cx.abstract_syntax == sop_class and cx.transfer_syntax == syntax:
                    return cx
        return None

    def store(
        self,
        item: StoredFile,
        syntaxes: tuple[str, ...],
        move_originator: tuple[str, int] | None = None,
    ) -> int:
        """C-STORE one stored file; returns the peer's status. No accepted context for
        it raises ``LookupError``."""
        cx = self.context_for(item.sop_class_uid, syntaxes)
        if cx is None:
            raise LookupError(f"{self} accepted no context for {item.sop_class_uid}")
        message_id = next(self._ids) & 0xFFFF
        try:
            send_store_request(
                self.io,
                cx.context_id,
                cx.transfer_syntax,
                self.peer_max_pdu,
                item,
                message_id,
                move_originator,
            )
            return int(self.read_response().Status)
        except (pdu.PeerClosed, pdu.ProtocolError, ConnectionError, TimeoutError) as exc:
            self.io.close()
            raise AssociationFailed(f"the peer broke off: {exc or type(exc).__name__}") from None

    def read_response(self) -> commands.Command:
        """Read PDUs until one whole response command has arrived."""
        parts: list[bytes] = []
        done: list[commands.Command] = []

        def on_pdv(header: pdu.PdvHeader, _length: int) -> None:
            if not header.is_command:
                raise pdu.ProtocolError("a data set arrived where a C-STORE-RSP was due")

        def on_end(header: pdu.PdvHeader) -> None:
            if header.is_last:
                done.append(commands.decode_command(b"".join(parts)))

        while not done:
            pdu_type, length = self.io.read_pdu_header()
            if pdu_type != pdu.P_DATA_TF:
                self.io.close()
                raise AssociationFailed(
                    f"peer sent {pdu.PDU_NAMES[pdu_type]} instead of a response"
                )
            self.io.read_p_data(length, on_pdv, parts.append, on_end)
        return done[0]

    def release(self) -> None:
        try:
            self.io.settimeout(self.network.acse_timeout_s)
            self.io.send(pdu.release_rq())
            pdu_type, length = self.io.read_pdu_header()
            self.io.read_small_pdu_body(pdu_type, length)
        except (OSError, pdu.PeerClosed, pdu.ProtocolError):
            pass  # the peer went first: nothing is lost, the work is done
        finally:
            self.io.close()

    def abort(self) -> None:
        try:
            self.io.send(pdu.abort(pdu.ABORT_SOURCE_USER))
        except OSError:
            pass
        self.io.close()

    def __enter__(self) -> RequestorAssociation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()


def _request(
    destination: Destination, calling_ae: str, proposals: list[Proposal], network: NetworkSection
) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = destination.ae_title
    contexts = []
    for i, proposal in enumerate(proposals):
        cx = build_context(proposal.abstract_syntax, list(proposal.transfer_syntaxes))
        cx.context_id = 2 * i + 1
        contexts.append(cx)
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = network.send_max_pdu
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = network.implementation_class_uid
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = network.implementation_version
    primitive.user_information = [length, impl, version]
    rq = RqPdu()
    rq.from_primitive(primitive)
    return rq.encode()
