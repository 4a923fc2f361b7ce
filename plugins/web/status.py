"""What the dashboard shows: who the box is, what it holds, what it received lately
(throughput), its disk, its jobs and its last failure, and every plugin's status lines."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from typing import Any

from sqlalchemy import Integer, cast, func, select

from dicombox.core import __version__
from dicombox.core.box import Box
from dicombox.core.index import schema
from dicombox.core.jobs import DONE_WITH_PROBLEMS, FAILED, QUEUED, RUNNING
from dicombox.plugins.web.present import job_views

MINUTES = 60  # the throughput chart's span


def identity(box: Box, web_url: str) -> dict[str, Any]:
    try:
        ready = json.loads((box.run_dir / "ready.json").read_text())
    except (OSError, ValueError):
        ready = {}
    return {
        "ae_title": box.config.box.ae_title,
        "dicom_port": ready.get("port", box.config.box.port),
        "workers": ready.get("workers"),
        "started": ready.get("started"),
        "version": __version__,
        "web": web_url,
        "plugins": [i.name for i in box.plugin_infos if i.enabled],
    }


def throughput(box: Box, now: float | None = None) -> dict[str, Any]:
    """Images received per minute over the last hour, and today."""
    now = time.time() if now is None else now
    start = now - MINUTES * 60
    t = schema.instances
    minute = cast((t.c.received_at - start) / 60, Integer).label("minute")
    midnight = dt.datetime.combine(dt.date.fromtimestamp(now), dt.time()).timestamp()
    with box.index.engine.connect() as conn:
        per_minute = dict(
            conn.execute(
                select(minute, func.count()).where(t.c.received_at >= start).group_by(minute)
            ).all()
        )
        today = conn.execute(select(func.count()).where(t.c.received_at >= midnight)).scalar()
    counts = [int(per_minute.get(m, 0)) for m in range(MINUTES)]
    return {
        "per_minute": counts,
        "last_hour": sum(counts),
        "last_10_min_rate": round(sum(counts[-10:]) / 10, 1),
        "today": int(today or 0),
        "peak": max(counts),
    }


def disk(box: Box) -> dict[str, Any]:
    usage = shutil.disk_usage(box.data_dir)
    used = usage.total - usage.free
    return {
        "total_bytes": usage.total,
        "free_bytes": usage.free,
        "used_bytes": used,
        "used_percent": round(100 * used / usage.total) if usage.total else 100,
    }


def jobs_summary(box: Box) -> dict[str, Any]:
    t = schema.jobs
    with box.index.engine.connect() as conn:
        counts = dict(conn.execute(select(t.c.state, func.count()).group_by(t.c.state)).all())
    running = box.jobs.list((RUNNING,), limit=20)
    # A job done with problems (a burn that left images out) is a failure to look at too.
    failed = box.jobs.list((FAILED, DONE_WITH_PROBLEMS), limit=1)
    return {
        "queued": int(counts.get(QUEUED, 0)),
        "running": job_views(box, running),
        "failed": int(counts.get(FAILED, 0)),
        "problems": int(counts.get(DONE_WITH_PROBLEMS, 0)),
        "last_failure": job_views(box, failed)[0] if failed else None,
    }


def status_lines(box: Box) -> list[str]:
    """Every plugin's ``dicombox_status`` lines, as ``dicombox status`` prints them."""
    lines: list[str] = []
    for batch in box.hook.dicombox_status(box=box):
        lines.extend(str(line) for line in batch or [])
    return lines


def dashboard(box: Box, web_url: str) -> dict[str, Any]:
    return {
        "identity": identity(box, web_url),
        "totals": box.index.totals(),
        "throughput": throughput(box),
        "disk": disk(box),
        "jobs": jobs_summary(box),
        "status": status_lines(box),
    }
