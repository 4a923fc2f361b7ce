"""What the box is doing, as the front panel tells it, kept up to date from core events.

Subscribed on the supervisor's event bus, which also carries the network workers'
events: images stored ("instance.stored"), jobs started, progressing and finished
("job.*"), and failures ("job.failed", "job.retrying", "job.problems" for a job done
with problems, "print.failed"). The last failure stays until the operator acknowledges it.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from dicombox.core.box import Box
from dicombox.core.events import Event
from dicombox.core.index import schema

RECEIVING_S = 10.0  # an image within this long means "receiving" (a study arriving)


@dataclass(frozen=True)
class RunningJob:
    id: int
    kind: str
    progress: str = ""


@dataclass(frozen=True)
class Failure:
    what: str  # "burn job 12", "printer film"
    error: str
    at: float

    def __str__(self) -> str:
        return f"{self.what}: {self.error}"


def midnight(now: float) -> float:
    """The local midnight that began the day of ``now``."""
    day = dt.datetime.fromtimestamp(now).date()
    return dt.datetime.combine(day, dt.time()).timestamp()


def stored_since(box: Box, since: float) -> int:
    """Instances the index received since ``since`` (seconds since the epoch)."""
    t = schema.instances
    with box.index.engine.connect() as conn:
        found = conn.execute(select(func.count()).where(t.c.received_at >= since)).scalar()
    return int(found or 0)


def short_progress(kind: str, text: str) -> str:
    """A job's progress in a few characters: "burn 43%", "forward 12/40", "print"."""
    percents = re.findall(r"(\d+)\s*%", text)
    if percents:
        return f"{kind} {percents[-1]}%"
    counts = re.findall(r"(\d+)\s*/\s*(\d+)", text)
    if counts:
        done, total = counts[-1]
        return f"{kind} {done}/{total}"
    return kind


class Activity:
    """The panel's model of the box: thread-safe, fed by the bus, read by screens."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._day_start = midnight(clock())
        self.received_today = 0
        self.last_received = 0.0
        self.burst = 0  # images of the current run of arrivals
        self._jobs: dict[int, RunningJob] = {}
        self.failure: Failure | None = None

    def subscribe(self, box: Box) -> None:
        """Count from the index what arrived today before we started, then follow the
        events."""
        with self._lock:
            self.received_today = stored_since(box, self._day_start)
        box.bus.subscribe("instance.stored", self.on_event)
        box.bus.subscribe("job.*", self.on_event)
        box.bus.subscribe("print.failed", self.on_event)

    def on_event(self, event: Event) -> None:
        fields = event.fields
        with self._lock:
            if event.topic == "instance.stored":
                if fields.get("status", "0000") == "0000":  # a duplicate is no new image
                    self._count_image(event.time)
            elif event.topic in ("job.started", "job.progress"):
                job = int(fields.get("job", 0))
                self._jobs[job] = RunningJob(
                    job, str(fields.get("kind", "job")), str(fields.get("progress", ""))
                )
            elif event.topic == "job.problems":
                # Done, but not all of it (a burn that left images out): the operator
                # must hear of it as of a failure, the first problem being the news.
                self._jobs.pop(int(fields.get("job", 0)), None)
                what = f"{fields.get('kind', '')} job {fields.get('job', '')}".strip()
                problems = [str(p) for p in fields.get("problems") or []]
                more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
                error = f"done with problems: {problems[0] if problems else ''}{more}"
                self.failure = Failure(what, error.strip(), event.time)
            elif event.topic in ("job.done", "job.failed", "job.retrying"):
                self._jobs.pop(int(fields.get("job", 0)), None)
                if event.topic != "job.done":
                    # A retry is shown too: an empty tray or a peer that is down wants
                    # the operator before the attempts run out.
                    what = f"{fields.get('kind', '')} job {fields.get('job', '')}".strip()
                    error = str(fields.get("error", ""))
                    if event.topic == "job.retrying":
                        error += " (will retry)"
                    self.failure = Failure(what, error, event.time)
            elif event.topic == "print.failed":
                what = f"printer {fields.get('printer', '')}".strip()
                self.failure = Failure(what, str(fields.get("error", "")), event.time)

    def _count_image(self, when: float) -> None:
        self._roll_day()
        self.received_today += 1
        self.burst = self.burst + 1 if self.receiving_at(when) else 1
        self.last_received = when

    def _roll_day(self) -> None:
        today = midnight(self._clock())
        if today != self._day_start:
            self._day_start = today
            self.received_today = 0

    def receiving_at(self, now: float) -> bool:
        return now - self.last_received < RECEIVING_S

    def today(self) -> int:
        with self._lock:
            self._roll_day()
            return self.received_today

    def receiving(self) -> int:
        """Images of the run of arrivals going on now; 0 when none is."""
        with self._lock:
            return self.burst if self.receiving_at(self._clock()) else 0

    def jobs(self) -> list[RunningJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.id)

    def pending_failure(self) -> Failure | None:
        with self._lock:
            return self.failure

    def acknowledge(self) -> str:
        with self._lock:
            failure, self.failure = self.failure, None
        return f"acknowledged: {failure.what}" if failure else "no error to acknowledge"

    def state_line(self) -> str:
        """One line for "what is it doing now": a job, images arriving, or idle."""
        jobs = self.jobs()
        if jobs:
            return short_progress(jobs[0].kind, jobs[0].progress)
        images = self.receiving()
        if images:
            return f"receiving {images} img"
        return "idle"
