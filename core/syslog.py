"""Audit messages to a syslog collector: RFC 5424 frames over UDP (RFC 5426) or over
TLS with octet counting (RFC 5425), as DICOM PS3.15 A.6/A.7 and IHE ITI-20 carry them.

Sending never holds the box up: frames go into a bounded queue that a background thread
empties. A collector that is down is said once in the log (and once more when it is back),
never per message; frames wait in the queue meanwhile, the oldest dropped past its limit.
The local audit log has every record whatever happens here.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from dicombox.core.net.tls import harden

log = logging.getLogger("dicombox.audit")

FACILITY = 10  # security/authorization messages (PS3.15 A.6, ITI-20)
NOTICE, WARNING = 5, 4  # a success; a failure of any kind
BOM = b"\xef\xbb\xbf"  # RFC 5424: a UTF-8 MSG starts with the byte order mark
QUEUE_LIMIT = 10_000
CONNECT_TIMEOUT_S = 5.0
RETRY_MAX_S = 60.0
PORTS = {"udp": 514, "tls": 6514}


@dataclass(frozen=True)
class SyslogTarget:
    transport: str  # udp | tls
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}://{self.host}:{self.port}"


def parse_target(url: str) -> SyslogTarget:
    """``udp://host[:514]`` or ``tls://host[:6514]``; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in PORTS:
        raise ValueError("expected udp://host:port or tls://host:port")
    try:
        port = parts.port or PORTS[parts.scheme]
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError("expected udp://host:port or tls://host:port")
    return SyslogTarget(parts.scheme, parts.hostname, port)


def _header_field(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or the NILVALUE."""
    clean = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return clean or "-"


def frame(
    xml: str, when: float, hostname: str, app_name: str, procid: int, msgid: str, severity: int
) -> bytes:
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG`` (no structured data)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z"
    header = (
        f"<{FACILITY * 8 + severity}>1 {stamp} {_header_field(hostname, 255)} "
        f"{_header_field(app_name, 48)} {procid} {_header_field(msgid, 32)} - "
    )
    return header.encode("ascii") + BOM + xml.encode("utf-8")


def _tls_context(ca: str, certificate: str, key: str) -> ssl.SSLContext:
    ctx = harden(ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None))
    if certificate and key:  # ATNA node authentication: the collector may ask for ours
        ctx.load_cert_chain(certificate, key)
    return ctx


class SyslogSender:
    def __init__(
        self,
        target: SyslogTarget,
        app_name: str,
        msgid: str,
        ca: str = "",
        certificate: str = "",
        key: str = "",
    ) -> None:
        self.target = target
        self.app_name = app_name
        self.msgid = msgid
        self.hostname = socket.gethostname()
        self._tls = _tls_context(ca, certificate, key) if target.transport == "tls" else None
        self._queue: deque[bytes] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._down_since = 0.0
        self.dropped = 0
        self.sent = 0

    def send(self, xml: str, failed: bool, when: float) -> None:
        """Queue one audit message; returns at once."""
        data = frame(
            xml,
            when,
            self.hostname,
            self.app_name,
            os.getpid(),
            self.msgid,
            WARNING if failed else NOTICE,
        )
        with self._wake:
            if self._closing:
                return
            if len(self._queue) >= QUEUE_LIMIT:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(data)
            if self._thread is None:  # started on first use: most CLI runs never send
                self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Give queued frames ``timeout`` seconds to go, then stop."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._queue and self._thread is not None and time.monotonic() < deadline:
                self._wake.wait(0.05)
            left = len(self._queue)
            self._closing = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        if left:
            log.warning("audit syslog %s: %d message(s) unsent at stop", self.target, left)
        self._disconnect()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        delay = 1.0
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                data = self._queue[0]
            try:
                self._deliver(data)
            except Exception as exc:  # down, refused, or unresolvable: back off, retry
                if getattr(exc, "errno", None) == errno.EMSGSIZE:  # this frame never fits
                    log.warning(
                        "audit syslog %s: a %d-byte message is too big for UDP; dropped "
                        "(the local trail has it)",
                        self.target,
                        len(data),
                    )
                    self._drop(data)
                    continue
                self._disconnect()
                self._went_down(exc)
                with self._wake:
                    if self._closing:
                        return
                    self._wake.wait(delay)  # back off; a close() wakes us early
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = 1.0
            with self._wake:
                if self._queue and self._queue[0] is data:
                    self._queue.popleft()
                self.sent += 1
                self._wake.notify_all()
            self._came_back()

    def _drop(self, data: bytes) -> None:
        with self._wake:
            if self._queue and self._queue[0] is data:
                self._queue.popleft()
            self._wake.notify_all()

    def _deliver(self, data: bytes) -> None:
        if self._sock is None:
            self._sock = self._connect()
        if self._tls is None:
            self._sock.send(data)
        else:
            self._sock.sendall(f"{len(data)} ".encode("ascii") + data)  # RFC 5425 framing

    def _connect(self) -> socket.socket:
        address = (self.target.host, self.target.port)
        if self._tls is None:
            family, kind, proto, _, where = socket.getaddrinfo(*address, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            # Connected, so that a collector that is not there (ICMP port unreachable)
            # shows as an error on a later send instead of silence.
            sock.connect(where)
            return sock
        raw = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
        try:
            return self._tls.wrap_socket(raw, server_hostname=self.target.host)
        except BaseException:
            raw.close()
            raise

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _went_down(self, exc: BaseException) -> None:
        if not self._down_since:
            self._down_since = time.monotonic()
            log.warning(
                "audit syslog %s unreachable (%s): messages wait (up to %d) until it is back; "
                "the local audit log has them all",
                self.target,
                exc,
                QUEUE_LIMIT,
            )

    def _came_back(self) -> None:
        if self._down_since:
            log.warning(
                "audit syslog %s reachable again after %.0f s%s",
                self.target,
                time.monotonic() - self._down_since,
                f"; {self.dropped} message(s) were dropped" if self.dropped else "",
            )
            self._down_since = 0.0
