"""The [worklist] configuration section."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorklistSection:
    """The worklist and MPPS plugin: polling the RIS, the MWL and MPPS SCPs, and
    correcting arriving images from their worklist item."""

    ris: str = ""
    """The `[[remote]]` to poll for the worklist; empty = no polling."""
    interval_s: float = 60.0
    """Time between polls (the first one at start); at least 5 seconds."""
    days_back: int = 1
    """The broad query's window on the SPS Start Date: days before today."""
    days_ahead: int = 1
    """The broad query's window on the SPS Start Date: days after today."""
    station_ae: str = ""
    """Scheduled Station AE Title asked for: empty = the box's own, `"*"` = any."""
    modality: str = "*"
    """Modality asked for."""
    station_name: str = ""
    """Scheduled Station Name: an optional narrowing key of the broad query (not sent when
    empty)."""
    location: str = ""
    """Scheduled Procedure Step Location: an optional narrowing key (not sent when
    empty)."""
    status: str = ""
    """Scheduled Procedure Step Status: an optional narrowing key (not sent when
    empty)."""
    scp_ae_title: str = ""
    """A separate AE title for the MWL and MPPS SCPs (some modalities need one); empty =
    the box's."""
    coerce_by: list[str] = field(default_factory=lambda: ["accession", "study_uid", "patient_sps"])
    """How an arriving instance finds its worklist item, in order: `accession` (Accession
    Number), `study_uid` (Study Instance UID), or `patient_sps` (Patient ID with the SPS
    ID of its Request Attributes Sequence). `[]` turns coercion off."""
    mpps_remote: str = ""
    """Forward MPPS to this `[[remote]]`; empty = the `ris`, if any."""
    answer_performed: list[str] = field(default_factory=list)
    """Which performed items modalities still get in their worklist: `"completed"`,
    `"discontinued"` (for example, so a discontinued step can be done again). By default
    an item whose MPPS is COMPLETED or DISCONTINUED is no longer answered, as brokers do.
    An item IN PROGRESS is always answered."""

    def validate(self, name: str) -> None:
        from dicombox.core.config import ConfigError

        unknown = set(self.coerce_by) - {"accession", "study_uid", "patient_sps"}
        if unknown:
            raise ConfigError(
                f"[{name}] coerce_by has {sorted(unknown)[0]!r}; "
                "use accession, study_uid, patient_sps"
            )
        unknown = set(self.answer_performed) - {"completed", "discontinued"}
        if unknown:
            raise ConfigError(
                f"[{name}] answer_performed has {sorted(unknown)[0]!r}; use completed, discontinued"
            )
        if self.interval_s < 5:
            raise ConfigError(f"[{name}] interval_s = {self.interval_s}: at least 5 seconds")
