"""How the console shows the core's things: a job with its percentage, the configuration
with its secrets masked, the audit trail's last records."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from dicombox.core.audit import read_records
from dicombox.core.box import Box
from dicombox.core.config import Config, section_keys
from dicombox.core.jobs import DONE, DONE_WITH_PROBLEMS, QUEUED, Job, state_label
from dicombox.plugins.web.job_labels import describe

MASK = "********"
SECRET_NAME = re.compile(r"key|password|secret|token|passphrase", re.IGNORECASE)


def percent(job: Job) -> int | None:
    """How far a job is, from its progress text ("burning 43%", "12/40 sent"); a done
    job is at 100, one not started at 0; None when the text does not say."""
    if job.state in (DONE, DONE_WITH_PROBLEMS):
        return 100
    numbers = re.findall(r"(\d+(?:\.\d+)?)\s*%", job.progress)
    if numbers:
        return min(100, round(float(numbers[-1])))
    fraction = re.findall(r"(\d+)\s*/\s*(\d+)", job.progress)
    if fraction and int(fraction[-1][1]):
        return min(100, round(100 * int(fraction[-1][0]) / int(fraction[-1][1])))
    return 0 if job.state == QUEUED else None


def job_view(job: Job) -> dict[str, Any]:
    """A job as the API and the pages show it (its payload's label, not the payload)."""
    payload = job.payload
    label = payload.get("label") or payload.get("group") or ""
    return {
        "id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "state": job.state,
        "state_label": state_label(job.state),  # "done with problems" for "problems"
        "what": str(label),
        "items": len(payload.get("items") or []),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "tries": f"{job.attempts}/{job.max_attempts or 'no limit'}",
        # A job waiting to be tried again after a failure: when (its reason: last_error).
        "retry_at": job.next_run_at if job.state == QUEUED and job.last_error else None,
        "progress": job.progress,
        "percent": percent(job),
        "last_error": job.last_error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "next_run_at": job.next_run_at,
        "can_cancel": job.state == QUEUED,
        "can_retry": job.state in ("failed", "cancelled"),
    }


def job_views(box: Box, jobs: list[Job]) -> list[dict[str, Any]]:
    """Jobs as ``job_view`` shows them, each saying whose studies it works on."""
    labels = describe(box, jobs)
    return [{**job_view(j), "what": labels.get(j.id, "")} for j in jobs]


def masked(value: Any, name: str = "") -> Any:
    """``value`` with every entry whose name says key, password, secret or token
    replaced by a mask (kept empty when it is empty: "not set" is worth seeing)."""
    if name and SECRET_NAME.search(name) and value not in ("", None, [], {}):
        return MASK  # a list of keys too: not even how many there are
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = section_keys(value)  # a driver's keys kept by a section shown as written
    if isinstance(value, dict):
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_view(config: Config) -> dict[str, Any]:
    """The effective configuration, section by section, secrets masked."""
    core = {
        f.name: masked(getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name not in ("extra", "source")
    }
    return {"source": config.source, "sections": {**core, **masked(config.extra)}}


def audit_records(
    path: Path, limit: int = 200, event: str = "", with_dicom: bool = False
) -> list[dict[str, Any]]:
    """The newest ``limit`` audit records (newest first), of one ``event`` kind if given.
    Only the file's tail is read: the trail grows for as long as the box runs. A record's
    PS3.15 XML ("dicom") is left out unless asked for: a page of them would be unreadable,
    and ``dicombox audit --xml`` gives it."""
    records = list(read_records(path, last=limit, event=event, tail_bytes=4 << 20))
    if not with_dicom:
        for record in records:
            record.pop("dicom", None)
    return records[::-1]
