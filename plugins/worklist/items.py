"""Worklist items in the index: one row per Scheduled Procedure Step, its matching keys
as columns (decoded text) and the whole item as DICOM JSON."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import Engine, and_, select, update

from dicombox.core.index.attributes import text_value
from dicombox.core.index.engine import write_transaction
from dicombox.plugins.worklist.tables import worklist_items

SCHEDULED, RETIRED = "scheduled", "retired"

# column -> keyword; the SPS_ ones are read from the first Scheduled Procedure Step item.
TOP_COLUMNS = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
    "accession_number": "AccessionNumber",
    "referring_physician_name": "ReferringPhysicianName",
    "study_instance_uid": "StudyInstanceUID",
    "requested_procedure_id": "RequestedProcedureID",
    "requested_procedure_description": "RequestedProcedureDescription",
}
SPS_COLUMNS = {
    "scheduled_procedure_step_id": "ScheduledProcedureStepID",
    "scheduled_procedure_step_start_date": "ScheduledProcedureStepStartDate",
    "scheduled_procedure_step_start_time": "ScheduledProcedureStepStartTime",
    "modality": "Modality",
    "scheduled_station_ae_title": "ScheduledStationAETitle",
    "scheduled_station_name": "ScheduledStationName",
    "scheduled_procedure_step_location": "ScheduledProcedureStepLocation",
    "scheduled_performing_physician_name": "ScheduledPerformingPhysicianName",
    "scheduled_procedure_step_status": "ScheduledProcedureStepStatus",
}


class BadItem(ValueError):
    """A worklist item the box cannot use (no SPS sequence, unknown character set …)."""


@dataclass
class Saved:
    added: int = 0
    updated: int = 0


def split_steps(item: Dataset) -> list[Dataset]:
    """One item per Scheduled Procedure Step (a requested procedure may hold several)."""
    steps = item.get("ScheduledProcedureStepSequence")
    if not steps:
        raise BadItem("no Scheduled Procedure Step Sequence (0040,0100)")
    if len(steps) == 1:
        return [item]
    split = []
    for step in steps:
        one = Dataset()
        one.update(item)
        one.ScheduledProcedureStepSequence = [step]
        split.append(one)
    return split


def item_key(item: Dataset) -> str:
    step = item.ScheduledProcedureStepSequence[0]
    parts = (
        item.get("AccessionNumber", ""),
        item.get("RequestedProcedureID", ""),
        step.get("ScheduledProcedureStepID", ""),
        item.get("StudyInstanceUID", ""),
        item.get("PatientID", ""),
    )
    return "|".join(str(p or "") for p in parts)


def row_values(item: Dataset) -> dict[str, Any]:
    """The columns of an item; decoding its text here also proves its character set."""
    step = item.ScheduledProcedureStepSequence[0]
    try:
        values = {c: text_value(item.get(k)) for c, k in TOP_COLUMNS.items()}
        values.update({c: text_value(step.get(k)) for c, k in SPS_COLUMNS.items()})
        values["dataset"] = json.dumps(item.to_json_dict())
    except (LookupError, UnicodeError, ValueError) as exc:
        raise BadItem(f"text cannot be decoded: {exc}") from None
    return values


def save_items(engine: Engine, items: list[Dataset], source: str) -> Saved:
    """Insert new items, refresh known ones (a retired item that is back is scheduled)."""
    saved = Saved()
    now = time.time()
    t = worklist_items
    with write_transaction(engine) as conn:
        for item in items:
            key = item_key(item)
            values = {**row_values(item), "source": source, "state": SCHEDULED, "updated_at": now}
            found = conn.execute(select(t.c.id).where(t.c.item_key == key)).scalar()
            if found is None:
                conn.execute(t.insert().values(item_key=key, **values))
                saved.added += 1
            else:
                conn.execute(update(t).where(t.c.id == found).values(**values))
                saved.updated += 1
    return saved


def retire_missing(engine: Engine, seen: set[str], first_day: str, last_day: str) -> int:
    """RIS items of the polled date window the RIS no longer returns: retired (kept, no
    longer served), not deleted, so coercion and the audit can still name them."""
    t = worklist_items
    in_window = and_(
        t.c.source == "ris",
        t.c.state == SCHEDULED,
        t.c.scheduled_procedure_step_start_date >= first_day,
        t.c.scheduled_procedure_step_start_date <= last_day,
    )
    with write_transaction(engine) as conn:
        keys = conn.execute(select(t.c.id, t.c.item_key).where(in_window)).all()
        gone = [row.id for row in keys if row.item_key not in seen]
        if gone:
            conn.execute(
                update(t).where(t.c.id.in_(gone)).values(state=RETIRED, updated_at=time.time())
            )
    return len(gone)


def item_dataset(row: Any) -> Dataset:
    return Dataset.from_json(json.loads(row.dataset))
