"""Storage Commitment SCP (push model): a modality asks, the index answers.

The N-ACTION is answered at once; the report follows on the same association when the
requestor still listens, else (or when configured) a ``commit-report`` job sends it on a
new association to the requestor, who must be a [[remote]]. Reports the box receives
for its own requests (as SCU) arrive here too, as N-EVENT-REPORT-RQs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from sqlalchemy import select

from dicombox.core.box import Box
from dicombox.core.index import schema
from dicombox.core.jobs import Job, JobContext, JobNotReady
from dicombox.core.net import pdu
from dicombox.core.net.dataset_codec import decode_dataset, encode_dataset
from dicombox.core.net.service import Reply, Request
from dicombox.plugins.commitment.report import (
    PUSH_MODEL,
    PUSH_MODEL_INSTANCE,
    REQUEST_COMMIT,
    Report,
    check,
    references,
)
from dicombox.plugins.commitment.settings import CommitmentSection
from dicombox.plugins.commitment.tracking import record_report

log = logging.getLogger("dicombox.commitment")

SUCCESS = 0x0000
NO_SUCH_ACTION, NO_SUCH_INSTANCE, MISSING_ATTRIBUTE = 0x0123, 0x0117, 0x0120
PROCESSING_FAILURE = 0x0110
NOT_AUTHORIZED = 0x0124
REPORT_JOB, AFTER_BURN_JOB = "commit-report", "commit-after-burn"
MEDIA = "media"  # the deliveries "remote" under which burned instances are recorded


class CommitmentSCP:
    def __init__(self, box: Box, settings: CommitmentSection) -> None:
        self.box = box
        self.settings = settings

    def handle_action(self, request: Request) -> Iterator[Reply]:
        command, ts = request.command, request.context.transfer_syntax
        caller = request.peer.calling_ae
        if command.ActionTypeID != REQUEST_COMMIT:
            yield Reply(NO_SUCH_ACTION, fields={"ErrorComment": "only Request Storage Commitment"})
            return
        if command.sop_instance_uid != PUSH_MODEL_INSTANCE:
            yield Reply(NO_SUCH_INSTANCE, fields={"ErrorComment": "use 1.2.840.10008.1.20.1.1"})
            return
        try:
            ds = decode_dataset(request.dataset.data, ts)
            transaction, wanted = str(ds.get("TransactionUID", "")), references(ds)
        except Exception as exc:
            log.warning("commitment request from %s unreadable: %s", caller, exc)
            yield Reply(PROCESSING_FAILURE, fields={"ErrorComment": "request cannot be parsed"})
            return
        if not transaction or not wanted:
            yield Reply(
                MISSING_ATTRIBUTE, fields={"ErrorComment": "Transaction UID and references"}
            )
            return
        if self.settings.after_burn:
            yield Reply(SUCCESS, fields={"ActionTypeID": REQUEST_COMMIT})
            self.box.jobs.enqueue(
                AFTER_BURN_JOB,
                {
                    "calling_ae": caller,
                    "transaction_uid": transaction,
                    "wanted": wanted,
                    "deadline": time.time() + self.settings.burn_timeout_s,
                },
                delay_s=self.settings.burn_check_s,
            )
            return
        report = check(self.box, transaction, wanted)
        self.box.bus.publish(
            "commitment.requested",
            calling_ae=caller,
            transaction=transaction,
            committed=len(report.committed),
            failed=len(report.failed),
        )
        yield Reply(SUCCESS, fields={"ActionTypeID": REQUEST_COMMIT})
        # The N-ACTION-RSP is out; now the report.
        if self.settings.report_on == "same-or-new" and request.event_report is not None:
            data = encode_dataset(report.dataset(self.box.config.box.ae_title), ts)
            fields = {
                "AffectedSOPClassUID": PUSH_MODEL,
                "AffectedSOPInstanceUID": PUSH_MODEL_INSTANCE,
                "EventTypeID": report.event_type,
            }
            try:
                status = request.event_report(fields, data)
                if status == SUCCESS:
                    log.info(
                        "commitment report %s sent to %s on its association", transaction, caller
                    )
                    return
                log.warning("%s answered the commitment report with 0x%04X", caller, status)
            except (OSError, pdu.PeerClosed, pdu.ProtocolError) as exc:
                log.info("commitment report to %s goes on a new association: %s", caller, exc)
        queue_report(self.box, self.settings, caller, report)

    def run_after_burn(self, job: Job, progress: JobContext) -> None:
        """Seed 001's commitment: only what the media plugin has burned and verified."""
        payload = job.payload
        wanted = [tuple(pair) for pair in payload["wanted"]]
        report = check(self.box, payload["transaction_uid"], wanted)
        burned = burned_instances(self.box, [uid for _, uid in wanted])
        waiting = [(c, u) for c, u in report.committed if u not in burned]
        if waiting and time.time() < payload["deadline"]:
            raise JobNotReady(
                f"{len(wanted) - len(waiting)} of {len(wanted)} burned", self.settings.burn_check_s
            )
        for sop_class, uid in waiting:
            log.warning("commitment of %s timed out: not burned in time", uid)
            report.committed.remove((sop_class, uid))
            report.failed.append((sop_class, uid, PROCESSING_FAILURE))
        progress(f"{len(report.committed)} burned and committed, {len(report.failed)} failed")
        queue_report(self.box, self.settings, payload["calling_ae"], report)

    def handle_event_report(self, request: Request) -> Iterator[Reply]:
        """A remote's report on one of our own requests (see ``tracking``)."""
        try:
            ds = decode_dataset(request.dataset.data, request.context.transfer_syntax)
        except Exception as exc:
            log.warning("commitment report from %s unreadable: %s", request.peer.calling_ae, exc)
            yield Reply(PROCESSING_FAILURE)
            return
        if why := record_report(self.box, ds, request.peer.calling_ae):
            self.box.bus.publish(
                "security.refused", permission="commit", command="N-EVENT-REPORT-RQ", why=why,
                **request.peer.event_fields(),
            )  # fmt: skip
            yield Reply(NOT_AUTHORIZED, fields={"ErrorComment": why[:64]})
            return
        yield Reply(SUCCESS, fields={"EventTypeID": request.command.EventTypeID})


def queue_report(box: Box, settings: CommitmentSection, caller: str, report: Report) -> None:
    """The report goes on a new association to the requestor, as a job."""
    box.jobs.enqueue(
        REPORT_JOB,
        {"calling_ae": caller, **report.to_payload()},
        queue=f"commit-report:{caller}",
        max_attempts=settings.report_retries + 1,
        retry_delay_s=10.0,
    )


def burned_instances(box: Box, uids: list[str]) -> set[str]:
    """Which of these instances the media plugin has burned and verified: it records
    them as committed deliveries to the remote named "media"."""
    d = schema.deliveries
    burned: set[str] = set()
    with box.index.engine.connect() as conn:
        for start in range(0, len(uids), 500):
            burned.update(
                conn.execute(
                    select(d.c.sop_instance_uid).where(
                        d.c.remote == MEDIA,
                        d.c.state == "committed",
                        d.c.sop_instance_uid.in_(uids[start : start + 500]),
                    )
                ).scalars()
            )
    return burned
