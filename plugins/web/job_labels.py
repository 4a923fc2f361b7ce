"""What a job works on, in words an operator knows: patients and study dates, not UIDs.

A job's payload names its studies by UID: in its label or group ("archive 1.2.3…", a
burn's "1.2.3… 1.2.4…") or, for a print, as its items (study, series or image UIDs).
Each UID is looked up in the index: one study reads "DOE JANE 2026-03-20", several of
one patient "DOE JANE: 3 studies", several patients "24 studies, 18 patients". Items
that are not what the label names (a forward's images) are counted after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from dicombox.core.box import Box
from dicombox.core.index import schema
from dicombox.core.jobs import Job

# What a kind's items are, when they are not studies (a forward's SOP Instance UIDs).
ITEM_NOUNS = {"forward": "image", "commit-request": "instance", "commit-timeout": "instance"}
CHUNK = 500  # UIDs per IN (...): well under SQLite's limit of bound parameters


@dataclass(frozen=True)
class Study:
    uid: str
    patient: int  # the patient's row: two studies of one patient count once
    name: str  # "DOE JANE"
    date: str  # "2026-03-20"

    @property
    def words(self) -> str:
        return f"{self.name} {self.date}".strip()


def describe(box: Box, jobs: list[Job]) -> dict[int, str]:
    """Each job's id -> what it works on ("" when its payload does not say)."""
    named = {job.id: _named_uids(job) for job in jobs}
    uids = {word for words, _ in named.values() for word in words if _is_uid(word)}
    studies = _studies_of(box, uids)
    return {job.id: _text(job, *named[job.id], studies) for job in jobs}


def _named_uids(job: Job) -> tuple[list[str], bool]:
    """The words naming what the job works on, and whether they are its items."""
    payload = job.payload
    label = str(payload.get("label") or payload.get("group") or "")
    items = payload.get("items") or []
    if label.strip() or not items or not all(isinstance(i, str) and _is_uid(i) for i in items):
        return label.split(), False
    # No label: a print names its studies, series or images as its items only.
    where = str(payload.get("printer") or payload.get("remote") or "")
    return [*([where] if where else []), *items], True


def _text(job: Job, words: list[str], from_items: bool, studies: dict[str, Study]) -> str:
    others = [w for w in words if not _is_uid(w)]
    uids = [w for w in words if _is_uid(w)]
    parts = [*others, _summary(uids, studies)]
    items = job.payload.get("items") or []
    named = set(uids)
    if items and not from_items and not all(isinstance(i, str) and i in named for i in items):
        noun = ITEM_NOUNS.get(job.kind, "item")
        parts.append(f"({len(items)} {noun}{'' if len(items) == 1 else 's'})")
    return " ".join(p for p in parts if p)


def _summary(uids: list[str], studies: dict[str, Study]) -> str:
    """One study by its patient and date; several summed up."""
    found = list({studies[u].uid: studies[u] for u in uids if u in studies}.values())
    unknown = list(dict.fromkeys(u for u in uids if u not in studies))
    count = len(found) + len(unknown)
    if count <= 1:
        return found[0].words if found else "".join(unknown)
    patients = len({s.patient for s in found})
    if patients == 1 and not unknown:
        return f"{found[0].name}: {count} studies"
    gone = f" ({len(unknown)} not stored)" if unknown else ""
    return f"{count} studies, {patients} patient{'' if patients == 1 else 's'}{gone}"


def _studies_of(box: Box, uids: set[str]) -> dict[str, Study]:
    """Study, series or SOP Instance UID -> the study it belongs to."""
    if not uids:
        return {}
    p, st, se, i = schema.patients, schema.studies, schema.series, schema.instances
    columns = (st.c.study_instance_uid, st.c.patient_pk, p.c.patient_name, st.c.study_date)
    studies = st.join(p, st.c.patient_pk == p.c.id)
    levels = (
        (st.c.study_instance_uid, studies),
        (se.c.series_instance_uid, se.join(studies, se.c.study_pk == st.c.id)),
        (i.c.sop_instance_uid, i.join(se, i.c.series_pk == se.c.id).join(
            studies, se.c.study_pk == st.c.id)),
    )  # fmt: skip
    found: dict[str, Study] = {}
    with box.index.engine.connect() as conn:
        for key, joined in levels:
            for chunk in _chunks(sorted(uids - set(found))):
                query = select(key.label("key"), *columns).select_from(joined)
                for row in conn.execute(query.where(key.in_(chunk))):
                    found[row.key] = Study(
                        row.study_instance_uid,
                        row.patient_pk,
                        _name(row.patient_name),
                        _date(row.study_date),
                    )
    return found


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _is_uid(text: Any) -> bool:
    return (
        isinstance(text, str)
        and len(text) > 8
        and text.count(".") >= 2
        and text.replace(".", "").isdigit()
    )


def _name(text: str | None) -> str:
    return " ".join(str(text or "?").split("=")[0].replace("^", " ").split())


def _date(text: str | None) -> str:
    text = str(text or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 else text
