"""From a data set to index rows: which DICOM keyword fills which column at which level."""

from __future__ import annotations

import json
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from dicombox.core.header import tag_of, value_of
from dicombox.core.index import schema


def _keyword(column: str) -> str:
    special = {
        "patient_id": "PatientID",
        "study_id": "StudyID",
        "sop_instance_uid": "SOPInstanceUID",
        "sop_class_uid": "SOPClassUID",
        "study_instance_uid": "StudyInstanceUID",
        "series_instance_uid": "SeriesInstanceUID",
        "issuer_of_patient_id": "IssuerOfPatientID",
        "other_patient_ids": "OtherPatientIDs",
        "performed_procedure_step_id": "PerformedProcedureStepID",
        "requested_procedure_id": "RequestedProcedureID",
        "scheduled_procedure_step_id": "ScheduledProcedureStepID",
        "timezone_offset_from_utc": "TimezoneOffsetFromUTC",
    }
    return special.get(column) or "".join(part.capitalize() for part in column.split("_"))


_BOOKKEEPING = {
    "id",
    "patient_pk",
    "study_pk",
    "series_pk",
    "created_at",
    "copy",
    "path",
    "size",
    "calling_ae",
    "availability",
    "received_at",
    "transfer_syntax_uid",
    "extra",
}
# Attributes that live in the Request Attributes Sequence of a series' instances.
_FROM_REQUEST_ATTRIBUTES = {"requested_procedure_id", "scheduled_procedure_step_id"}


def _columns(table: Any) -> dict[str, str]:
    return {c.name: _keyword(c.name) for c in table.columns if c.name not in _BOOKKEEPING}


LEVEL_COLUMNS = {
    "patient": _columns(schema.patients),
    "study": _columns(schema.studies),
    "series": _columns(schema.series),
    "instance": _columns(schema.instances),
}
_INTEGER_COLUMNS = {"number_of_frames", "rows", "columns"}

# Return keys of the conformance target's query tables that nobody matches on: kept per
# level as DICOM JSON in the ``extra`` column, so C-FIND can return them without the file.
RETURN_ONLY = {
    "patient": (
        "MilitaryRank",
        "PatientAddress",
        "MedicalAlerts",
        "Allergies",
        "SmokingStatus",
        "PregnancyStatus",
        "LastMenstrualDate",
        "SpecialNeeds",
        "PatientBirthName",
        "PatientMotherBirthName",
        "ConfidentialityConstraintOnPatientDataDescription",
    ),
    "study": ("PatientInstitutionResidence", "AdmissionID", "AdditionalPatientHistory"),
    "series": (
        "PatientPosition",
        "FrameOfReferenceUID",
        "DeviceSerialNumber",
        "SeriesType",
        "CountsSource",
        "CorrectedImage",
        "Units",
        "RequestAttributesSequence",
    ),
    "instance": (
        "InstanceCreationDate",
        "InstanceCreationTime",
        "AcquisitionDateTime",
        "ImageComments",
        "SpecificCharacterSet",
        "ConceptNameCodeSequence",
        "ReferencedRequestSequence",
        "ContrastBolusAgentSequence",
        "CTExposureSequence",
    ),
}


def text_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(text_value(v) for v in value)
    return str(value).strip()


def level_values(ds: Dataset, level: str) -> dict[str, Any]:
    """The column values of one level's row, read from the data set."""
    values: dict[str, Any] = {}
    request = ds.get("RequestAttributesSequence") if level == "series" else None
    if not isinstance(request, Sequence):  # a wrong VR makes text or a number of it
        request = None
    for column, keyword in LEVEL_COLUMNS[level].items():
        source = request[0] if column in _FROM_REQUEST_ATTRIBUTES and request else ds
        raw = value_of(source, keyword)
        if column in _INTEGER_COLUMNS:
            try:
                values[column] = int(raw or 0)
            except (TypeError, ValueError):
                values[column] = 0
        else:
            values[column] = text_value(raw)
    if "extra" in level_table(level).columns:
        values["extra"] = _extra_json(ds, RETURN_ONLY[level])
    return values


def level_table(level: str) -> Any:
    return {
        "patient": schema.patients,
        "study": schema.studies,
        "series": schema.series,
        "instance": schema.instances,
    }[level]


def _extra_json(ds: Dataset, keywords: tuple[str, ...]) -> str:
    subset: dict[str, Any] = {}
    present = ds.keys()
    for keyword in keywords:
        tag = tag_of(keyword)
        if tag not in present:
            continue
        try:
            element = ds[tag]
            subset[f"{element.tag:08X}"] = element.to_json_dict(None, 1024)
        except Exception:
            # A received value its VR cannot express (values are stored unchecked): C-FIND
            # does not return it, and the instance is indexed all the same.
            continue
    return json.dumps(subset) if subset else "{}"


def _tags_of(keywords: set[str]) -> frozenset[int]:
    from pydicom.datadict import tag_for_keyword

    return frozenset(t for t in (tag_for_keyword(k) for k in keywords) if t is not None)


# Every top-level element the index reads: what a header scan must keep.
INDEXED_TAGS = _tags_of(
    {keyword for columns in LEVEL_COLUMNS.values() for keyword in columns.values()}
    | {keyword for keywords in RETURN_ONLY.values() for keyword in keywords}
    | {
        "SpecificCharacterSet",
        "RequestAttributesSequence",
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    }
)
