"""Modality Performed Procedure Step (PS3.4 F.7), both sides: the SCP modalities report
their steps to, and the ``mpps-forward`` job that passes each accepted N-CREATE and
N-SET on to the RIS ([worklist] mpps_remote, else ris).

A step is created IN PROGRESS, may be N-SET while IN PROGRESS, and becomes final once
(COMPLETED or DISCONTINUED, with an end date and time); after that it may no longer be
updated. Forwards are one job per message in one queue per remote, run in order, so the
RIS never sees an N-SET before its N-CREATE.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select, update

from dicombox.core.box import Box
from dicombox.core.index.engine import write_transaction
from dicombox.core.jobs import (
    Job,
    JobContext,
    PermanentJobError,
    TransientJobError,
)
from dicombox.core.net.dataset_codec import decode_dataset
from dicombox.core.net.requestor import associate
from dicombox.core.net.service import Reply, Request
from dicombox.plugins.worklist.settings import WorklistSection
from dicombox.plugins.worklist.tables import ensure_tables, mpps, mpps_steps, scheduled_steps

log = logging.getLogger("dicombox.worklist")

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
MPPS_FORWARD_JOB = "mpps-forward"
IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
FINAL = {COMPLETED: "mpps.completed", DISCONTINUED: "mpps.discontinued"}
SUCCESS, INVALID_VALUE, PROCESSING_FAILURE, DUPLICATE = 0x0000, 0x0106, 0x0110, 0x0111
NO_SUCH_INSTANCE, MISSING, MISSING_VALUE = 0x0112, 0x0120, 0x0121
NOT_UPDATABLE = 0xA710  # the Error ID PS3.4 F.7 gives with 0x0110 once a step is final
# What the SCU must send as type 1 in the N-CREATE (Table F.7.2-1); the Study Instance
# UID inside each Scheduled Step Attributes item is checked too.
REQUIRED = (
    "PerformedProcedureStepStatus",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "Modality",
    "PerformedStationAETitle",
    "ScheduledStepAttributesSequence",
)


class Refusal(Exception):
    """A request answered with a failure status (ErrorComment: at most 64 characters)."""

    def __init__(self, status: int, comment: str, **fields: Any) -> None:
        super().__init__(comment)
        self.status, self.fields = status, {"ErrorComment": comment[:64], **fields}


class MppsSCP:
    def __init__(self, box: Box, settings: WorklistSection) -> None:
        self.box = box
        self.settings = settings
        ensure_tables(box.index.engine)

    def handle_create(self, request: Request) -> Iterator[Reply]:
        uid = request.command.AffectedSOPInstanceUID or str(generate_uid())
        caller = request.peer.calling_ae
        try:
            ds, received = _decode(request)
            _check_create(ds)
            now = time.time()
            with write_transaction(self.box.index.engine) as conn:
                if conn.execute(select(mpps.c.id).where(mpps.c.sop_instance_uid == uid)).first():
                    raise Refusal(DUPLICATE, f"{uid} exists")
                created = conn.execute(
                    mpps.insert().values(
                        sop_instance_uid=uid,
                        status=IN_PROGRESS,
                        calling_ae=caller,
                        dataset=json.dumps(received),
                        created_at=now,
                        updated_at=now,
                    )
                )
                # _check_create saw at least one Scheduled Step Attributes item.
                steps = scheduled_steps(created.inserted_primary_key[0], ds)
                conn.execute(mpps_steps.insert(), steps)
        except Refusal as refusal:
            log.warning("MPPS N-CREATE %s from %s refused: %s", uid, caller, refusal)
            yield Reply(refusal.status, fields={"AffectedSOPInstanceUID": uid, **refusal.fields})
            return
        # Queued before the answer: once the modality hears success, the RIS will hear too.
        self._forward("create", uid, received)
        yield Reply(SUCCESS, fields={"AffectedSOPInstanceUID": uid})
        log.info("MPPS %s created IN PROGRESS by %s", uid, caller)
        self.box.bus.publish(
            "mpps.created", calling_ae=caller, sop_instance_uid=uid, status=IN_PROGRESS
        )

    def handle_set(self, request: Request) -> Iterator[Reply]:
        uid = request.command.sop_instance_uid
        caller = request.peer.calling_ae
        try:
            _, received = _decode(request)
            # Check and write under one write lock: two N-SETs racing from two
            # associations must not both pass the "not final yet" check.
            with write_transaction(self.box.index.engine) as conn:
                row = conn.execute(
                    select(mpps.c.status, mpps.c.dataset).where(mpps.c.sop_instance_uid == uid)
                ).first()
                if row is None:
                    raise Refusal(NO_SUCH_INSTANCE, f"no performed procedure step {uid}")
                if row.status in FINAL:
                    raise Refusal(
                        PROCESSING_FAILURE,
                        "Performed Procedure Step Object may no longer be updated",
                        ErrorID=NOT_UPDATABLE,
                    )
                # DICOM JSON is keyed by tag: top-level elements of the N-SET replace.
                merged = {**json.loads(row.dataset), **received}
                step = Dataset.from_json(merged)
                status = str(step.get("PerformedProcedureStepStatus", ""))
                if status != IN_PROGRESS and status not in FINAL:
                    raise Refusal(INVALID_VALUE, f"Performed Procedure Step Status {status!r}")
                # The N-CREATE usually sent these empty (type 2): the N-SET that ends the
                # step must supply them, so empty counts as missing (0x0120) here.
                for keyword in ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"):
                    if status in FINAL and not step.get(keyword):
                        raise Refusal(MISSING, f"{keyword} needed for {status}")
                conn.execute(
                    update(mpps)
                    .where(mpps.c.sop_instance_uid == uid)
                    .values(status=status, dataset=json.dumps(merged), updated_at=time.time())
                )
        except Refusal as refusal:
            log.warning("MPPS N-SET %s from %s refused: %s", uid, caller, refusal)
            yield Reply(refusal.status, fields=refusal.fields)
            return
        self._forward("set", uid, received)
        yield Reply(SUCCESS)
        log.info("MPPS %s set %s by %s", uid, status, caller)
        if status in FINAL:
            studies = [
                str(i.StudyInstanceUID)
                for i in step.get("ScheduledStepAttributesSequence", [])
                if i.get("StudyInstanceUID")
            ]
            self.box.bus.publish(
                FINAL[status], sop_instance_uid=uid, calling_ae=caller, study_instance_uids=studies
            )

    def _forward(self, action: str, uid: str, received: dict[str, Any]) -> None:
        target = self.settings.mpps_remote or self.settings.ris
        if not target:
            return
        remote = self.box.config.remote_named(target)
        if remote is None:
            log.warning("MPPS not forwarded: no [[remote]] named %r", target)
            return
        self.box.jobs.enqueue(
            MPPS_FORWARD_JOB,
            {"action": action, "sop_instance_uid": uid, "dataset": received},
            queue=f"mpps:{target}",
            max_attempts=remote.retries + 1,
            retry_delay_s=remote.retry_delay_s,
        )


def _decode(request: Request) -> tuple[Dataset, dict[str, Any]]:
    """The request's data set, and as DICOM JSON (which parses every element: a data set
    that cannot be read fails here, not halfway through storing it)."""
    if request.dataset is None:
        return Dataset(), {}
    if getattr(request.dataset, "overflowed", False):
        raise Refusal(PROCESSING_FAILURE, "data set too large")
    try:
        ds = decode_dataset(request.dataset.data, request.context.transfer_syntax)
        return ds, ds.to_json_dict()
    except Exception as exc:
        raise Refusal(PROCESSING_FAILURE, f"data set cannot be parsed: {exc}") from exc


def _require(ds: Dataset, keyword: str, comment: str) -> None:
    if keyword not in ds:
        raise Refusal(MISSING, comment)
    if ds[keyword].is_empty:
        raise Refusal(MISSING_VALUE, comment)  # present but empty: type 1 needs a value


def _check_create(ds: Dataset) -> None:
    for keyword in REQUIRED:
        _require(ds, keyword, f"{keyword} missing")
    for item in ds.ScheduledStepAttributesSequence:
        _require(item, "StudyInstanceUID", "Study Instance UID missing in a scheduled step")
    if ds.PerformedProcedureStepStatus != IN_PROGRESS:
        raise Refusal(INVALID_VALUE, "N-CREATE must have status IN PROGRESS")


def run_mpps_forward(box: Box, settings: WorklistSection, job: Job, progress: JobContext) -> None:
    name = job.queue.removeprefix("mpps:")
    remote = box.config.remote_named(name)
    if remote is None:
        raise PermanentJobError(f"no [[remote]] named {name!r} any more")
    # A retried job waits with a later next_run_at, so a younger one of the same queue
    # could overtake it: wait until every older message to this remote has gone.
    box.jobs.wait_for_older(job, f"MPPS messages to {name}")
    action, uid = job.payload["action"], job.payload["sop_instance_uid"]
    assoc = associate(box.config, remote, [MPPS_SOP_CLASS])
    if assoc is None:
        raise TransientJobError(f"cannot associate with {name} to forward MPPS")
    try:
        send = assoc.send_n_create if action == "create" else assoc.send_n_set
        status, _ = send(Dataset.from_json(job.payload["dataset"]), MPPS_SOP_CLASS, uid)
    except ValueError as exc:  # pynetdicom: MPPS not accepted, or not encodable
        raise PermanentJobError(f"{name} cannot take the N-{action.upper()}: {exc}") from exc
    finally:
        if assoc.is_established:
            assoc.release()
    code = int(status.Status) if status and "Status" in status else None
    if code is None:
        raise TransientJobError(f"{name} did not answer the N-{action.upper()} of {uid}")
    done = f"N-{action.upper()} of {uid} sent to {name}"
    if code == SUCCESS or code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        progress(done if code == SUCCESS else f"{done} (warning 0x{code:04X})")
        return
    # Both mean the remote already holds what we send: an earlier attempt whose answer
    # was lost, or a modality that reports to the RIS directly as well. Retrying cannot
    # change anything and the RIS has the step, so these count as done, not failed.
    if (action == "create" and code == DUPLICATE) or (
        code == PROCESSING_FAILURE and status.get("ErrorID") == NOT_UPDATABLE
    ):
        progress(f"{done}: it already had it (0x{code:04X})")
        return
    why = f"{name} answered the N-{action.upper()} of {uid} with 0x{code:04X}"
    if comment := status.get("ErrorComment"):
        why += f" ({comment})"
    # A processing failure (without A710) or a lack of resources may pass on the RIS's
    # side: retry, as far as [[remote]] retries allows. Anything else is a refusal.
    if code in (PROCESSING_FAILURE, 0x0213) or 0xA700 <= code <= 0xA7FF:
        raise TransientJobError(why)
    raise PermanentJobError(why)
