"""Feeding bytes to the box's decoders, in process or over TCP, and reading its answers."""

from __future__ import annotations

import io
import socket
import struct


class ScriptedSocket:
    """Stands in for an accepted connection: reads come from ``incoming`` and then end
    as if the peer had closed; what the box sends is kept in ``sent``."""

    def __init__(self, incoming: bytes) -> None:
        self._incoming = io.BytesIO(incoming)
        # The largest read the box asked for: a read fills a buffer of the size it asks
        # for, so a length taken from the wire shows here.
        self.largest_read = 0
        self.sent = bytearray()
        self._timeout: float | None = None

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0) -> int:
        size = nbytes or len(buffer)
        self.largest_read = max(self.largest_read, size)
        return self._incoming.readinto(memoryview(buffer)[:size])

    def settimeout(self, seconds: float | None) -> None:
        self._timeout = seconds

    def gettimeout(self) -> float | None:
        return self._timeout

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


def split_pdus(data: bytes) -> list[tuple[int, bytes]]:
    """The PDUs in ``data``; an AssertionError unless they frame it exactly."""
    found, pos = [], 0
    while pos < len(data):
        assert pos + 6 <= len(data), f"a PDU header is cut at byte {pos}"
        pdu_type, _, length = struct.unpack_from(">BBI", data, pos)
        assert pos + 6 + length <= len(data), f"PDU at byte {pos} claims {length} bytes"
        found.append((pdu_type, data[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    return found


def send_stream(port: int, data: bytes, timeout: float = 20) -> bytes:
    """Throw ``data`` at the box, say we are done sending, and return everything it
    answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the box may abort and close before it has read everything
        answer = bytearray()
        try:
            while piece := sock.recv(65536):
                answer += piece
        except ConnectionResetError:
            pass  # it aborted with our bytes still unread: the kernel resets
        return bytes(answer)
