"""Reading and writing the upper-layer PDUs on a socket (PS3.8 §9.3).

P-DATA-TF is read item by item and each PDV's value is handed on in bounded chunks, so a
multi-gigabyte data set passes through with constant memory. Association PDUs are small
and go through pynetdicom's codec.
"""

from __future__ import annotations

import io
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07
PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

# Association PDUs are a few kB; anything far larger is a bogus length, not a request.
MAX_ASSOCIATION_PDU = 1 << 20
CHUNK = 1 << 18  # how much of a PDV value is read before it is handed on

# A-ABORT sources and reasons (PS3.8 §9.3.8)
ABORT_SOURCE_USER = 0
ABORT_SOURCE_PROVIDER = 2
REASON_NOT_SPECIFIED = 0
REASON_UNRECOGNIZED_PDU = 1
REASON_UNEXPECTED_PDU = 2
REASON_UNRECOGNIZED_PARAMETER = 4
REASON_INVALID_PARAMETER = 6


class ProtocolError(Exception):
    """The peer broke the upper-layer protocol; the association is aborted with ``reason``."""

    def __init__(self, message: str, reason: int = REASON_UNEXPECTED_PDU) -> None:
        super().__init__(message)
        self.reason = reason


class PeerClosed(Exception):
    """The peer closed the TCP connection."""


class TooSlow(TimeoutError):
    """The peer sent a PDU more slowly than the minimum rate allows (``MinimumRate``)."""


class AssociationLost(PeerClosed):
    """Raised to a handler that waits on the peer (a C-GET's C-STORE, a commitment
    report, a look for C-CANCEL) when the association ends or breaks under it. What
    ended it is recorded on the association, which ends as that says, whatever the
    handler does with this exception."""


@dataclass(frozen=True)
class PdvHeader:
    context_id: int
    is_command: bool
    is_last: bool


@dataclass(frozen=True)
class MinimumRate:
    """What a peer must keep up once it has begun a PDU: ``min_bytes`` in every
    ``window_s`` seconds the box spends waiting on it. The socket's timeout bounds each
    wait, so without this a peer sending a byte now and then would hold its association
    (and a slot) for ever; a slow but steady link sends far more than this."""

    min_bytes: int
    window_s: float


class _RateWindow:
    """The peer's progress against a ``MinimumRate``: seconds waited and bytes received
    in the current window. Only time spent waiting on the socket counts, so the box's
    own pauses (a slow disk under a data set) are never held against the peer."""

    def __init__(self, rule: MinimumRate) -> None:
        self.rule = rule
        self.waited = 0.0
        self.received = 0

    def allowance(self) -> float:
        """How long the peer may take to send more: to the end of this window while it
        owes bytes in it, else to the end of the next one."""
        left = self.rule.window_s - self.waited
        return left if self.received < self.rule.min_bytes else left + self.rule.window_s

    def took(self, seconds: float, count: int) -> None:
        """``count`` bytes came after a wait of ``seconds``."""
        self.waited += seconds
        if self.waited >= self.rule.window_s:  # this window closed before they came
            if self.received < self.rule.min_bytes:
                raise self.too_slow()
            self.waited -= self.rule.window_s
            self.received = 0
            if self.waited >= self.rule.window_s:
                raise self.too_slow()  # and the next one passed with nothing
        self.received += count

    def too_slow(self) -> TooSlow:
        return TooSlow(
            f"too slow: {self.received} bytes in {self.rule.window_s:g} s, under the "
            f"minimum of {self.rule.min_bytes} (min_data_rate)"
        )


class _TimedSocketIO(io.RawIOBase):
    """The socket as the buffered reader reads it, each read going through ``recv``.
    Only ``recv_into`` is asked of the socket, so anything that offers it (a TLS socket,
    a scripted one in the fuzz tests) can stand behind a ``PduSocket``."""

    def __init__(
        self,
        sock: socket.socket,
        recv: Callable[[Callable[[Any], int | None], Any], int | None],
    ) -> None:
        super().__init__()
        self._sock = sock
        self._timed_recv = recv

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int | None:
        return self._timed_recv(self._sock.recv_into, b)


