"""The ``commit-report`` job: the SCP's report on a new association to the requestor,
which proposes the SCP role (role reversal: the box is now the association requestor).

A report the requestor has answered is never sent again: the job records the delivery
in its payload before anything else can fail, and a later run of the same job (after a
failure of the job queue, or a restart) only finds it done."""

from __future__ import annotations

import logging

from pynetdicom import build_role
from pynetdicom.association import Association
from pynetdicom.status import code_to_category

from dicombox.core.box import Box
from dicombox.core.jobs import Job, JobContext, PermanentJobError, TransientJobError
from dicombox.core.net.requestor import associate
from dicombox.plugins.commitment.report import PUSH_MODEL, PUSH_MODEL_INSTANCE, Report

log = logging.getLogger("dicombox.commitment")

REPORTED = "reported"  # the payload key set once the requestor has taken the report
DELIVERED = ("Success", "Warning")  # answers that say the report was taken


def send_report(box: Box, job: Job, progress: JobContext) -> None:
    caller = job.payload["calling_ae"]
    if job.payload.get(REPORTED):
        progress(f"already reported to {caller}")
        return
    remotes = box.config.remote_by_ae(caller)
    if not remotes:
        raise PermanentJobError(
            f"{caller} asked for storage commitment but is no [[remote]]: "
            "nowhere to send the report"
        )
    remote = remotes[0]
    report = Report.from_payload(job.payload)
    assoc = associate(box.config, remote, [PUSH_MODEL], [build_role(PUSH_MODEL, scp_role=True)])
    if assoc is None:
        raise TransientJobError(f"cannot associate with {remote.name} to report commitment")
    try:
        # pynetdicom answers (status, event reply); an empty status: no answer came.
        status, _ = assoc.send_n_event_report(
            report.dataset(box.config.box.ae_title),
            report.event_type,
            PUSH_MODEL,
            PUSH_MODEL_INSTANCE,
        )
    finally:
        _release(assoc, remote.name)
    code = int(status.Status) if status and "Status" in status else None
    if code is None or code_to_category(code) not in DELIVERED:
        answer = "no answer" if code is None else f"0x{code:04X}"
        raise TransientJobError(f"{remote.name} answered the commitment report with {answer}")
    counts = f"{len(report.committed)} committed, {len(report.failed)} failed"
    _delivered(box, job, progress, f"reported {counts} to {caller}")


def _release(assoc: Association, name: str) -> None:
    """Release, whatever the peer does: a report it has answered stays delivered."""
    try:
        assoc.release()
    except Exception as exc:
        log.warning("commitment report to %s: release failed (%s); aborting", name, exc)
        assoc.abort()


def _delivered(box: Box, job: Job, progress: JobContext, what: str) -> None:
    """The report was taken: record it so that no later run sends it again. A failure
    here is logged, not raised: a raise would retry the job and send the report twice."""
    log.info("commitment report job %s: %s", job.id, what)
    job.payload[REPORTED] = True
    try:
        box.jobs.checkpoint(job)
        progress(what)
    except Exception:
        log.exception("commitment report job %s: delivered, but not recorded as such", job.id)
