"""The durable job queue (forward, commit, print, burn, poll …) and the runner that works it.

Jobs are rows in the index database, so a queued job survives a restart or a power cut;
a job found ``running`` at start was interrupted and runs again, that try not counted
(the box's own death is no failure of the job). Jobs sharing a ``queue`` value (a
destination, a printer, a burner) run one at a time, in order. A failure that may pass
(peer down, printer out of film) is retried after ``retry_delay_s``, doubling each time
up to a cap, ``max_attempts`` tries in all (0: no limit, as for forwards); a permanent
one fails the job at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, func, select, update

from dicombox.core.events import EventBus
from dicombox.core.index import schema
from dicombox.core.index.engine import write_transaction

log = logging.getLogger("dicombox.jobs")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
# Finished, but some of its items could not be done: the handler returned its
# problems, one line each, kept in ``last_error``. Not retried: retrying cannot help.
DONE_WITH_PROBLEMS = "problems"
STATE_LABELS = {DONE_WITH_PROBLEMS: "done with problems"}  # what people read; others as is
# A CLI verb run as a job (the web console's) that finished with problems exits with
# PROBLEMS_EXIT and writes each problem as one line to standard error.
PROBLEMS_EXIT = 3
MAX_BACKOFF_S = 3600.0


class TransientJobError(Exception):
    """The job may succeed later: retry it (peer unreachable, printer out of film).
    ``max_delay_s`` caps the back-off for this job (default ``MAX_BACKOFF_S``)."""

    def __init__(self, why: str, max_delay_s: float | None = None) -> None:
        super().__init__(why)
        self.max_delay_s = max_delay_s


class PermanentJobError(Exception):
    """Retrying cannot help (unknown destination, object rejected): fail the job now."""


class JobNotReady(Exception):
    """What the job waits for has not happened yet (a disc not burned): run it again
    after ``delay_s``. Not a failure: no attempt is counted."""

    def __init__(self, why: str, delay_s: float) -> None:
        super().__init__(why)
        self.delay_s = delay_s


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    queue: str
    state: str
    attempts: int
    max_attempts: int
    retry_delay_s: float
    next_run_at: float
    created_at: float
    updated_at: float
    progress: str
    last_error: str

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = dict(row._mapping)
        data["payload"] = json.loads(data["payload"])
        return cls(**data)


JobContext = Callable[[str], None]  # report progress: context("12/40 sent")
# A handler returns nothing when all went well, or the one-line problems it finished with.
JobHandler = Callable[[Job, JobContext], list[str] | None]


def state_label(state: str) -> str:
    """A job state as people read it ("done with problems" for ``problems``)."""
    return STATE_LABELS.get(state, state)


class JobQueue:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        queue: str = "",
        max_attempts: int = 3,
        retry_delay_s: float = 30.0,
        delay_s: float = 0.0,
    ) -> int:
        with write_transaction(self.engine) as conn:
            return _insert(conn, kind, payload, queue, max_attempts, retry_delay_s, delay_s)

    def gather(
        self,
        kind: str,
        group: str,
        items: list[Any],
        *,
        queue: str = "",
        max_attempts: int = 3,
        retry_delay_s: float = 30.0,
        delay_s: float = 0.0,
        postpone: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Add ``items`` to the still-queued job of this kind, queue and ``group`` (a
        study, say), or queue a new one: a forward then carries a whole study on one
        association instead of one job per image. With ``postpone`` each addition moves
        the job ``delay_s`` ahead again, so it runs once the group has been idle that
        long (burn a study 2 minutes after its last image). ``extra`` goes into the
        payload of a new job (what the job does with its items)."""
        with write_transaction(self.engine) as conn:
            return gather_into(
                conn,
                kind,
                group,
                items,
                queue=queue,
                max_attempts=max_attempts,
                retry_delay_s=retry_delay_s,
                delay_s=delay_s,
                postpone=postpone,
                extra=extra,
            )

    def get(self, job_id: int) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.jobs).where(schema.jobs.c.id == job_id)).first()
        return Job.from_row(row) if row else None

    def list(self, states: tuple[str, ...] = (), limit: int = 100) -> list[Job]:
        t = schema.jobs
        query = select(t).order_by(t.c.id.desc()).limit(limit)
        if states:
            query = query.where(t.c.state.in_(states))
        with self.engine.connect() as conn:
            return [Job.from_row(r) for r in conn.execute(query)]

    def recover_interrupted(self) -> int:
        """Jobs left ``running`` by a stopped box are queued again (called at start).
        The try each had claimed is given back: it was cut short by the box, not failed
        by the job, so kills and power cuts never use up a job's tries."""
        t = schema.jobs
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(t)
                .where(t.c.state == RUNNING)
                .values(
                    state=QUEUED,
                    attempts=case((t.c.attempts > 0, t.c.attempts - 1), else_=0),
                    updated_at=time.time(),
                )
            )
            return int(result.rowcount or 0)

    def claim(self, kinds: set[str], busy_queues: set[str]) -> Job | None:
        """Take the oldest due job of a known kind whose queue is not busy."""
        t = schema.jobs
        now = time.time()
        with write_transaction(self.engine) as conn:
            due = select(t).where(t.c.state == QUEUED, t.c.next_run_at <= now, t.c.kind.in_(kinds))
            if busy_queues:  # in the query: 50 due jobs of one busy remote hide no others
                due = due.where(t.c.queue.not_in(busy_queues))
            rows = conn.execute(due.order_by(t.c.next_run_at, t.c.id).limit(50)).all()
            for row in rows:
                job = Job.from_row(row)
                taken = conn.execute(
                    update(t)
                    # Still queued: on an index several boxes share, another may have it.
                    .where(t.c.id == job.id, t.c.state == QUEUED)
                    .values(state=RUNNING, attempts=job.attempts + 1, updated_at=now)
                )
                if taken.rowcount == 1:
                    return Job.from_row(conn.execute(select(t).where(t.c.id == job.id)).first())
        return None

    def _set(self, job_id: int, **values: Any) -> None:
        t = schema.jobs
        with write_transaction(self.engine) as conn:
            conn.execute(update(t).where(t.c.id == job_id).values(updated_at=time.time(), **values))

    def checkpoint(self, job: Job) -> None:
        """Save ``job.payload`` as the handler has changed it: what a retry must not do
        again (discs already burned, say) survives the failure and a restart."""
        self._set(job.id, payload=json.dumps(job.payload))

    def progress(self, job_id: int, text: str) -> None:
        self._set(job_id, progress=text)

    def done(self, job_id: int) -> None:
        self._set(job_id, state=DONE, last_error="")

    def done_with_problems(self, job_id: int, problems: list[str]) -> None:
        self._set(job_id, state=DONE_WITH_PROBLEMS, last_error="\n".join(problems))

    def failed(
        self, job: Job, error: str, permanent: bool, max_delay_s: float | None = None
    ) -> str:
        """Record a failure; returns the new state (queued for a retry, or failed).
        A job with ``max_attempts`` 0 is retried until it succeeds or fails for good."""
        if permanent or (job.max_attempts and job.attempts >= job.max_attempts):
            self._set(job.id, state=FAILED, last_error=error)
            return FAILED
        delay = backoff(job.retry_delay_s, job.attempts, max_delay_s or MAX_BACKOFF_S)
        self._set(job.id, state=QUEUED, last_error=error, next_run_at=time.time() + delay)
        return QUEUED

    def later(self, job: Job, why: str, delay_s: float) -> None:
        """Queue ``job`` again after ``delay_s`` without counting this run as an attempt."""
        self._set(
            job.id,
            state=QUEUED,
            attempts=job.attempts - 1,
            progress=why,
            next_run_at=time.time() + delay_s,
        )

    def wait_for_older(self, job: Job, what: str) -> None:
        """Raise JobNotReady while an older job of ``job``'s queue waits for its retry:
        a failed job keeps its place, so a younger one cannot overtake it (MPPS messages
        in order; a printer's queue stopped until its first job goes through)."""
        t = schema.jobs
        with self.engine.connect() as conn:
            due = conn.execute(
                select(func.min(t.c.next_run_at)).where(
                    t.c.queue == job.queue, t.c.state == QUEUED, t.c.id < job.id
                )
            ).scalar()
        if due is not None:
            raise JobNotReady(f"after older {what}", max(due - time.time(), 0) + 0.5)

    def retry(self, job_id: int) -> bool:
        """An operator's retry: a failed or cancelled job runs again now, attempts reset."""
        t = schema.jobs
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(t)
                .where(t.c.id == job_id, t.c.state.in_((FAILED, CANCELLED)))
                .values(state=QUEUED, attempts=0, next_run_at=time.time(), updated_at=time.time())
            )
            return bool(result.rowcount)

    def cancel(self, job_id: int) -> bool:
        t = schema.jobs
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(t)
                .where(t.c.id == job_id, t.c.state == QUEUED)
                .values(state=CANCELLED, updated_at=time.time())
            )
            return bool(result.rowcount)


