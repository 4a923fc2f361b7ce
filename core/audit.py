"""The audit trail: one structured record per association, store, query, export, deletion.

Each process appends JSON lines to ``<data_dir>/audit/audit.jsonl`` with a single
``O_APPEND`` write per event, so records from several workers never interleave.

A record that stands for a DICOM PS3.15 audit message carries it, as XML, under "dicom",
and its "outcome" (0, 4, 8, 12). The XML is kept in the local log itself, not made
again when asked for: the message says what the box knew when it happened (the patient
a study belonged to then, the remote's address then), which a later rendering from the
bare event could not. The same XML goes to the syslog collector when one is configured.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import threading
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from dicombox.core.audit_events import Audited, AuditEvents, Site
from dicombox.core.audit_messages import to_xml
from dicombox.core.audit_subjects import AuditSubjects
from dicombox.core.config import Config
from dicombox.core.events import Event
from dicombox.core.syslog import SyslogSender, parse_target

log = logging.getLogger("dicombox.audit")

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
    "web.user_added": "user-added",
    "web.user_removed": "user-removed",
    "application.started": "application-start",
    "application.stopped": "application-stop",
    "security.refused": "security-refused",
    "security.tls_failed": "security-tls-failed",
    "query.received": "query",
    "forward.started": "forward-begin",
    "retrieve.started": "retrieve-begin",
    "retrieve.done": "retrieve",
    "audit.read": "audit-log-used",
}
# Records kept in memory while the audit file cannot be written (a full volume).
BACKLOG_BYTES = 4 << 20
# The record written at an association's end for what it brought, per patient.
TRANSFERRED = "instances-transferred"


class AuditTrail:
    def __init__(
        self, directory: Path, config: Config | None = None, engine: Engine | None = None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "audit.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock = threading.Lock()
        self._backlog = bytearray()  # records not yet written (the volume is full)
        self._failing = False
        config = config or Config()
        self.site = Site(
            config.box.ae_title,
            socket.gethostname(),
            os.getpid(),
            {r.name: (r.ae_title, r.host) for r in config.remote},
        )
        self.events = AuditEvents(self.site, AuditSubjects(engine) if engine else None)
        self.syslog = _syslog_sender(config)

    def __call__(self, event: Event) -> None:
        name = AUDITED_TOPICS.get(event.topic)
        if name is None or event.relayed:
            return
        record = {"time": event.time, "event": name, "pid": event.pid, **event.fields}
        try:
            produced = self.events.messages(event)
        except Exception:  # an index lookup failed: the event's own record still goes in
            log.exception("audit message for %s could not be made", event.topic)
            produced = []
        own = [a for a in produced if not a.event]
        lines = [self._attach({**record, **a.fields}, a) for a in own] if own else [record]
        self._write(lines + self._records_of([a for a in produced if a.event], event.pid))

    def _records_of(self, produced: list[Audited], pid: int) -> list[dict[str, Any]]:
        records = []
        for audited in produced:
            record = {"time": audited.message.when, "event": audited.event, "pid": pid}
            records.append(self._attach({**record, **audited.fields}, audited))
        return records

    def _attach(self, record: dict[str, Any], audited: Audited) -> dict[str, Any]:
        """The message's outcome and XML into its record, and off to syslog."""
        message = audited.message
        xml = to_xml(message, self.site.ae_title)
        record["outcome"] = message.outcome
        record["dicom"] = xml
        if self.syslog is not None:
            self.syslog.send(xml, message.outcome != 0, message.when)
        return record

    def _write(self, records: list[dict[str, Any]]) -> None:
        """Append the records. While the volume is full (or failing) they wait in memory,
        up to BACKLOG_BYTES, and go out with the first write that succeeds again: the box
        keeps working through a full disk, and its trail keeps what happened meanwhile."""
        data = "".join(json.dumps(r, default=str) + "\n" for r in records).encode("utf-8")
        with self._lock:
            if self._fd < 0:  # closed: a late publisher must not write to a reused descriptor
                log.warning("audit trail closed; %d record(s) after it dropped", len(records))
                return
            self._backlog += data
            try:
                while self._backlog:
                    del self._backlog[: os.write(self._fd, self._backlog)]
            except OSError as exc:
                self._hold_back(exc)
                return
            if self._failing:
                self._failing = False
                log.warning("audit trail: writing again; the records kept meanwhile are in")

    def _hold_back(self, exc: OSError) -> None:
        if not self._failing:
            self._failing = True
            log.error("audit trail: cannot write %s (%s); keeping records in memory", self.path,
                      exc.strerror)  # fmt: skip
        excess = len(self._backlog) - BACKLOG_BYTES
        if excess > 0:  # the oldest whole records go, and the log says so
            cut = self._backlog.find(b"\n", excess) + 1 or len(self._backlog)
            lost = self._backlog[:cut].count(b"\n")
            del self._backlog[:cut]
            log.error("audit trail: %d record(s) dropped, the volume is still full", lost)

    def close(self) -> None:
        try:
            pending = self.events.pending()
        except Exception:  # the index may be gone at stop; the trail still closes
            log.exception("audit: the transfers still being counted could not be described")
            pending = []
        self._write(self._records_of(pending, os.getpid()))  # and a last try for the backlog
        if self._backlog:
            log.error("audit trail: %d record(s) could not be written before the stop",
                      self._backlog.count(b"\n"))  # fmt: skip
        if self.syslog is not None:
            self.syslog.close()
        with self._lock:
            os.close(self._fd)
            self._fd = -1


