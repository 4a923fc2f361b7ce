"""The accept loop of one network worker, and the listening socket the workers share.

Every worker process waits on the same listening socket; whichever wakes first takes the
connection, so associations spread over the workers and every core can ingest. Each
association then runs on its own thread in that worker.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable

from dicombox.core.config import NetworkSection
from dicombox.core.net.association import AssociationAcceptor, EventSink
from dicombox.core.net.policy import AssociationPolicy, AssociationSlots, Rejection
from dicombox.core.net.registry import ServiceRegistry
from dicombox.core.net.tls import HandshakeFailed, accept_tls

log = logging.getLogger("dicombox.server")
ACCEPT_DELAY_S = 0.002  # per association a worker already carries
TLS_ALERT_INTERVAL_S = 60.0
CAP_LOG_INTERVAL_S = 10.0


def make_listener(bind: str, port: int) -> socket.socket:
    """A listening TCP socket; ``*`` means every IPv6 and IPv4 address (dual stack)."""
    if bind == "*":
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            address: tuple = ("::", port)
        except OSError:  # a kernel without IPv6
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = ("0.0.0.0", port)
    else:
        family, _, _, _, address = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR only, never SO_REUSEPORT: the workers share this one socket, and
    # without SO_REUSEPORT a second box on the port fails to bind instead of quietly
    # taking part of this one's connections.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class AssociationServer:
    def __init__(
        self,
        listener: socket.socket,
        registry: ServiceRegistry,
        policy: AssociationPolicy,
        network: NetworkSection,
        slots: AssociationSlots,
        publish: EventSink,
        tls_listener: socket.socket | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.listener = listener
        self.listener.setblocking(False)
        # The TLS port: same accept scheme; the handshake runs on the association's thread.
        self.tls_listener = tls_listener
        self.tls_context = tls_context
        if tls_listener is not None:
            tls_listener.setblocking(False)
        self.registry = registry
        self.policy = policy
        self.network = network
        self.slots = slots
        self.publish = publish
        self._threads: set[threading.Thread] = set()
        self.thread_cap = 2 * network.max_associations
        self._closed_at_cap = 0
        self._cap_logged_at = -CAP_LOG_INTERVAL_S
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        # Asked before each accept: a worker whose supervisor is gone takes no association.
        self.orphaned: Callable[[], bool] = lambda: False
        # Failed TLS handshakes per address: a scanner or a misconfigured client retrying
        # must not flood the audit trail; one alert per address per minute, with a count.
        self._tls_failures: dict[str, tuple[float, int]] = {}

    def serve_forever(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            if self.tls_listener is not None:
                sel.register(self.tls_listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in sel.select():
                    if key.fd == self._wake_r or self.orphaned():
                        return
                    # Every worker wakes for a new connection; a busy one holds back a
                    # little so an idle one takes it, and associations spread over the
                    # processes (and so the cores) instead of queueing behind one GIL.
                    if self.active:
                        time.sleep(ACCEPT_DELAY_S * min(self.active, 4))
                    self._accept_one(key.fileobj is self.tls_listener)

    def _accept_one(self, tls: bool = False) -> None:
        listener = self.tls_listener if tls and self.tls_listener else self.listener
        try:
            conn, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:
            log.error("accept failed: %s", exc)
            return
        if self.active >= self.thread_cap:
            # Past the box's association limit a connection gets a thread only to be
            # rejected; past twice that, a flood would cost a thread each: it is closed.
            conn.close()
            self._closed_at_cap += 1
            now = time.monotonic()
            if now - self._cap_logged_at >= CAP_LOG_INTERVAL_S:
                log.warning(
                    "%d connection(s) closed unanswered: %d threads busy in this worker",
                    self._closed_at_cap,
                    self.active,
                )
                self._cap_logged_at, self._closed_at_cap = now, 0
            return
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._run,
            args=(conn, address, tls),
            daemon=True,
            name=f"assoc-{address[0]}:{address[1]}",
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run(self, conn: socket.socket, address: tuple, tls: bool = False) -> None:
        if tls:
            assert self.tls_context is not None
            try:
                conn = accept_tls(conn, address, self.tls_context, self.network)
            except HandshakeFailed as exc:
                self._tls_failed(address, str(exc))
                with self._lock:
                    self._threads.discard(threading.current_thread())
                return
        slot = None
        try:
            taken = self.slots.take(str(address[0]))
            slot = taken if not isinstance(taken, Rejection) else None
            acceptor = AssociationAcceptor(
                conn,
                address,
                self.registry,
                self.policy,
                self.network,
                self.publish,
                over_limit=taken if isinstance(taken, Rejection) else None,
            )
            acceptor.run()
        except Exception:  # no descriptor left for a slot file, say: the peer is dropped
            log.exception("association from %s crashed", address)
            conn.close()
        finally:
            if slot is not None:
                self.slots.release(slot)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _tls_failed(self, address: tuple, why: str) -> None:
        host = str(address[0]).removeprefix("::ffff:")
        now = time.monotonic()
        with self._lock:
            since, count = self._tls_failures.get(host, (0.0, 0))
            if now - since < TLS_ALERT_INTERVAL_S:
                self._tls_failures[host] = (since, count + 1)
                return
            self._tls_failures[host] = (now, 0)
            if len(self._tls_failures) > 1024:  # forget quiet addresses
                self._tls_failures = {
                    h: v for h, v in self._tls_failures.items() if now - v[0] < TLS_ALERT_INTERVAL_S
                }
        self.publish(
            "security.tls_failed", peer_host=host, peer_port=address[1], why=why,
            repeated=count,  # failures from there since the last alert, not audited apiece
        )  # fmt: skip

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._threads)

    def stop(self) -> None:
        """Stop accepting; associations in flight carry on (see ``drain``)."""
        self._stopping = True
        os.write(self._wake_w, b"x")

    def drain(self, timeout: float, on_wait: Callable[[int], None] | None = None) -> int:
        """Wait for in-flight associations to finish; returns how many were still open."""
        with self._lock:
            threads = list(self._threads)
        if threads and on_wait:
            on_wait(len(threads))
        for t in threads:
            t.join(timeout / max(1, len(threads)))
        return self.active
