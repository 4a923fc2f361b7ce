"""Fetching priors: a [[route]] with ``fetch_priors = "archive"`` has the box ask that
archive, when a study arrives, for the same patient's earlier studies and C-MOVE the
newest few (``[qr] priors_max``) that it does not hold into itself. The archive must
know the box's AE title as a move destination. One ``fetch-priors`` job per study."""

from __future__ import annotations

import logging
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import select

from dicombox.core.box import Box
from dicombox.core.index import schema
from dicombox.core.jobs import Job, JobContext, PermanentJobError, TransientJobError
from dicombox.core.net.requestor import associate
from dicombox.core.outbox import RouteJob
from dicombox.core.rules import instance_reader, route_matches
from dicombox.plugins.qr.models import STUDY_ROOT

log = logging.getLogger("dicombox.qr")

FETCH_PRIORS = "fetch-priors"


def prior_fetch_jobs(box: Box, instance: Any, dataset: Any) -> list[RouteJob]:
    routes = [r for r in box.config.route if r.fetch_priors]
    if not routes:
        return []
    read = instance_reader(box.store.path(instance.path), dataset)
    patient_id = str(read("PatientID") or "")
    if not patient_id:
        return []  # no patient ID, no priors to look for
    jobs = []
    for route in routes:
        source = box.config.remote_named(route.fetch_priors)
        if source is not None and instance.calling_ae == source.ae_title:
            continue  # a prior arriving from that archive does not look for priors again
        if route_matches(route.when, instance.calling_ae, read):
            # One job per study (the group); later instances of it join with no items.
            jobs.append(
                RouteJob(
                    FETCH_PRIORS,
                    instance.study_instance_uid,
                    [],
                    queue=f"priors:{route.fetch_priors}",
                    delay_s=box.config.storage.forward_delay_s,
                )
            )
    return jobs


def _held_studies(box: Box) -> set[str]:
    with box.index.engine.connect() as conn:
        return set(conn.execute(select(schema.studies.c.study_instance_uid)).scalars())


def _patient_of(box: Box, study_uid: str) -> str:
    p, st = schema.patients, schema.studies
    with box.index.engine.connect() as conn:
        found = conn.execute(
            select(p.c.patient_id)
            .select_from(st.join(p, st.c.patient_pk == p.c.id))
            .where(st.c.study_instance_uid == study_uid)
        ).scalar()
    return str(found or "")


def run_fetch_priors(box: Box, max_priors: int, job: Job, progress: JobContext) -> None:
    name = job.queue.removeprefix("priors:")
    remote = box.config.remote_named(name)
    if remote is None:
        raise PermanentJobError(f"no [[remote]] named {name!r} any more")
    study_uid = job.payload["group"]
    patient_id = _patient_of(box, study_uid)
    if not patient_id:
        progress("the study is no longer stored")
        return
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = patient_id
    query.StudyInstanceUID = ""
    query.StudyDate = ""
    assoc = associate(box.config, remote, [STUDY_ROOT.find, STUDY_ROOT.move])
    if assoc is None:
        raise TransientJobError(f"cannot associate with {remote.name} to look for priors")
    try:
        found = [
            (str(a.get("StudyDate", "")), str(a.StudyInstanceUID))
            for status, a in assoc.send_c_find(query, STUDY_ROOT.find)
            if status and status.Status in (0xFF00, 0xFF01) and a is not None
        ]
        held = _held_studies(box)
        wanted = [uid for _, uid in sorted(found, reverse=True) if uid not in held][:max_priors]
        moved = 0
        for uid in wanted:
            move = Dataset()
            move.QueryRetrieveLevel, move.StudyInstanceUID = "STUDY", uid
            last = None
            for status, _ in assoc.send_c_move(move, box.config.box.ae_title, STUDY_ROOT.move):
                last = status
            if last is None or last.Status not in (0x0000, 0xB000):
                code = f"0x{last.Status:04X}" if last else "no answer"
                raise TransientJobError(f"C-MOVE of prior {uid} from {remote.name}: {code}")
            moved += 1
            progress(f"{moved}/{len(wanted)} priors fetched from {remote.name}")
    finally:
        assoc.release()
    progress(f"{len(found)} studies of patient {patient_id} at {remote.name}; fetched {moved}")
