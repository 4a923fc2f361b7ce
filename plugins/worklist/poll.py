"""MWL SCU: the broad worklist query to the RIS, and the cache it refreshes.

Asked at ``interval_s`` by the supervisor and on demand (``dicombox worklist refresh``),
with every return key of seed 004's table. A poll that does not end in success (RIS
down, an association that breaks, a failure status) changes nothing in the cache; items
the box cannot use (no SPS sequence, an unknown character set) are left out and named.
Items of the date window the RIS no longer returns are retired.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from dicombox.core.box import Box
from dicombox.core.net.requestor import associate
from dicombox.plugins.worklist.items import (
    BadItem,
    item_key,
    retire_missing,
    save_items,
    split_steps,
)
from dicombox.plugins.worklist.settings import WorklistSection
from dicombox.plugins.worklist.tables import ensure_tables

log = logging.getLogger("dicombox.worklist")

MWL_FIND = "1.2.840.10008.5.1.4.31"

# Return keys of seed 004's table (and seed 002's), asked for empty.
RETURN_KEYS = (
    "StudyDate", "StudyTime", "StudyInstanceUID", "RequestedProcedureDescription",
    "RequestedProcedureID", "ReasonForTheRequestedProcedure", "RequestedProcedurePriority",
    "PatientTransportArrangements", "ConfidentialityCode", "ReportingPriority",
    "NamesOfIntendedRecipientsOfResults", "RequestedProcedureComments", "AccessionNumber",
    "ReferringPhysicianName", "RequestingPhysician", "RequestingService",
    "IssueDateOfImagingServiceRequest", "IssueTimeOfImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "OrderEnteredBy", "OrderEntererLocation",
    "OrderCallbackPhoneNumber", "ImagingServiceRequestComments", "AdmissionID",
    "IssuerOfAdmissionID", "InstitutionName", "InstitutionAddress", "CurrentPatientLocation",
    "AdmittingDiagnosesDescription", "AdmittingDate", "PatientName", "PatientID",
    "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge", "PatientSize",
    "PatientWeight", "PatientAddress", "MilitaryRank", "BranchOfService", "EthnicGroup",
    "PatientComments", "MedicalAlerts", "Allergies", "PregnancyStatus", "SmokingStatus",
    "LastMenstrualDate", "AdditionalPatientHistory", "SpecialNeeds",
)  # fmt: skip
SEQUENCE_KEYS = (
    "ReferencedStudySequence",
    "RequestedProcedureCodeSequence",
    "PatientInsurancePlanCodeSequence",
)
SPS_RETURN_KEYS = (
    "ScheduledProcedureStepStartTime", "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime", "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription", "ScheduledProcedureStepID",
    "CommentsOnTheScheduledProcedureStep",
)  # fmt: skip


class PollFailed(Exception):
    """The RIS could not be asked, or did not answer with success: the cache is as it was."""


@dataclass
class PollResult:
    at: float = 0.0
    received: int = 0
    added: int = 0
    updated: int = 0
    retired: int = 0
    left_out: list[str] = field(default_factory=list)  # why each unusable item was skipped
    error: str = ""

    @property
    def summary(self) -> str:
        if self.error:
            return f"poll failed: {self.error}"
        text = (
            f"{self.received} items from the RIS: {self.added} new, {self.updated} refreshed, "
            f"{self.retired} retired"
        )
        if self.left_out:
            text += f", {len(self.left_out)} left out ({self.left_out[0]})"
        return text


def window(settings: WorklistSection, today: date) -> tuple[str, str]:
    first = today - timedelta(days=settings.days_back)
    last = today + timedelta(days=settings.days_ahead)
    return first.strftime("%Y%m%d"), last.strftime("%Y%m%d")


def broad_query(settings: WorklistSection, box_ae: str, today: date) -> Dataset:
    first, last = window(settings, today)
    step = Dataset()
    step.ScheduledStationAETitle = settings.station_ae or box_ae
    step.Modality = settings.modality
    step.ScheduledProcedureStepStartDate = f"{first}-{last}"
    step.ScheduledStationName = settings.station_name
    step.ScheduledProcedureStepLocation = settings.location
    step.ScheduledProcedureStepStatus = settings.status
    for keyword in SPS_RETURN_KEYS:
        setattr(step, keyword, None)
    step.ScheduledProtocolCodeSequence = []
    query = Dataset()
    query.ScheduledProcedureStepSequence = [step]
    for keyword in RETURN_KEYS:
        setattr(query, keyword, None)  # empty: return it
    for keyword in SEQUENCE_KEYS:
        setattr(query, keyword, [])
    return query


def _check_charset(item: Dataset) -> None:
    terms = item.get("SpecificCharacterSet") or []
    for term in [terms] if isinstance(terms, str) else list(terms):
        if str(term).strip() not in python_encoding:
            raise BadItem(f"unknown Specific Character Set {term!r}")


def poll(box: Box, settings: WorklistSection, today: date | None = None) -> PollResult:
    """Ask the RIS once; raises ``PollFailed`` with the cache untouched."""
    remote = box.config.remote_named(settings.ris)
    if remote is None:
        raise PollFailed(f"[worklist] ris = {settings.ris!r} is no [[remote]]")
    today = today or date.today()
    assoc = associate(box.config, remote, [MWL_FIND])
    if assoc is None:
        raise PollFailed(
            f"cannot associate with the RIS {remote.name} ({remote.host}:{remote.port})"
        )
    answers: list[Dataset] = []
    final = None
    try:
        for status, identifier in assoc.send_c_find(
            broad_query(settings, box.config.box.ae_title, today), MWL_FIND
        ):
            if status and status.Status in (0xFF00, 0xFF01) and identifier is not None:
                answers.append(identifier)
            else:
                final = status.Status if status else None
    finally:
        if assoc.is_established:
            assoc.release()
    if final != 0x0000:
        raise PollFailed(
            f"the RIS {remote.name} ended the query with "
            + ("no answer" if final is None else f"status 0x{final:04X}")
        )
    result = PollResult(at=time.time(), received=len(answers))
    usable: list[Dataset] = []
    for n, answer in enumerate(answers, start=1):
        try:
            _check_charset(answer)
            usable += split_steps(answer)
        except BadItem as exc:
            result.left_out.append(f"item {n}: {exc}")
    ensure_tables(box.index.engine)
    try:
        saved = save_items(box.index.engine, usable, "ris")
    except BadItem as exc:
        raise PollFailed(f"an item cannot be stored: {exc}") from None
    result.added, result.updated = saved.added, saved.updated

    result.retired = retire_missing(
        box.index.engine, {item_key(i) for i in usable}, *window(settings, today)
    )
    return result


def poll_and_report(box: Box, settings: WorklistSection) -> PollResult:
    """Poll, log, announce, and keep the outcome for ``dicombox status``."""
    try:
        result = poll(box, settings)
    except PollFailed as exc:
        result = PollResult(at=time.time(), error=str(exc))
        log.warning("worklist %s", result.summary)
        box.bus.publish("worklist.poll_failed", error=result.error)
    else:
        for why in result.left_out:
            log.warning("worklist item left out: %s", why)
        log.info("worklist: %s", result.summary)
        box.bus.publish(
            "worklist.polled",
            received=result.received,
            added=result.added,
            retired=result.retired,
            left_out=len(result.left_out),
        )
    _last_poll_file(box).write_text(json.dumps(asdict(result)))
    return result


def _last_poll_file(box: Box) -> Path:
    return box.config.data_dir / "run" / "worklist-poll.json"


def last_poll(box: Box) -> PollResult | None:
    path = _last_poll_file(box)
    if not path.exists():
        return None
    return PollResult(**json.loads(path.read_text()))
