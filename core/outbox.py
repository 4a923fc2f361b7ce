"""The outbox: route jobs written in the transaction that indexes their instance.

An instance's routes (forward, burn, print, fetch priors …) are worked out before its
index row is written, from its header and its sender, through the plugins'
``dicombox_route_jobs`` hook. Each ``RouteJob`` they return becomes an ``outbox`` row,
INSERTed in the same transaction as the instance row: once the instance is indexed, and
so before it is answered, its routes are durable too, and a kill at any moment can
neither leave it without them nor queue them twice. An instance no route matches adds
nothing to that transaction.

The supervisor's ``OutboxRelay`` turns the rows into jobs, a batch at a time: each row's
instance is gathered into the job of its kind, group and queue (one forward per remote
and study, say), and the rows go in the same transaction as the jobs they made.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, delete, select

from dicombox.core.index import schema
from dicombox.core.index.engine import write_transaction
from dicombox.core.jobs import JobQueue, gather_into

log = logging.getLogger("dicombox.outbox")

BATCH = 500  # outbox rows turned into jobs per transaction


@dataclass(frozen=True)
class RouteJob:
    """What one route asks for one instance: add ``items`` to the still-queued job of
    ``kind`` whose ``queue`` and ``group`` are these, or queue a new one with these
    settings (as ``JobQueue.gather`` does, whose arguments these are). ``kind`` is a job
    kind some plugin runs (``dicombox_jobs``)."""

    kind: str
    group: str
    items: list[Any] = field(default_factory=list)
    queue: str = ""
    max_attempts: int = 3
    retry_delay_s: float = 30.0
    delay_s: float = 0.0
    postpone: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def gathering(self) -> dict[str, Any]:
        """How to gather it, as the keyword arguments of ``JobQueue.gather``."""
        return {
            "queue": self.queue,
            "max_attempts": self.max_attempts,
            "retry_delay_s": self.retry_delay_s,
            "delay_s": self.delay_s,
            "postpone": self.postpone,
            "extra": self.extra,
        }

    def payload(self) -> str:
        fields = asdict(self)
        del fields["kind"]
        return json.dumps(fields)

    @classmethod
    def from_row(cls, kind: str, payload: str) -> RouteJob:
        return cls(kind=kind, **json.loads(payload))


def outbox_rows(jobs: Iterable[RouteJob]) -> list[dict[str, Any]]:
    """The ``outbox`` rows of ``jobs``, for the instance's index transaction."""
    now = time.time()
    return [{"kind": j.kind, "payload": j.payload(), "created_at": now} for j in jobs]


def route_jobs(box: Any, instance: Any, dataset: Any) -> list[dict[str, Any]]:
    """The outbox rows an instance about to be indexed needs: what every plugin's
    ``dicombox_route_jobs`` asks for it. An exception here is the instance's: it is not
    stored without its routes."""
    found = box.hook.dicombox_route_jobs(box=box, instance=instance, dataset=dataset)
    return outbox_rows(job for jobs in found if jobs for job in jobs)


def gather_now(jobs: JobQueue, job: RouteJob) -> int:
    """Queue ``job`` at once, in a transaction of its own: for routes acting on a whole
    study when something else than an arriving instance says so (MPPS COMPLETED)."""
    return jobs.gather(job.kind, job.group, list(job.items), **job.gathering())


def relay(engine: Engine, limit: int = BATCH) -> int:
    """Turn up to ``limit`` outbox rows, oldest first, into jobs, in one transaction
    that also removes them; returns how many rows it took."""
    o = schema.outbox
    with write_transaction(engine) as conn:
        # On a server database several boxes may share: a row another box is taking is
        # skipped, not taken twice (SQLite's write lock already serialises this).
        taken = conn.execute(
            select(o.c.id, o.c.kind, o.c.payload)
            .order_by(o.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not taken:
            return 0
        for job in _merged(RouteJob.from_row(r.kind, r.payload) for r in taken):
            gather_into(conn, job.kind, job.group, job.items, **job.gathering())
        conn.execute(delete(o).where(o.c.id.in_([r.id for r in taken])))
    return len(taken)


def _merged(jobs: Iterable[RouteJob]) -> list[RouteJob]:
    """One ``RouteJob`` per kind, queue and group, with the items of all in their order
    (each once) and the settings of the first: 300 images of a study, one gather."""
    merged: dict[tuple[str, str, str], tuple[RouteJob, dict[Any, None]]] = {}
    for job in jobs:
        key = (job.kind, job.queue, job.group)
        first, items = merged.setdefault(key, (job, {}))
        items.update(dict.fromkeys(job.items))
    return [replace(first, items=list(items)) for first, items in merged.values()]


class OutboxRelay:
    """A thread of the supervisor that turns outbox rows into jobs as they come: at
    once when ``wake`` is called (an instance was stored), else every ``poll_s`` (rows
    written by a process that announces nothing: an import, a worker killed before its
    answer). ``on_jobs`` is called after each batch (to wake the job runner)."""

    def __init__(
        self, engine: Engine, on_jobs: Callable[[], None] = lambda: None, poll_s: float = 1.0
    ) -> None:
        self.engine = engine
        self.on_jobs = on_jobs
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._wake.set()  # at once: what a stop or a crash left
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self._thread.start()

    def wake(self, _event: object = None) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread, then take what is left (else the next start does)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.drain()
        except Exception:
            log.exception("outbox: route jobs left for the next start")

    def drain(self) -> int:
        """Turn every outbox row there is into jobs now; returns how many."""
        total = 0
        while taken := relay(self.engine):
            total += taken
            self.on_jobs()
        return total

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            try:
                self.drain()
            except Exception:
                # The index failed (a full volume, a lost connection): the rows stay,
                # and are taken at the next try.
                log.exception("outbox: route jobs could not be queued; trying again shortly")
                self._stopping.wait(self.poll_s)
