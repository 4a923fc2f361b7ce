"""The audit trail: one structured record per association, store, query, export, deletion.

Each process appends JSON lines to ``<data_dir>/audit/audit.jsonl`` with a single
``O_APPEND`` write per record, so records from several workers never interleave.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from dicombox.core.events import Event

# Event topics that are auditable, and the audit event name each becomes.
AUDITED_TOPICS = {
    "association.accepted": "association-start",
    "association.rejected": "association-rejected",
    "association.ended": "association-end",
    "instance.stored": "instance-stored",
    "instance.rejected": "instance-rejected",
    "instance.deleted": "instance-deleted",
    "instance.coerced": "instance-coerced",
    "forward.done": "instances-forwarded",
    "commitment.requested": "commitment-requested",
    "commitment.reported": "commitment-reported",
    "worklist.polled": "worklist-polled",
    "worklist.poll_failed": "worklist-poll-failed",
    "mpps.created": "mpps-created",
    "mpps.completed": "mpps-completed",
    "mpps.discontinued": "mpps-discontinued",
    "job.failed": "job-failed",
    "media.burned": "export-to-media",
    "print.done": "print",
    "print.failed": "print-failed",
    "web.login": "user-login",
    "web.login_failed": "user-login-failed",
    "web.action": "operator-action",
}


class AuditTrail:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "audit.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        name = AUDITED_TOPICS.get(event.topic)
        if name is None or event.relayed:
            return
        record = {"time": event.time, "event": name, "pid": event.pid, **event.fields}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        os.close(self._fd)
