"""De-identification of instances on media export (DICOM PS3.15 Annex E).

One ``Deidentifier`` serves one export: every UID it replaces maps to the same new UID for
every instance it sees, so studies, series, frames of reference and references between
instances (``ReferencedSOPInstanceUID`` in any sequence) stay consistent on the medium.

Levels:

``none``
    The data set is returned untouched.
``basic``
    The Basic Application Level Confidentiality Profile (PS3.15 E.1) with no options, as a
    compact action table for the most common attributes of Table E.1-1 (``_ACTIONS``; a
    documented *subset*, not the whole table): names, IDs, addresses, telephone numbers,
    institution and department, physicians, operators, stations and device serial numbers,
    comments and descriptions, visit/order/procedure-step attributes, study and acquisition
    dates and times, age/sex/size/weight. In addition, everywhere (nested sequences too):
    private elements are removed; curves (50xx) and overlays (60xx) are removed; every
    instance UID (any UI element except SOP Class, Transfer Syntax, coding-scheme and
    well-known DICOM UIDs) is replaced by ``2.25.<uuid5>`` under a namespace drawn at random
    for this Deidentifier. Patient Name and Patient ID become the constructor's values.
    PatientIdentityRemoved = YES, DeidentificationMethod and
    DeidentificationMethodCodeSequence (DCM 113100) are set.
``full``
    ``basic``, then everything the table does not name that can carry identity is also
    cleared: every remaining date, time and date-time is emptied, every remaining person
    name is emptied and every remaining free text (ST, LT, UT) is removed (e.g. RT Plan Date,
    Setup Technique Description).
``reduced``
    ``basic`` with the Retain Longitudinal Temporal Information with Full Dates option
    (DCM 113106: every date/time kept except the patient's birth date and time) and the
    Retain Patient Characteristics option (DCM 113108: age, sex, size, weight, ethnic group,
    smoking and pregnancy status, allergies and alerts kept).
``service``
    For sending data to a service engineer: only the patient's identity is replaced
    (Patient Name, Patient ID, birth date emptied, other patient IDs/names removed, and the
    Issuer of Patient ID removed since it did not issue the new ID). Everything else is kept,
    UIDs included, so PatientIdentityRemoved is set to NO.

Pixel data is never touched: identity burned into the pixels (ultrasound, screenshots,
scanned documents) is out of scope, and BurnedInAnnotation is left as it is; callers that
must not export such images should filter on it.

Why no library: of the libraries available, ``dicognito`` replaces names and IDs with random
plausible values, shifts every date and keeps private elements and most other Table E.1-1
attributes (device serials, comments, descriptions), with no switch for the profile's
options; ``deid`` ships a site-specific recipe that deletes every UID element (invalid
objects) and pulls in matplotlib. Bending either to the profile would take a hand-written
table anyway, so this module is that table on top of pydicom.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

LEVELS = ("none", "basic", "full", "reduced", "service")

# Actions of PS3.15 Table E.1-1. Compound actions are resolved once here, without IOD
# knowledge: X/Z -> Z (an empty Type 2 element is always valid), anything with D -> D (the
# element may be Type 1 somewhere, and a dummy is no more identifying than nothing).
REMOVE = "X"
EMPTY = "Z"
DUMMY = "D"
PATIENT_NAME = "P"  # not a PS3.15 action: the export's chosen name / ID go in
PATIENT_ID = "I"

_ACTIONS: dict[str, str] = {
    # Patient identity
    "PatientName": PATIENT_NAME,
    "PatientID": PATIENT_ID,
    "IssuerOfPatientID": REMOVE,
    "IssuerOfPatientIDQualifiersSequence": REMOVE,
    "OtherPatientIDs": REMOVE,
    "OtherPatientIDsSequence": REMOVE,
    "OtherPatientNames": REMOVE,
    "PatientBirthName": REMOVE,
    "PatientMotherBirthName": REMOVE,
    "PatientBirthDate": EMPTY,
    "PatientBirthTime": REMOVE,
    "PatientBirthDateInAlternativeCalendar": REMOVE,
    "PatientDeathDateInAlternativeCalendar": REMOVE,
    "PatientAlternativeCalendar": REMOVE,
    "PatientAddress": REMOVE,
    "PatientTelephoneNumbers": REMOVE,
    "PatientTelecomInformation": REMOVE,
    "CountryOfResidence": REMOVE,
    "RegionOfResidence": REMOVE,
    "PatientInsurancePlanCodeSequence": REMOVE,
    "PatientReligiousPreference": REMOVE,
    "PatientComments": REMOVE,
    "Occupation": REMOVE,
    "MilitaryRank": REMOVE,
    "BranchOfService": REMOVE,
    "MedicalRecordLocator": REMOVE,
    "ResponsiblePerson": REMOVE,
    "ResponsibleOrganization": REMOVE,
    "PatientInstitutionResidence": REMOVE,
    "CurrentPatientLocation": REMOVE,
    "PatientTransportArrangements": REMOVE,
    "ReferencedPatientSequence": REMOVE,
    "ReferencedPatientPhotoSequence": REMOVE,
    "AdditionalPatientHistory": REMOVE,
    "LastMenstrualDate": REMOVE,
    # Patient characteristics (kept by the Retain Patient Characteristics option)
    "PatientSex": EMPTY,
    "PatientAge": REMOVE,
    "PatientSize": REMOVE,
    "PatientWeight": REMOVE,
    "EthnicGroup": REMOVE,
    "SmokingStatus": REMOVE,
    "PregnancyStatus": REMOVE,
    "Allergies": REMOVE,
    "MedicalAlerts": REMOVE,
    "SpecialNeeds": REMOVE,
    "PatientState": REMOVE,
    "PatientSexNeutered": EMPTY,
    "PreMedication": REMOVE,
    # Study, visit, order and procedure step
    "AccessionNumber": EMPTY,
    "StudyID": EMPTY,
    "StudyDate": EMPTY,
    "StudyTime": EMPTY,
    "SeriesDate": REMOVE,
    "SeriesTime": REMOVE,
    "AcquisitionDate": EMPTY,
    "AcquisitionTime": EMPTY,
    "AcquisitionDateTime": DUMMY,
    "ContentDate": DUMMY,
    "ContentTime": DUMMY,
    "InstanceCreationDate": REMOVE,
    "InstanceCreationTime": REMOVE,
    "TimezoneOffsetFromUTC": REMOVE,
    "StudyDescription": REMOVE,
    "SeriesDescription": REMOVE,
    "ProtocolName": DUMMY,
    "ReasonForStudy": REMOVE,
    "StudyComments": REMOVE,
    "ImageComments": REMOVE,
    "DerivationDescription": REMOVE,
    "AdmissionID": REMOVE,
    "AdmittingDiagnosesDescription": REMOVE,
    "AdmittingDiagnosesCodeSequence": REMOVE,
    "VisitComments": REMOVE,
    "PlacerOrderNumberImagingServiceRequest": EMPTY,
    "FillerOrderNumberImagingServiceRequest": EMPTY,
    "OrderEnteredBy": REMOVE,
    "OrderEntererLocation": REMOVE,
    "OrderCallbackPhoneNumber": REMOVE,
    "RequestAttributesSequence": REMOVE,
    "RequestedProcedureDescription": EMPTY,
    "RequestedProcedureID": REMOVE,
    "RequestingService": EMPTY,
    "ScheduledProcedureStepDescription": REMOVE,
    "ScheduledProcedureStepID": REMOVE,
    "PerformedProcedureStepDescription": REMOVE,
    "PerformedProcedureStepID": REMOVE,
    "PerformedProcedureStepStartDate": REMOVE,
    "PerformedProcedureStepStartTime": REMOVE,
    "PerformedProcedureStepEndDate": REMOVE,
    "PerformedProcedureStepEndTime": REMOVE,
    "ReferencedStudySequence": EMPTY,
    "ReferencedPerformedProcedureStepSequence": EMPTY,
    "ContentSequence": REMOVE,
    # Physicians, operators, observers
    "ReferringPhysicianName": EMPTY,
    "ReferringPhysicianAddress": REMOVE,
    "ReferringPhysicianTelephoneNumbers": REMOVE,
    "ReferringPhysicianIdentificationSequence": REMOVE,
    "ConsultingPhysicianName": REMOVE,
    "PerformingPhysicianName": REMOVE,
    "PerformingPhysicianIdentificationSequence": REMOVE,
    "NameOfPhysiciansReadingStudy": REMOVE,
    "PhysiciansReadingStudyIdentificationSequence": REMOVE,
    "PhysiciansOfRecord": REMOVE,
    "PhysiciansOfRecordIdentificationSequence": REMOVE,
    "RequestingPhysician": REMOVE,
    "RequestingPhysicianIdentificationSequence": REMOVE,
    "ScheduledPerformingPhysicianName": REMOVE,
    "ScheduledPerformingPhysicianIdentificationSequence": REMOVE,
    "PhysicianApprovingInterpretation": REMOVE,
    "OperatorsName": EMPTY,
    "OperatorIdentificationSequence": REMOVE,
    "VerifyingObserverName": DUMMY,
    "VerifyingObserverIdentificationCodeSequence": EMPTY,
    "VerifyingOrganization": REMOVE,
    "PersonName": DUMMY,
    "ContentCreatorName": EMPTY,
    "HumanPerformerName": REMOVE,
    "HumanPerformerOrganization": REMOVE,
    "ReviewerName": REMOVE,
    "EvaluatorName": REMOVE,
    "AuthorObserverSequence": REMOVE,
    "ParticipantSequence": REMOVE,
    "NamesOfIntendedRecipientsOfResults": REMOVE,
    # Institution, station, device
    "InstitutionName": EMPTY,
    "InstitutionAddress": REMOVE,
    "InstitutionCodeSequence": EMPTY,
    "InstitutionalDepartmentName": REMOVE,
    "StationName": EMPTY,
    "DeviceSerialNumber": DUMMY,
    "DeviceDescription": REMOVE,
    "GantryID": REMOVE,
    "DetectorID": DUMMY,
    "PlateID": REMOVE,
    "CassetteID": REMOVE,
    "GeneratorID": REMOVE,
    "SourceSerialNumber": REMOVE,
    "PerformedStationName": EMPTY,
    "PerformedStationAETitle": REMOVE,
    "PerformedLocation": REMOVE,
    "ScheduledStationName": REMOVE,
    "ScheduledStationAETitle": REMOVE,
    "ScheduledStudyLocation": REMOVE,
    "ScheduledStudyLocationAETitle": REMOVE,
    # Provenance and integrity data that would leak the original values
    "OriginalAttributesSequence": REMOVE,
    "ModifiedAttributesSequence": REMOVE,
    "DigitalSignaturesSequence": REMOVE,
    "MACParametersSequence": REMOVE,
    "EncryptedAttributesSequence": REMOVE,
    "DataSetTrailingPadding": REMOVE,
}

# The Retain Patient Characteristics option's "K" column.
_PATIENT_CHARACTERISTICS = frozenset(
    {
        "PatientSex",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "EthnicGroup",
        "SmokingStatus",
        "PregnancyStatus",
        "Allergies",
        "MedicalAlerts",
        "SpecialNeeds",
        "PatientState",
        "PatientSexNeutered",
        "PreMedication",
    }
)

# The Retain Longitudinal Temporal Information option keeps dates of events, not of birth.
_BIRTH_DATES = frozenset({"PatientBirthDate", "PatientBirthTime"})
_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
_FREE_TEXT_VRS = frozenset({"ST", "LT", "UT"})

# Identifiers of coding schemes and mapping resources name registries, not instances.
_KEPT_UID_KEYWORDS = frozenset({"CodingSchemeUID", "MappingResourceUID", "ContextUID"})

_SERVICE_ACTIONS: dict[str, str] = {
    "PatientName": PATIENT_NAME,
    "PatientID": PATIENT_ID,
    "PatientBirthDate": EMPTY,
    "OtherPatientIDs": REMOVE,
    "OtherPatientIDsSequence": REMOVE,
    "OtherPatientNames": REMOVE,
    "IssuerOfPatientID": REMOVE,
    "IssuerOfPatientIDQualifiersSequence": REMOVE,
}

_DUMMIES = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS"}
_DUMMY_TEXT = "ANONYMIZED"

_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
_RETAIN_FULL_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
_RETAIN_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")


@dataclass(frozen=True)
class _Profile:
    """What a level does, as switches over the one walk of the data set."""

    actions: dict[int, str]
    remap_uids: bool
    strip_private: bool
    retain_dates: bool
    retain_characteristics: bool
    sweep: bool  # the "full" clean-up of what the table does not name
    method: str
    codes: tuple[tuple[str, str], ...]


def _by_tag(actions: dict[str, str], drop: frozenset[str] = frozenset()) -> dict[int, str]:
    table = {}
    for keyword, action in actions.items():
        if keyword in drop:
            continue
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{keyword} is not a DICOM keyword")
        table[tag] = action
    return table


def _profile(level: str) -> _Profile | None:
    if level == "none":
        return None
    if level == "service":
        return _Profile(
            _by_tag(_SERVICE_ACTIONS),
            remap_uids=False,
            strip_private=False,
            retain_dates=False,
            retain_characteristics=False,
            sweep=False,
            method="dicombox service: patient name, ID, birth date replaced",
            codes=(),
        )
    reduced = level == "reduced"
    return _Profile(
        _by_tag(_ACTIONS, drop=_PATIENT_CHARACTERISTICS if reduced else frozenset()),
        remap_uids=True,
        strip_private=True,
        retain_dates=reduced,
        retain_characteristics=reduced,
        sweep=level == "full",
        method=f"dicombox {level}: PS3.15 E.1 Basic Profile (subset table)",
        codes=(_BASIC_PROFILE, _RETAIN_FULL_DATES, _RETAIN_CHARACTERISTICS)
        if reduced
        else (_BASIC_PROFILE,),
    )


def _is_curve_or_overlay(tag: int) -> bool:
    # Repeating groups 50xx (retired curves) and 60xx (overlays, which can hold burned text).
    group = tag >> 16
    return (0x5000 <= group <= 0x501E or 0x6000 <= group <= 0x601E) and group % 2 == 0


def _is_instance_uid(elem: DataElement) -> bool:
    # Class and transfer-syntax UIDs say what an object is, not whose it is.
    keyword = elem.keyword
    return not (
        "ClassUID" in keyword or "TransferSyntax" in keyword or keyword in _KEPT_UID_KEYWORDS
    )


def _dummy(vr: str) -> object:
    if vr == "SQ":
        return []
    return _DUMMIES.get(vr, _DUMMY_TEXT)


class Deidentifier:
    """One export's de-identification: UIDs remapped consistently across every instance it sees."""

    def __init__(
        self,
        level: str,
        patient_name: str = "ANONYMOUS",
        patient_id: str = "",
        key: bytes | None = None,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown de-identification level {level!r} (one of {LEVELS})")
        self.level = level
        self.patient_name = patient_name
        self.patient_id = patient_id
        self._profile = _profile(level)
        # A secret per export: new UIDs and hashed patient IDs stay consistent within it, but
        # nobody holding the originals can recompute them, and two exports are unlinkable.
        # An export that resumes (a burn job's retry) passes its key again.
        self._key = key or secrets.token_bytes(32)
        self._namespace = uuid.UUID(bytes=self._key[:16])
        self._uids: dict[str, str] = {}

    def apply(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place per the level, and return it."""
        profile = self._profile
        if profile is None:
            return ds
        self._walk(ds, profile)
        meta = getattr(ds, "file_meta", None)
        if profile.remap_uids and meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = self.new_uid(meta.MediaStorageSOPInstanceUID)
        self._mark(ds, profile)
        return ds

    def new_uid(self, uid: str) -> str:
        """The replacement for ``uid`` in this export (well-known DICOM UIDs are kept)."""
        uid = str(uid).strip("\0 ")
        if not uid or uid in UID_dictionary:
            return uid
        if uid not in self._uids:
            self._uids[uid] = f"2.25.{uuid.uuid5(self._namespace, uid).int}"
        return self._uids[uid]

    def new_patient_id(self, original: str) -> str:
        if self.patient_id:
            return self.patient_id
        digest = hmac.new(self._key, original.encode(), hashlib.sha256).hexdigest()
        return f"ANON-{digest[:16].upper()}"

    def _walk(self, ds: Dataset, profile: _Profile) -> None:
        # Every nesting level gets the same table: PS3.15 applies it wherever an attribute is.
        for tag in list(ds.keys()):
            elem = ds[tag]
            if profile.strip_private and (elem.tag.is_private or _is_curve_or_overlay(tag)):
                del ds[tag]
                continue
            action = self._action(elem, profile)
            if action == REMOVE:
                del ds[tag]
                continue
            if action is not None:
                self._act(elem, action)
            elif elem.VR == "UI" and profile.remap_uids and _is_instance_uid(elem):
                elem.value = self._map_values(elem.value, self.new_uid)
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item, profile)

    def _action(self, elem: DataElement, profile: _Profile) -> str | None:
        keyword = elem.keyword
        if profile.retain_dates and elem.VR in _TEMPORAL_VRS and keyword not in _BIRTH_DATES:
            return None
        action = profile.actions.get(int(elem.tag))
        if action is not None or not profile.sweep:
            return action
        if elem.VR in _TEMPORAL_VRS or elem.VR == "PN":
            return EMPTY
        if elem.VR in _FREE_TEXT_VRS:
            return REMOVE
        return None

    def _act(self, elem: DataElement, action: str) -> None:
        if action == PATIENT_NAME:
            elem.value = self.patient_name
        elif action == PATIENT_ID:
            elem.value = self.new_patient_id(str(elem.value or ""))
        elif action == EMPTY:
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == DUMMY:
            elem.value = Sequence() if elem.VR == "SQ" else _dummy(elem.VR)

    @staticmethod
    def _map_values(value: object, convert: Callable[[str], str]) -> object:
        if isinstance(value, MultiValue | list):
            return [convert(v) for v in value]
        return convert(value) if value else value

    def _mark(self, ds: Dataset, profile: _Profile) -> None:
        ds.PatientIdentityRemoved = "YES" if profile.codes else "NO"
        ds.DeidentificationMethod = self._appended(ds.get("DeidentificationMethod"), profile.method)
        if not profile.codes:
            return
        ds.LongitudinalTemporalInformationModified = (
            "UNMODIFIED" if profile.retain_dates else "REMOVED"
        )
        # A data set de-identified before keeps its earlier codes: they are its history.
        codes = list(ds.get("DeidentificationMethodCodeSequence") or [])
        codes += [_code(value, meaning) for value, meaning in profile.codes]
        ds.DeidentificationMethodCodeSequence = Sequence(codes)

    @staticmethod
    def _appended(existing: object, method: str) -> str | list[str]:
        if not existing:
            return method
        values = list(existing) if isinstance(existing, MultiValue | list) else [str(existing)]
        return values if method in values else [*values, method]


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
