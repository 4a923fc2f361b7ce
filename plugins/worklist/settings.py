"""The [worklist] configuration section."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorklistSection:
    ris: str = ""  # a [[remote]] name to poll for the worklist; "" = no polling
    interval_s: float = 60.0
    days_back: int = 1  # the broad query's SPS Start Date window
    days_ahead: int = 1
    station_ae: str = ""  # Scheduled Station AE Title asked for: "" = the box's, "*" = any
    modality: str = "*"
    station_name: str = ""  # optional narrowing keys of the broad query ("" = not sent)
    location: str = ""
    status: str = ""
    scp_ae_title: str = ""  # a separate AE title for the MWL and MPPS SCPs ("" = the box's)
    # Coercion of arriving instances from their worklist item, found by these keys in
    # order: accession (Accession Number), study_uid (Study Instance UID), patient_sps
    # (Patient ID + SPS ID of the Request Attributes Sequence). [] = no coercion.
    coerce_by: list[str] = field(default_factory=lambda: ["accession", "study_uid", "patient_sps"])
    mpps_remote: str = ""  # forward MPPS to this [[remote]] ("" = the ris, if any)
    # Items whose MPPS is final are no longer answered to C-FIND, as brokers do, unless
    # their state is named here: "completed", "discontinued" (redo a discontinued step).
    answer_performed: list[str] = field(default_factory=list)

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