def backoff(first_s: float, attempts: int, cap_s: float) -> float:
    """The wait after the ``attempts``-th failed try: ``first_s``, doubling, at most
    ``cap_s`` (the exponent is bounded too: a job retried for weeks has thousands)."""
    return min(first_s * 2.0 ** min(max(attempts - 1, 0), 40), cap_s)


def gather_into(
    conn: Any,
    kind: str,
    group: str,
    items: list[Any],
    *,
    queue: str = "",
    max_attempts: int = 3,
    retry_delay_s: float = 30.0,
    delay_s: float = 0.0,
    postpone: bool = False,
    extra: dict[str, Any] | None = None,
) -> int:
    """``JobQueue.gather`` inside the write transaction ``conn`` of the caller (the
    outbox's: the jobs and the removal of the rows they come from commit together)."""
    t = schema.jobs
    rows = conn.execute(
        select(t.c.id, t.c.payload).where(t.c.state == QUEUED, t.c.kind == kind, t.c.queue == queue)
    ).all()
    for row in rows:
        payload = json.loads(row.payload)
        if payload.get("group") == group:
            known = set(payload["items"])  # a study gathered again is there once
            payload["items"] += [i for i in items if i not in known]
            values: dict[str, Any] = {"payload": json.dumps(payload)}
            if postpone:
                values["next_run_at"] = time.time() + delay_s
            added = conn.execute(
                # Still queued: a runner may have claimed it since (an index several
                # boxes share), and would run it without these items.
                update(t)
                .where(t.c.id == row.id, t.c.state == QUEUED)
                .values(updated_at=time.time(), **values)
            )
            if added.rowcount == 1:
                return int(row.id)
            break  # claimed meanwhile: the items go in a new job
    payload = {"group": group, "items": items, **(extra or {})}
    return _insert(conn, kind, payload, queue, max_attempts, retry_delay_s, delay_s)


