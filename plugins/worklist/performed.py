"""What the modalities reported of each worklist item: the performed procedure steps
(MPPS) tied to it, their status, and the series they performed.

A step names the scheduled steps it performs in its Scheduled Step Attributes Sequence
(the ``mpps_steps`` rows). It is tied to a worklist item when every ID it gives there
(Accession Number, Requested Procedure ID, Scheduled Procedure Step ID) is the item's,
and its Study Instance UID is the item's too, or, since some modalities make a study
UID of their own, it gives the item's Accession Number. An item several steps performed
(one discontinued, then done again) is IN PROGRESS while one of them is, else COMPLETED
if one is, else DISCONTINUED.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from dicombox.core.index.attributes import text_value
from dicombox.plugins.worklist.mpps import COMPLETED, DISCONTINUED, IN_PROGRESS
from dicombox.plugins.worklist.tables import mpps, mpps_steps, worklist_items

_PRECEDENCE = (IN_PROGRESS, COMPLETED, DISCONTINUED)
# The [worklist] answer_performed names of the final states.
FINAL_NAMES = {"completed": COMPLETED, "discontinued": DISCONTINUED}
_CHUNK = 500  # item ids per query, well under SQLite's bound parameter limit


@dataclass(frozen=True)
class PerformedSeries:
    uid: str
    description: str
    images: int  # instances the step lists for it (images and other objects)


@dataclass
class Performed:
    """The performed procedure steps of one worklist item."""

    steps: list[dict[str, str]] = field(default_factory=list)
    series: list[PerformedSeries] = field(default_factory=list)

    @property
    def status(self) -> str:
        statuses = {step["status"] for step in self.steps}
        return next((s for s in _PRECEDENCE if s in statuses), "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "mpps": self.status,
            "series": [asdict(s) for s in self.series],
            "performed_steps": self.steps,
        }


def _given_is(given: ColumnElement[str], own: ColumnElement[str]) -> ColumnElement[bool]:
    """The step gives no value here (empty), or the item's. Written so that no index can
    serve it: the index lookups are left to the study UID or accession number match, not
    to "every step without an accession number"."""
    return func.coalesce(func.nullif(given, ""), own) == own


def _tied() -> ColumnElement[bool]:
    """A mpps_steps row names this worklist_items row (see the module's docstring)."""
    t, s = worklist_items.c, mpps_steps.c
    return and_(
        or_(
            s.study_instance_uid == t.study_instance_uid,
            and_(s.accession_number == t.accession_number, t.accession_number != ""),
        ),
        _given_is(s.accession_number, t.accession_number),
        _given_is(s.requested_procedure_id, t.requested_procedure_id),
        _given_is(s.scheduled_procedure_step_id, t.scheduled_procedure_step_id),
    )


def _series_of(step: Dataset) -> list[PerformedSeries]:
    found = []
    for series in step.get("PerformedSeriesSequence") or []:
        images = len(series.get("ReferencedImageSequence") or []) + len(
            series.get("ReferencedNonImageCompositeSOPInstanceSequence") or []
        )
        uid = text_value(series.get("SeriesInstanceUID"))
        found.append(PerformedSeries(uid, text_value(series.get("SeriesDescription")), images))
    return found


def _step(row: Any, step: Dataset) -> dict[str, str]:
    return {
        "uid": row.sop_instance_uid,
        "status": row.status,
        "calling_ae": row.calling_ae,
        "id": text_value(step.get("PerformedProcedureStepID")),
        "start": text_value(step.get("PerformedProcedureStepStartDate"))
        + text_value(step.get("PerformedProcedureStepStartTime")),
        "end": text_value(step.get("PerformedProcedureStepEndDate"))
        + text_value(step.get("PerformedProcedureStepEndTime")),
    }


def performed_by_item(conn: Connection, item_ids: Iterable[int]) -> dict[int, Performed]:
    """The performed procedure steps tied to each of these items (items that have none
    are left out), oldest step first."""
    ids = list(item_ids)
    found: dict[int, Performed] = {}
    for start in range(0, len(ids), _CHUNK):
        statement = (
            select(worklist_items.c.id.label("item_id"), mpps)
            .select_from(worklist_items)
            .join(mpps_steps, _tied())
            .join(mpps, mpps.c.id == mpps_steps.c.mpps_id)
            .where(worklist_items.c.id.in_(ids[start : start + _CHUNK]))
            .distinct()
            .order_by(mpps.c.created_at, mpps.c.id)
        )
        for row in conn.execute(statement).all():
            step = Dataset.from_json(json.loads(row.dataset))
            performed = found.setdefault(row.item_id, Performed())
            performed.steps.append(_step(row, step))
            known = {s.uid for s in performed.series}
            performed.series += [s for s in _series_of(step) if s.uid not in known]
    return found


def summary(series: list[dict[str, Any]]) -> str:
    """For a table cell: "2 series, 57 images", or "-" when none was reported."""
    if not series:
        return "-"
    return f"{len(series)} series, {sum(s['images'] for s in series)} images"


def answered(performed: Performed | None, answer_performed: Iterable[str]) -> bool:
    """Does the MWL SCP still answer an item with these steps? A COMPLETED or
    DISCONTINUED item only when [worklist] answer_performed names its state."""
    if performed is None or performed.status not in FINAL_NAMES.values():
        return True
    return performed.status in {FINAL_NAMES[name] for name in answer_performed}