class PduSocket:
    """A connected socket that speaks PDUs, with buffered reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._rfile = io.BufferedReader(_TimedSocketIO(sock, self._recv), CHUNK)
        # When set, every read must be done by then (the A-ASSOCIATE-RQ, PS3.8 ARTIM).
        self.deadline: float | None = None
        # When set, a peer that has begun a PDU must keep to this rate until ``rest``.
        self.min_rate: MinimumRate | None = None
        self._window: _RateWindow | None = None
        self.timeout: float | None = sock.gettimeout()  # the wait for any one read

    def settimeout(self, seconds: float | None) -> None:
        self.timeout = seconds
        self._apply_timeout(seconds)

    def _apply_timeout(self, seconds: float | None) -> None:
        # Setting it costs two fcntl calls, and an association sets it before every PDU.
        if seconds != self.sock.gettimeout():
            self.sock.settimeout(seconds)

    def rest(self) -> None:
        """The peer has sent all it owes for now (a whole message, or a PDU outside
        one): the wait for its next PDU to begin is idle time, bounded by the timeout
        alone; the minimum rate holds again from that PDU's first byte."""
        self._window = None

    def read_exact(self, n: int) -> bytes:
        if self.deadline is not None:
            return self._read_by_deadline(n, self.deadline)
        if self.min_rate is not None and self._window is None:
            self._window = _RateWindow(self.min_rate)  # inside a PDU: the peer owes bytes
        data = self._rfile.read(n)
        if data is None or len(data) < n:
            raise PeerClosed(f"connection closed after {len(data or b'')} of {n} bytes")
        return data

    def _read_by_deadline(self, n: int, deadline: float) -> bytes:
        """``n`` bytes, all of them by ``deadline`` (time.monotonic()): the socket's
        timeout bounds each wait, so a peer sending a byte now and then would never time
        out without this."""
        data = bytearray()
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(data)} of {n} bytes arrived in time")
            self._apply_timeout(left)
            piece = self._rfile.read1(n - len(data))
            if not piece:
                raise PeerClosed(f"connection closed after {len(data)} of {n} bytes")
            data += piece
        return bytes(data)

    def _recv(self, recv_into: Callable[[Any], int | None], buffer: Any) -> int | None:
        """One read from the network (the buffer holds nothing more), timed against the
        minimum rate while a window runs. Only here is the peer waited on, so reads the
        buffer answers cost nothing."""
        window = self._window
        if window is None or self.sock.gettimeout() == 0.0:  # idle, or a look (readable)
            return recv_into(buffer)
        allowance = window.allowance()
        if allowance <= 0:
            raise window.too_slow()
        rate_bound = self.timeout is None or allowance < self.timeout
        self._apply_timeout(allowance if rate_bound else self.timeout)
        started = time.monotonic()
        try:
            count = recv_into(buffer)
        except TimeoutError:
            if rate_bound:
                raise window.too_slow() from None
            raise
        window.took(time.monotonic() - started, count or 0)
        return count

    def read_pdu_header(self) -> tuple[int, int]:
        if self.min_rate is not None and self._window is None:
            # Waiting for a PDU to begin is idle time; from its first byte the rate holds.
            self._apply_timeout(self.timeout)
            if not self._rfile.peek(1):
                raise PeerClosed("connection closed")
        head = self.read_exact(6)
        pdu_type, _, length = struct.unpack(">BBI", head)
        if pdu_type not in PDU_NAMES:
            raise ProtocolError(f"unrecognised PDU type 0x{pdu_type:02X}", REASON_UNRECOGNIZED_PDU)
        return pdu_type, length

    def read_small_pdu_body(self, pdu_type: int, length: int) -> bytes:
        if length > MAX_ASSOCIATION_PDU:
            raise ProtocolError(
                f"{PDU_NAMES[pdu_type]} claims {length} bytes", REASON_INVALID_PARAMETER
            )
        return self.read_exact(length)

    def read_p_data(
        self,
        length: int,
        on_pdv: Callable[[PdvHeader, int], None],
        on_chunk: Callable[[bytes], None],
        on_pdv_end: Callable[[PdvHeader], None],
        max_length: int = 0,
    ) -> None:
        """Walk one P-DATA-TF body of ``length`` bytes: ``on_pdv`` opens each PDV (header and
        value length), ``on_chunk`` takes its value in pieces of at most CHUNK bytes and
        ``on_pdv_end`` closes it."""
        if max_length and length > max_length + 6:  # a PDV item header per PDU is allowed
            raise ProtocolError(
                f"P-DATA-TF of {length} bytes exceeds our maximum PDU of {max_length}",
                REASON_INVALID_PARAMETER,
            )
        remaining = length
        while remaining > 0:
            if remaining < 6:
                raise ProtocolError("P-DATA-TF ends inside a PDV item", REASON_INVALID_PARAMETER)
            item_length, context_id, control = struct.unpack(">IBB", self.read_exact(6))
            value_length = item_length - 2
            if item_length < 2 or value_length > remaining - 6:
                raise ProtocolError(
                    f"PDV item of {item_length} bytes in a PDU with {remaining - 4} left",
                    REASON_INVALID_PARAMETER,
                )
            pdv = PdvHeader(context_id, bool(control & 1), bool(control & 2))
            on_pdv(pdv, value_length)
            left = value_length
            while left > 0:
                piece = self.read_exact(min(left, CHUNK))
                on_chunk(piece)
                left -= len(piece)
            on_pdv_end(pdv)
            remaining -= 6 + value_length

    def readable(self) -> bool:
        """Has the peer sent something we have not read yet (buffered or on the socket)?
        Never blocks: the socket is non-blocking for the look."""
        previous = self.sock.gettimeout()
        self.sock.settimeout(0.0)
        try:
            return bool(self._rfile.peek(1))
        except (BlockingIOError, TimeoutError, ssl.SSLWantReadError):
            # A TLS socket says "want read" where a plain one says "would block".
            return False
        finally:
            self.sock.settimeout(previous)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self._rfile.close()
        finally:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


def p_data_pdus(
    context_id: int, payload: bytes | memoryview, is_command: bool, peer_max_pdu: int
) -> list[bytes]:
    """Split a command or data set into P-DATA-TF PDUs of one PDV each, within the peer's
    maximum PDU length (0 = unlimited)."""
    room = (peer_max_pdu - 6) if peer_max_pdu else max(len(payload), 1)
    room = max(room, 1)
    view = memoryview(payload)
    pdus = []
    start = 0
    while True:
        piece = view[start : start + room]
        start += len(piece)
        last = start >= len(view)
        control = (1 if is_command else 0) | (2 if last else 0)
        header = struct.pack(
            ">BBIIBB", P_DATA_TF, 0, len(piece) + 6, len(piece) + 2, context_id, control
        )
        pdus.append(header + bytes(piece))
        if last:
            return pdus


def release_rq() -> bytes:
    return struct.pack(">BBII", A_RELEASE_RQ, 0, 4, 0)


def release_rp() -> bytes:
    return struct.pack(">BBII", A_RELEASE_RP, 0, 4, 0)


def abort(source: int = ABORT_SOURCE_PROVIDER, reason: int = REASON_NOT_SPECIFIED) -> bytes:
    return struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, source, reason)
