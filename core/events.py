"""In-process publish/subscribe, and the channel that carries worker events to the supervisor.

Topics are dotted names (``association.accepted``, ``instance.stored``, ``job.done``);
a subscriber names a topic, a prefix ending in ``.*``, or ``*`` for everything.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("dicombox.events")


@dataclass(frozen=True)
class Event:
    topic: str
    fields: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    relayed: bool = False  # came from a worker through the channel (already audited there)

    def to_json(self) -> str:
        return json.dumps({"topic": self.topic, "time": self.time, "pid": self.pid, **self.fields})

    @classmethod
    def from_json(cls, text: str) -> Event:
        data = json.loads(text)
        topic, when, pid = data.pop("topic"), data.pop("time"), data.pop("pid")
        return cls(topic, time=when, pid=pid, fields=data, relayed=True)


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Subscriber]] = []
        self._lock = threading.Lock()

    def subscribe(self, pattern: str, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append((pattern, subscriber))

    def publish(self, topic: str, **fields: Any) -> None:
        self.deliver(Event(topic, fields))

    def deliver(self, event: Event) -> None:
        for pattern, subscriber in list(self._subscribers):
            if _matches(pattern, event.topic):
                try:
                    subscriber(event)
                except Exception:  # one broken subscriber must not stop the others
                    log.exception("subscriber of %s failed on %s", pattern, event.topic)


def _matches(pattern: str, topic: str) -> bool:
    if pattern in ("*", topic):
        return True
    return pattern.endswith(".*") and topic.startswith(pattern[:-1])


class EventChannelServer:
    """The supervisor's end: a Unix datagram socket whose events are re-published locally."""

    def __init__(self, path: Path, bus: EventBus) -> None:
        self.path = path
        self.bus = bus
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self._thread = threading.Thread(target=self._run, name="event-channel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            try:
                self.bus.deliver(Event.from_json(data.decode("utf-8")))
            except (ValueError, KeyError):
                log.warning("dropped a malformed event datagram")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


class EventChannelClient:
    """A worker's end: forwards every local event to the supervisor, best effort.

    Publishers only queue the event; a thread of its own encodes and sends it. The
    supervisor's socket holds a few datagrams (net.unix.max_dgram_qlen, 10 by default),
    and while the supervisor is slow to read, a send waits: an association answering a
    C-STORE must not wait with it. Should the supervisor stop reading altogether, the
    queue stops growing at QUEUE_LIMIT and what does not fit is dropped and counted.
    """

    QUEUE_LIMIT = 10000

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._queue: queue.Queue[Event | None] = queue.Queue(self.QUEUE_LIMIT)
        self.dropped = 0
        self._drop_lock = threading.Lock()
        self._thread = threading.Thread(target=self._send_all, name="event-sender", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._drop_lock:  # publishers are association threads
                if not self.dropped:
                    log.warning("the supervisor is not reading events; dropping them")
                self.dropped += 1

    def _send_all(self) -> None:
        unsendable = 0
        while (event := self._queue.get()) is not None:
            try:
                self.sock.sendto(event.to_json().encode("utf-8"), self.path)
            except OSError:
                pass  # no supervisor listening (a bare worker, or shutting down): status only
            except Exception:  # a field JSON cannot carry: that event only, never the thread
                if not unsendable:
                    log.exception("event %s cannot be sent to the supervisor", event.topic)
                unsendable += 1

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
