"""Storage Commitment SCU: after a forward, ask the remote to commit, and keep what it
answers in the index (``deliveries``: delivered → requested → committed | refused).

Jobs: ``commit-request`` gathers what was delivered to a remote during its
``commit_delay_s`` and sends one N-ACTION (or one per instance), then listens a while
for the report on the same association; ``commit-timeout`` runs ``report_timeout_s``
later and asks again for what is still unanswered, or gives up with "timed out". The
report may also come on an association the remote opens (see ``scp``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from sqlalchemy import select, update

from dicombox.core.box import Box
from dicombox.core.events import Event
from dicombox.core.index import schema
from dicombox.core.index.engine import write_transaction
from dicombox.core.jobs import Job, JobContext, PermanentJobError, TransientJobError
from dicombox.core.net.requestor import associate
from dicombox.plugins.commitment.report import (
    PUSH_MODEL,
    PUSH_MODEL_INSTANCE,
    REQUEST_COMMIT,
    references,
)
from dicombox.plugins.commitment.settings import CommitmentSection

log = logging.getLogger("dicombox.commitment")

REQUEST_JOB, TIMEOUT_JOB = "commit-request", "commit-timeout"
DELIVERED, REQUESTED, COMMITTED, REFUSED = "delivered", "requested", "committed", "refused"


def on_forward_done(box: Box, settings: CommitmentSection, event: Event) -> None:
    """Queue a commitment request for what a remote with ``commit = true`` just took."""
    remote = box.config.remote_named(str(event.fields.get("remote", "")))
    if remote is None or not remote.commit:
        return
    instances: list[list[str]] = list(event.fields.get("instances", []))
    groups = [[i] for i in instances] if settings.bundle == "instance" else [instances]
    for group in groups:
        box.jobs.gather(
            REQUEST_JOB,
            remote.name if settings.bundle == "batch" else group[0][1],
            group,
            queue=f"commit:{remote.name}",
            max_attempts=remote.retries + 1,
            retry_delay_s=remote.retry_delay_s,
            delay_s=remote.commit_delay_s,
        )


def _mark(box: Box, remote: str, uids: list[str], transaction: str = "", **values: Any) -> None:
    """Set ``values`` on the deliveries of ``uids`` to ``remote`` (only those asked in
    ``transaction``, when given: a report speaks for its own request alone)."""
    d = schema.deliveries
    only = [d.c.transaction_uid == transaction] if transaction else []
    with write_transaction(box.index.engine) as conn:
        for start in range(0, len(uids), 500):
            conn.execute(
                update(d)
                .where(
                    d.c.remote == remote,
                    d.c.sop_instance_uid.in_(uids[start : start + 500]),
                    *only,
                )
                .values(updated_at=time.time(), **values)
            )


def run_request(box: Box, settings: CommitmentSection, job: Job, progress: JobContext) -> None:
    name = job.queue.removeprefix("commit:")
    remote = box.config.remote_named(name)
    if remote is None:
        raise PermanentJobError(f"no [[remote]] named {name!r} any more")
    items: list[list[str]] = job.payload["items"]
    transaction = str(generate_uid())
    request = Dataset()
    request.TransactionUID = transaction
    request.ReferencedSOPSequence = []
    for sop_class, uid in items:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, uid
        request.ReferencedSOPSequence.append(ref)
    reports: list[Dataset] = []

    def on_report(event: Any) -> tuple[int, None]:
        reports.append(event.event_information)
        return 0x0000, None

    assoc = associate(
        box.config, remote, [PUSH_MODEL], handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
    )
    if assoc is None:
        raise TransientJobError(f"cannot associate with {remote.name} for storage commitment")
    _mark(box, name, [uid for _, uid in items], state=REQUESTED, transaction_uid=transaction)
    try:
        status, _ = assoc.send_n_action(request, REQUEST_COMMIT, PUSH_MODEL, PUSH_MODEL_INSTANCE)
        if not status or status.Status != 0x0000:
            code = f"0x{status.Status:04X}" if status else "no answer"
            raise TransientJobError(f"{remote.name} answered the commitment request with {code}")
        progress(f"asked {remote.name} to commit {len(items)} (transaction {transaction})")
        deadline = time.monotonic() + settings.report_wait_s
        while not reports and assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if assoc.is_established:
            assoc.release()
    for report in reports:
        record_report(box, report)
    if not reports:
        box.jobs.enqueue(
            TIMEOUT_JOB,
            {
                "remote": name,
                "transaction_uid": transaction,
                "items": items,
                "asked": job.payload.get("asked", 1),
            },
            delay_s=settings.report_timeout_s,
        )
        progress(f"waiting for {remote.name}'s report on transaction {transaction}")


def record_report(box: Box, report: Dataset, caller: str = "") -> str:
    """Mark what a commitment report says, by its Transaction UID; returns why it was
    refused, or "". ``caller``: the AE title that brought it on an association of its
    own, which must be the remote asked. A committed instance may be deleted by the
    watermark, so no one else may say so."""
    transaction = str(report.get("TransactionUID", ""))
    d = schema.deliveries
    with box.index.engine.connect() as conn:
        remote = conn.execute(
            select(d.c.remote).where(d.c.transaction_uid == transaction).limit(1)
        ).scalar()
    if remote is None:
        log.warning("commitment report for unknown transaction %r ignored", transaction)
        return ""
    asked = box.config.remote_named(remote)
    if caller and (asked is None or asked.ae_title != caller):
        why = f"{caller} reported on a commitment asked of {remote}"
        log.warning("commitment report refused: %s", why)
        return why
    committed = [uid for _, uid in references(report)]
    failed = [
        (str(i.get("ReferencedSOPInstanceUID", "")), int(i.get("FailureReason", 0x0110)))
        for i in report.get("FailedSOPSequence", [])
    ]
    _mark(box, remote, committed, transaction, state=COMMITTED, detail="")
    for uid, reason in failed:
        _mark(
            box, remote, [uid], transaction, state=REFUSED, detail=f"failure reason 0x{reason:04X}"
        )
    box.bus.publish(
        "commitment.reported",
        remote=remote,
        transaction=transaction,
        committed=len(committed),
        failed=len(failed),
    )
    log.info(
        "%s committed %d, refused %d (transaction %s)",
        remote,
        len(committed),
        len(failed),
        transaction,
    )
    return ""


def run_timeout(box: Box, settings: CommitmentSection, job: Job, progress: JobContext) -> None:
    payload = job.payload
    d = schema.deliveries
    with box.index.engine.connect() as conn:
        open_uids = set(
            conn.execute(
                select(d.c.sop_instance_uid).where(
                    d.c.transaction_uid == payload["transaction_uid"], d.c.state == REQUESTED
                )
            ).scalars()
        )
    if not open_uids:
        progress("report arrived")
        return
    items = [i for i in payload["items"] if i[1] in open_uids]
    if payload["asked"] > settings.request_retries:
        _mark(box, payload["remote"], sorted(open_uids), state=REFUSED, detail="timed out")
        progress(f"{len(items)} never reported: timed out")
        return
    box.jobs.enqueue(
        REQUEST_JOB,
        {"group": "again", "items": items, "asked": payload["asked"] + 1},
        queue=f"commit:{payload['remote']}",
    )
    progress(f"asking again for {len(items)}")
