"""Forwarding: [[route]] rules queue a forward job per destination and study, and the
job delivers the study's instances to the remote on one association.

A job holds SOP Instance UIDs; the files are looked up in the index when it runs, so a
job outlives a restart. What each remote has taken is recorded in the index
(``deliveries``) while the association runs, a batch at a time (``forward_record``): a
retry after the peer went away, or after the box itself was killed, sends only the rest,
and the commitment plugin hears of each delivery through the ``forward.done`` event.

A forward of acknowledged images never gives up on a failure that may pass (peer down,
association rejected-transient, a timeout, A7xx): it is retried, the wait doubling up to
the remote's ``retry_delay_max_s``. Only a refusal for good fails it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from dicombox.core.box import Box
from dicombox.core.events import Event
from dicombox.core.index import schema
from dicombox.core.jobs import Job, JobContext, PermanentJobError, TransientJobError
from dicombox.core.net.delivery import (
    DeliveryInterrupted,
    DeliveryReport,
    OutboundPolicy,
    deliver,
)
from dicombox.core.net.outbound import AssociationFailed
from dicombox.core.net.requestor import destination_of, network_for
from dicombox.core.net.sending import StoredFile
from dicombox.core.outbox import RouteJob, gather_now
from dicombox.core.rules import routes_for_mpps_event, routes_for_stored
from dicombox.plugins.storage.forward_record import DeliveryRecorder
from dicombox.plugins.storage.split_sending import frames_instead, per_original

log = logging.getLogger("dicombox.forward")

FORWARD = "forward"


def forward_jobs(box: Box, instance: Any, dataset: Any) -> list[RouteJob]:
    """For each arriving instance: one gathered job per matching destination."""
    routes = [r for r in box.config.route if r.forward]
    if not routes:
        return []
    path = box.store.path(instance.path)
    targets: list[str] = []
    for route in routes_for_stored(routes, instance.calling_ae, path, dataset):
        targets += [t for t in route.forward if t not in targets]
    delay_s = box.config.storage.forward_delay_s
    return [
        forward_job(box, t, instance.study_instance_uid, [instance.sop_instance_uid], delay_s)
        for t in targets
    ]


def forward_job(
    box: Box, target: str, study_uid: str, sop_uids: list[str], delay_s: float = 0.0
) -> RouteJob:
    """Instances for the forward job still queued for this remote and study, or a new
    one; it retries as the remote's section says."""
    remote = box.config.remote_named(target)
    assert remote is not None, "config check makes sure forward targets exist"
    return RouteJob(
        FORWARD,
        f"{target} {study_uid}",
        sop_uids,
        queue=f"remote:{target}",
        max_attempts=0,  # no limit: acknowledged images are never silently left behind
        retry_delay_s=remote.retry_delay_s,
        delay_s=delay_s,
    )


def forward_completed_study(box: Box, event: Event) -> None:
    """MPPS COMPLETED: routes with ``on = "mpps-completed"`` forward the whole study.
    Their ``when`` is read against one stored instance of it and the MPPS sender."""
    studies = routes_for_mpps_event(box, event, lambda r: bool(r.forward))
    for study_uid, routes in studies.items():
        uids = [uid for uid, _ in box.index.study_instances([study_uid])]
        for target in dict.fromkeys(t for route in routes for t in route.forward):
            gather_now(box.jobs, forward_job(box, target, study_uid, uids))


def stored_files(box: Box, sop_uids: list[str]) -> list[StoredFile]:
    """The stored files of these instances, in the order given; unknown ones left out."""
    i = schema.instances
    found: dict[str, StoredFile] = {}
    with box.index.engine.connect() as conn:
        for start in range(0, len(sop_uids), 500):
            rows = conn.execute(
                select(
                    i.c.path, i.c.sop_class_uid, i.c.sop_instance_uid, i.c.transfer_syntax_uid
                ).where(i.c.sop_instance_uid.in_(sop_uids[start : start + 500]), i.c.copy == 0)
            ).all()
            for r in rows:
                found[r.sop_instance_uid] = StoredFile(
                    box.store.path(r.path),
                    r.sop_class_uid,
                    r.sop_instance_uid,
                    r.transfer_syntax_uid,
                )
    return [found[u] for u in sop_uids if u in found]


def delivered_since(box: Box, remote: str, since: float) -> set[str]:
    d = schema.deliveries
    with box.index.engine.connect() as conn:
        rows = conn.execute(
            select(d.c.sop_instance_uid).where(d.c.remote == remote, d.c.updated_at >= since)
        ).all()
    return {r.sop_instance_uid for r in rows}


def send_to_remote(
    box: Box, remote_name: str, items: list[StoredFile], progress: JobContext
) -> DeliveryReport:
    """Deliver ``items`` to a [[remote]], recording and announcing what it took as it
    acknowledges it."""
    remote = box.config.remote_named(remote_name)
    if remote is None:
        raise PermanentJobError(f"no [[remote]] named {remote_name!r} any more")
    cap = remote.retry_delay_max_s
    destination = destination_of(remote)
    box.bus.publish(  # audited: PS3.15 Begin Transferring DICOM Instances
        "forward.started",
        remote=remote_name,
        instances=[[i.sop_class_uid, i.sop_instance_uid] for i in items],
    )
    try:
        with frames_instead(box, remote, items) as (sent, origin):
            recorder = DeliveryRecorder(box, remote_name, origin)
            try:
                report = per_original(
                    deliver(
                        sent,
                        destination,
                        box.config.box.ae_title,
                        network_for(box.config.network, remote),
                        OutboundPolicy.of(remote),
                        lambda done, total: progress(f"{done}/{total} sent to {remote_name}"),
                        recorder.add,
                    ),
                    origin,
                )
            except DeliveryInterrupted as exc:
                exc.report = per_original(exc.report, origin)
                raise
            finally:
                recorder.flush()
    except DeliveryInterrupted as exc:
        _log_refusals(remote_name, exc.report)
        raise TransientJobError(
            f"{destination} broke off: {exc}; {exc.report.summary}", cap
        ) from None
    except AssociationFailed as exc:
        if exc.permanent:
            raise PermanentJobError(str(exc)) from None
        raise TransientJobError(str(exc), cap) from None
    _log_refusals(remote_name, report)
    return report


def _log_refusals(remote: str, report: DeliveryReport) -> None:
    for item, why in report.refused:
        log.warning("%s refused %s: %s", remote, item.sop_instance_uid, why)


def run_forward(box: Box, job: Job, progress: JobContext) -> None:
    remote = job.queue.removeprefix("remote:")
    wanted = job.payload["items"]
    already = delivered_since(box, remote, job.created_at)
    items = stored_files(box, [u for u in wanted if u not in already])
    if not items:
        progress(f"all {len(wanted)} already at {remote}")
        return
    report = send_to_remote(box, remote, items, progress)
    progress(f"{remote}: {report.summary}")
    if report.deferred:
        settings = box.config.remote_named(remote)
        raise TransientJobError(report.summary, settings.retry_delay_max_s if settings else None)
    if report.refused:
        raise PermanentJobError(report.summary)