def _syslog_sender(config: Config) -> SyslogSender | None:
    section = config.audit
    if not section.syslog:
        return None
    net = config.network
    return SyslogSender(
        parse_target(section.syslog),
        section.syslog_app_name,
        section.syslog_msgid,
        section.syslog_ca,
        net.tls_certificate,
        net.tls_key,
    )


def read_records(
    path: Path, since: float = 0.0, last: int = 0, event: str = "", tail_bytes: int = 0
) -> Iterator[dict[str, Any]]:
    """The trail's records in the order written: from ``since``, of one ``event`` kind,
    only the ``last`` so many when given. ``tail_bytes``: read only the file's end (the
    trail grows for as long as the box runs; a page wants its newest records)."""
    if not path.exists():
        return iter(())
    wanted: deque[dict[str, Any]] = deque(maxlen=last or None)
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - tail_bytes) if tail_bytes else 0
        handle.seek(start)
        if start:
            handle.readline()  # a tail's first line may be cut in the middle
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a power cut
            if record.get("time", 0) >= since and (not event or record.get("event") == event):
                wanted.append(record)
    return iter(wanted)


def who_and_what(record: dict[str, Any]) -> tuple[str, str]:
    """Who acted and on what, in a few words, for a table of records."""
    who = next(
        (str(record[k]) for k in ("user", "calling_ae", "remote", "printer") if record.get(k)),
        "-",
    )
    if record.get("peer_host"):
        host = str(record["peer_host"]).removeprefix("::ffff:")
        if who == record.get("calling_ae"):
            who += f"@{host}"
        elif who == "-":  # a node with no AE title yet: a failed TLS handshake
            who = host
    if record.get("patient_name") or record.get("patient_id"):
        what = f"{record.get('patient_name', '')} [{record.get('patient_id', '')}]"
        studies = record.get("studies") or []
        what += f" {studies[0]}" + (f" +{len(studies) - 1}" if len(studies) > 1 else "")
        if record.get("count"):
            what += f" ({record['count']} instances)"
        return who, what
    for key in ("study_instance_uid", "sop_instance_uid", "permission", "model", "name", "log"):
        if record.get(key):
            return who, f"{key.replace('_', ' ')} {record[key]}"
    return who, str(record.get("reason") or record.get("why") or record.get("error") or "-")


def os_user() -> str:
    """Who runs this process, as the system knows them (the launcher of the box)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry, as in some containers
        return str(os.getuid())


def started_at(text: str) -> float:
    """``--since`` as a time: an ISO 8601 date or date and time (local unless it says)."""
    return datetime.fromisoformat(text).timestamp()
