"""The ``commit-report`` job: the SCP's report on a new association to the requestor,
which proposes the SCP role (role reversal: the box is now the association requestor)."""

from __future__ import annotations

from pynetdicom import build_role

from dicombox.core.box import Box
from dicombox.core.jobs import Job, JobContext, PermanentJobError, TransientJobError
from dicombox.core.net.requestor import associate
from dicombox.plugins.commitment.report import PUSH_MODEL, PUSH_MODEL_INSTANCE, Report


def send_report(box: Box, job: Job, progress: JobContext) -> None:
    caller = job.payload["calling_ae"]
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
        status = assoc.send_n_event_report(
            report.dataset(box.config.box.ae_title),
            report.event_type,
            PUSH_MODEL,
            PUSH_MODEL_INSTANCE,
        )
    finally:
        assoc.release()
    if not status or status.Status != 0x0000:
        code = f"0x{status.Status:04X}" if status else "no answer"
        raise TransientJobError(f"{remote.name} answered the commitment report with {code}")
    progress(f"reported {len(report.committed)} committed, {len(report.failed)} failed to {caller}")