def _insert(
    conn: Any,
    kind: str,
    payload: dict[str, Any],
    queue: str,
    max_attempts: int,
    retry_delay_s: float,
    delay_s: float,
) -> int:
    now = time.time()
    result = conn.execute(
        schema.jobs.insert().values(
            kind=kind,
            payload=json.dumps(payload),
            queue=queue,
            state=QUEUED,
            attempts=0,
            max_attempts=max_attempts,
            retry_delay_s=retry_delay_s,
            next_run_at=now + delay_s,
            created_at=now,
            updated_at=now,
        )
    )
    return int(result.inserted_primary_key[0])


class JobRunner:
    """Runs due jobs on a few threads of the supervisor."""

    def __init__(
        self,
        queue: JobQueue,
        handlers: dict[str, JobHandler],
        bus: EventBus,
        threads: int = 2,
        poll_s: float = 1.0,
    ) -> None:
        self.queue = queue
        self.handlers = handlers
        self.bus = bus
        self.threads = threads
        self.poll_s = poll_s
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        if not self.handlers:
            return
        for n in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"jobs-{n}", daemon=True)
            t.start()
            self._workers.append(t)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self.wake()
        for t in self._workers:
            t.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._next()
                if job is None:
                    with self._wake:
                        self._wake.wait(self.poll_s)
                    continue
                try:
                    self._run(job)
                finally:
                    with self._lock:
                        self._busy.discard(job.queue)
            except Exception:
                # The index itself failed (a full volume, a lost connection): this thread
                # must outlive it. A job it held stays RUNNING until the next start
                # requeues it (``recover_interrupted``).
                log.exception("job runner: the job queue failed; trying again shortly")
                self._stopping.wait(self.poll_s)

    def _next(self) -> Job | None:
        # Claiming and marking the queue busy happen under one lock, so two runner threads
        # never take two jobs of the same queue.
        with self._lock:
            job = self.queue.claim(set(self.handlers), self._busy)
            if job is not None and job.queue:
                self._busy.add(job.queue)
        return job

    def _run(self, job: Job) -> None:
        self.bus.publish("job.started", job=job.id, kind=job.kind, attempt=job.attempts)

        def report(text: str) -> None:
            self.queue.progress(job.id, text)
            self.bus.publish("job.progress", job=job.id, kind=job.kind, progress=text)

        try:
            problems = self.handlers[job.kind](job, report)
        except JobNotReady as exc:
            self.queue.later(job, str(exc), exc.delay_s)
            return
        except Exception as exc:
            # An unexpected error (a full disk, a bug) is retried like a transient one: the
            # job stays visible with its error, and an operator can cancel it.
            permanent = isinstance(exc, PermanentJobError)
            if not isinstance(exc, TransientJobError | PermanentJobError):
                log.exception("job %s (%s) crashed", job.id, job.kind)
            cap = exc.max_delay_s if isinstance(exc, TransientJobError) else None
            state = self.queue.failed(job, f"{type(exc).__name__}: {exc}", permanent, cap)
            topic = "job.failed" if state == FAILED else "job.retrying"
            log.warning(
                "job %s (%s) attempt %d: %s -> %s", job.id, job.kind, job.attempts, exc, state
            )
            self.bus.publish(topic, job=job.id, kind=job.kind, error=str(exc), attempt=job.attempts)
            return
        if problems:
            problems = [" ".join(str(p).split()) for p in problems]  # one line each, always
            self.queue.done_with_problems(job.id, problems)
            log.warning("job %s (%s) done with problems: %s", job.id, job.kind, problems[0])
            self.bus.publish("job.problems", job=job.id, kind=job.kind, problems=problems)
            return
        self.queue.done(job.id)
        self.bus.publish("job.done", job=job.id, kind=job.kind)
