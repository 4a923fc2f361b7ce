"""Storage Commitment, push model: the SCP that lets a modality know the box holds its
images safely, and the SCU that asks an archive the same after a forward."""

from __future__ import annotations

from typing import Any

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.jobs import JobHandler
from dicombox.core.net.commands import N_ACTION_RQ, N_EVENT_REPORT_RQ
from dicombox.core.net.service import Service, SupportedContext
from dicombox.plugins.commitment.report import PUSH_MODEL, PUSH_MODEL_INSTANCE
from dicombox.plugins.commitment.scp import AFTER_BURN_JOB, REPORT_JOB, CommitmentSCP
from dicombox.plugins.commitment.sender import send_report
from dicombox.plugins.commitment.settings import CommitmentSection
from dicombox.plugins.commitment.tracking import (
    REQUEST_JOB,
    TIMEOUT_JOB,
    on_forward_done,
    run_request,
    run_timeout,
)

__version__ = "1.0.0"

SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {"commitment": CommitmentSection}


@hookimpl
def dicombox_services(box: Box) -> list[Service]:
    settings: CommitmentSection = box.section("commitment")
    scp = CommitmentSCP(box, settings)
    handlers = {N_EVENT_REPORT_RQ: scp.handle_event_report}
    if settings.enabled:
        handlers[N_ACTION_RQ] = scp.handle_action
    return [
        Service(
            name="commitment",
            # Both roles: a remote answering our own request opens a new association as
            # SCP (role reversal) to bring its report.
            contexts=[SupportedContext(PUSH_MODEL, SYNTAXES, scu_role=True, scp_role=True)],
            handlers=handlers,
            # Asking us to commit needs the permission; a report answering our own
            # request (N-EVENT-REPORT) does not.
            permissions={N_ACTION_RQ: "commit"},
        )
    ]


@hookimpl
def dicombox_jobs(box: Box) -> dict[str, JobHandler]:
    settings: CommitmentSection = box.section("commitment")
    return {
        REPORT_JOB: lambda job, progress: send_report(box, job, progress),
        AFTER_BURN_JOB: CommitmentSCP(box, settings).run_after_burn,
        REQUEST_JOB: lambda job, progress: run_request(box, settings, job, progress),
        TIMEOUT_JOB: lambda job, progress: run_timeout(box, settings, job, progress),
    }


@hookimpl
def dicombox_start(box: Box) -> None:
    settings: CommitmentSection = box.section("commitment")
    box.bus.subscribe("forward.done", lambda event: on_forward_done(box, settings, event))


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, Any]]:
    return [
        {
            "service": "Storage Commitment",
            "sop_class": "Storage Commitment Push Model",
            "uid": PUSH_MODEL,
            "role": role,
            "transfer_syntaxes": list(SYNTAXES),
            "notes": notes,
        }
        for role, notes in (
            (
                "SCP",
                f"instance {PUSH_MODEL_INSTANCE}; report on the same association if open, "
                "else a new one",
            ),
            (
                "SCU",
                "after forwarding to a remote with commit = true; a report is taken on the "
                "requestor's association or on a new one to the box's port",
            ),
        )
    ]
