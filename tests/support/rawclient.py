"""A deliberately bare association requestor for feeding the box malformed input:
truncated data sets, bogus PDU lengths, garbage. Real peers never send these."""

from __future__ import annotations

import socket
import struct

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

from dicombox.core.net import commands, pdu


def connect(port: int, timeout: float = 10, source: str = "") -> socket.socket:
    """A connection to the box on loopback; ``source``, the client's own address (any
    of 127/8 on Linux), so that one test can be several hosts."""
    address = (source, 0) if source else None
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def associate_rq(
    abstract_syntax: str, transfer_syntax: str, calling: str = "RAWSCU", called: str = "DICOMBOX"
) -> bytes:
    """An A-ASSOCIATE-RQ with one presentation context (id 1) and no maximum PDU."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    cx = build_context(abstract_syntax, [transfer_syntax])
    cx.context_id = 1
    primitive.presentation_context_definition_list = [cx]
    length = MaximumLengthNotification()
    length.maximum_length_received = 0
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.826.0.1.3680043.9.9999"
    primitive.user_information = [length, impl]
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return bytes(rq.encode())


def associate(
    port: int,
    abstract_syntax: str,
    transfer_syntax: str,
    calling: str = "RAWSCU",
    called: str = "DICOMBOX",
    source: str = "",
) -> tuple[socket.socket, int]:
    """Open an association with one presentation context (id 1); returns the socket and
    the PDU type of the answer (2 = accepted)."""
    sock = connect(port, source=source)
    sock.sendall(associate_rq(abstract_syntax, transfer_syntax, calling, called))
    pdu_type, body = read_pdu(sock)
    if pdu_type == pdu.A_ASSOCIATE_AC:
        # The context result sits in the AC's presentation context item (0x21): byte 2.
        pos = body.find(b"\x21\x00")
        assert pos >= 0 and body[pos + 6] == 0, "presentation context was not accepted"
    return sock, pdu_type


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        piece = sock.recv(n - len(data))
        if not piece:
            raise ConnectionError("closed")
        data += piece
    return data


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    pdu_type, _, length = struct.unpack(">BBI", read_exact(sock, 6))
    return pdu_type, read_exact(sock, length)


def store_command(sop_class: str, sop_instance: str) -> bytes:
    return commands.encode_command(
        CommandField=commands.C_STORE_RQ,
        MessageID=1,
        Priority=0,
        CommandDataSetType=0,
        AffectedSOPClassUID=sop_class,
        AffectedSOPInstanceUID=sop_instance,
    )


def c_store(sock: socket.socket, sop_class: str, sop_instance: str, dataset: bytes) -> int:
    """Send one C-STORE-RQ on context 1 and return the response status."""
    command = store_command(sop_class, sop_instance)
    out = pdu.p_data_pdus(1, command, True, 16384) + pdu.p_data_pdus(1, dataset, False, 16384)
    sock.sendall(b"".join(out))
    pdu_type, body = read_pdu(sock)
    assert pdu_type == pdu.P_DATA_TF, f"expected a response, got PDU type {pdu_type}"
    return int(commands.decode_command(body[6:]).Status)


def release(sock: socket.socket) -> None:
    sock.sendall(pdu.release_rq())
    pdu_type, _ = read_pdu(sock)
    assert pdu_type == pdu.A_RELEASE_RP
    sock.close()
