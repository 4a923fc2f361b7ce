"""Live job events for the console: the bus's ``job.*`` topics, fanned out to each
server-sent-events client.

Bus subscribers run on whichever thread published (a job runner thread); the web
server runs on its own asyncio loop. Each client's queue is fed through its loop's
``call_soon_threadsafe``, so no lock is held across the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from dicombox.core.events import Event, EventBus

QUEUE_LIMIT = 1000  # a client that stops reading loses events, not the box's memory


class JobFeed:
    def __init__(self, bus: EventBus) -> None:
        self._clients: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = set()
        self._lock = threading.Lock()
        bus.subscribe("job.*", self._deliver)

    def _deliver(self, event: Event) -> None:
        message = {"topic": event.topic, "time": event.time, **event.fields}
        with self._lock:
            clients = list(self._clients)
        for loop, queue in clients:
            with contextlib.suppress(RuntimeError):  # its loop has closed: it is going
                loop.call_soon_threadsafe(_offer, queue, message)

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of job events for the calling coroutine, while the block runs."""
        client = (asyncio.get_running_loop(), asyncio.Queue[dict[str, Any]](QUEUE_LIMIT))
        with self._lock:
            self._clients.add(client)
        try:
            yield client[1]
        finally:
            with self._lock:
                self._clients.discard(client)


def _offer(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(message)
