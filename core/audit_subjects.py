"""Who and what an audit message is about: the studies and patients behind instances,
looked up in the index (PS3.15 names the patient and the study in every transfer)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, select

from dicombox.core.index import schema

CHUNK = 500  # UIDs per IN (...): well under SQLite's limit on bound parameters


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class AuditSubjects:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def patients(self, study_uids: Iterable[str]) -> dict[str, dict[str, str]]:
        """Study Instance UID -> its patient_id, patient_name and accession_number."""
        st, p = schema.studies, schema.patients
        wanted = sorted({u for u in study_uids if u})
        found: dict[str, dict[str, str]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted):
                rows = conn.execute(
                    select(
                        st.c.study_instance_uid,
                        st.c.accession_number,
                        p.c.patient_id,
                        p.c.patient_name,
                    )
                    .select_from(st.join(p, st.c.patient_pk == p.c.id))
                    .where(st.c.study_instance_uid.in_(chunk))
                ).all()
                for r in rows:
                    found[r.study_instance_uid] = {
                        "patient_id": r.patient_id,
                        "patient_name": r.patient_name,
                        "accession_number": r.accession_number,
                    }
        return found

    def studies_of(self, sop_uids: Iterable[str]) -> dict[str, str]:
        """SOP Instance UID -> Study Instance UID, for the instances the index holds."""
        i, se, st = schema.instances, schema.series, schema.studies
        wanted = sorted(set(sop_uids))
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted):
                rows = conn.execute(
                    select(i.c.sop_instance_uid, st.c.study_instance_uid)
                    .select_from(
                        i.join(se, i.c.series_pk == se.c.id).join(st, se.c.study_pk == st.c.id)
                    )
                    .where(i.c.sop_instance_uid.in_(chunk))
                ).all()
                found.update((r.sop_instance_uid, r.study_instance_uid) for r in rows)
        return found

    def summarize(self, instances: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        """(SOP Class UID, SOP Instance UID) pairs grouped by study, each with its patient
        and its SOP classes counted: what an event about many instances carries."""
        pairs = list(instances)
        study_of = self.studies_of(uid for _, uid in pairs)
        counts: dict[str, Counter[str]] = {}
        for sop_class, uid in pairs:
            counts.setdefault(study_of.get(uid, ""), Counter())[sop_class] += 1
        return self.describe(counts)

    def describe(self, counts: dict[str, Counter[str]]) -> list[dict[str, Any]]:
        """Per study ("" = not known to the index): its patient and SOP class counts."""
        patients = self.patients(counts)
        return [
            {
                "study_instance_uid": study,
                **patients.get(study, {}),
                "sop_classes": dict(sorted(classes.items())),
            }
            for study, classes in counts.items()
        ]
