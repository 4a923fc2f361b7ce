"""Coercion from the worklist: an arriving instance that belongs to a worklist item gets
the item's patient and order data (seed 004's mapping table), the replaced values kept
in Original Attributes Sequence by the core.

The item is found by the keys of ``[worklist] coerce_by``, in order: the Accession
Number, the Study Instance UID, or the Patient ID with the SPS ID of the instance's
Request Attributes Sequence. Values the item leaves empty never blank the instance's.
"""

from __future__ import annotations

import time
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import and_, or_, select

from dicombox.core.box import Box
from dicombox.core.coercion import Coercion
from dicombox.core.header import value_of
from dicombox.plugins.worklist.items import item_dataset
from dicombox.plugins.worklist.tables import worklist_items

# Item attribute -> instance attribute, replaced when the item has a value.
REPLACED = {
    "PatientName": "PatientName",
    "PatientID": "PatientID",
    "IssuerOfPatientID": "IssuerOfPatientID",
    "PatientBirthDate": "PatientBirthDate",
    "PatientSex": "PatientSex",
    "OtherPatientIDs": "OtherPatientIDs",
    "OtherPatientNames": "OtherPatientNames",
    "AccessionNumber": "AccessionNumber",
    "ReferringPhysicianName": "ReferringPhysicianName",
    "StudyInstanceUID": "StudyInstanceUID",
}
# Set only where the instance has none ("default for" in the mapping table). SPS ones
# come from the Scheduled Procedure Step item.
DEFAULTS = {
    "RequestedProcedureID": "StudyID",
    "RequestedProcedureCodeSequence": "ProcedureCodeSequence",
    "AdmittingDiagnosesDescription": "AdmittingDiagnosesDescription",
    "PatientAge": "PatientAge",
    "PatientSize": "PatientSize",
    "PatientWeight": "PatientWeight",
    "MedicalAlerts": "MedicalAlerts",
    "Allergies": "Allergies",
    "SmokingStatus": "SmokingStatus",
    "AdditionalPatientHistory": "AdditionalPatientHistory",
    "PregnancyStatus": "PregnancyStatus",
    "LastMenstrualDate": "LastMenstrualDate",
    "AdmissionID": "AdmissionID",
}
SPS_DEFAULTS = {
    "ScheduledStationAETitle": "PerformedStationAETitle",
    "ScheduledPerformingPhysicianName": "PerformingPhysicianName",
    "ScheduledProcedureStepDescription": "PerformedProcedureStepDescription",
    "ScheduledProtocolCodeSequence": "PerformedProtocolCodeSequence",
    "ScheduledProcedureStepID": "PerformedProcedureStepID",
    "ScheduledProcedureStepLocation": "PerformedLocation",
}
REQUEST_ATTRIBUTES = (
    "RequestedProcedureID",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureDescription",
    "RequestedProcedureCodeSequence",
)
STEP_IN_REQUEST = (
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
    "ScheduledProtocolCodeSequence",
)


def _present(value: Any) -> bool:
    return value not in (None, "", [])


def _keys(ds: Any, coerce_by: list[str]) -> list[tuple[str, Any]]:
    """(name, SQL condition) for each usable lookup key of the instance, in order."""
    t = worklist_items
    keys: list[tuple[str, Any]] = []
    for key in coerce_by:
        if key == "accession" and (accession := value_of(ds, "AccessionNumber")):
            keys.append((key, t.c.accession_number == accession))
        elif key == "study_uid" and (study := value_of(ds, "StudyInstanceUID")):
            keys.append((key, t.c.study_instance_uid == study))
        elif key == "patient_sps":
            patient = value_of(ds, "PatientID")
            request = ds.get("RequestAttributesSequence") or []
            step = str(request[0].get("ScheduledProcedureStepID", "")) if request else ""
            if patient and step:
                keys.append(
                    (key, and_(t.c.patient_id == patient, t.c.scheduled_procedure_step_id == step))
                )
    return keys


# Whether a database holds any worklist item, looked up at most every few seconds: most
# instances of a box without a worklist then cost no query at all.
_HAS_ITEMS_TTL_S = 5.0
_has_items: dict[int, tuple[float, bool]] = {}


def _worklist_in_use(box: Box) -> bool:
    key, now = id(box.index.engine), time.monotonic()
    checked = _has_items.get(key)
    if checked is None or now - checked[0] > _HAS_ITEMS_TTL_S:
        with box.index.engine.connect() as conn:
            found = conn.execute(select(worklist_items.c.id).limit(1)).first() is not None
        checked = _has_items[key] = (now, found)
    return checked[1]


def find_item(box: Box, ds: Any, coerce_by: list[str]) -> Dataset | None:
    """The instance's worklist item: one query for all keys, the first key that finds an
    item wins; a scheduled item before a retired one, the newest first."""
    if not _worklist_in_use(box):
        return None
    keys = _keys(ds, coerce_by)
    if not keys:
        return None
    t = worklist_items
    with box.index.engine.connect() as conn:
        rows = conn.execute(
            select(t)
            .where(or_(*(condition for _, condition in keys)))
            .order_by(t.c.state.desc(), t.c.updated_at.desc())
        ).all()
    for name, _ in keys:
        for row in rows:
            if _found_by(name, row, ds):
                return item_dataset(row)
    return None


def _found_by(name: str, row: Any, ds: Any) -> bool:
    if name == "accession":
        return bool(row.accession_number) and row.accession_number == value_of(
            ds, "AccessionNumber"
        )
    if name == "study_uid":
        return row.study_instance_uid == value_of(ds, "StudyInstanceUID")
    return row.patient_id == value_of(ds, "PatientID")


def coercion_for(item: Dataset) -> Coercion:
    step = item.ScheduledProcedureStepSequence[0]
    changes = {to: item.get(frm) for frm, to in REPLACED.items() if _present(item.get(frm))}
    request = Dataset()
    for keyword in REQUEST_ATTRIBUTES:
        if _present(item.get(keyword)):
            setattr(request, keyword, item.get(keyword))
    for keyword in STEP_IN_REQUEST:
        if _present(step.get(keyword)):
            setattr(request, keyword, step.get(keyword))
    changes["RequestAttributesSequence"] = [request]
    defaults = {to: item.get(frm) for frm, to in DEFAULTS.items() if _present(item.get(frm))}
    defaults.update(
        {to: step.get(frm) for frm, to in SPS_DEFAULTS.items() if _present(step.get(frm))}
    )
    label = item.get("AccessionNumber") or item.get("RequestedProcedureID") or "?"
    return Coercion(
        {k: _plain(v) for k, v in changes.items()},
        f"worklist item {label}",
        {k: _plain(v) for k, v in defaults.items()},
    )


def _plain(value: Any) -> Any:
    """Values as setattr takes them: text for person names, lists for sequences."""
    if type(value).__name__ == "PersonName":
        return str(value)
    if type(value).__name__ == "Sequence":
        return list(value)
    return value
