"""The worklist plugin's own tables in the index database: cached and local worklist
items, and the performed procedure steps modalities report. Created when the plugin
first opens the index (``ensure_tables``); the core's schema knows nothing of them."""

from __future__ import annotations

from sqlalchemy import Column, Engine, Float, Index, Integer, MetaData, String, Table, Text

from dicombox.core.index.engine import write_transaction

metadata = MetaData()


def _text(name: str, length: int = 64) -> Column:
    return Column(name, String(length), nullable=False, server_default="")


# One row per scheduled procedure step. Matching keys are columns (decoded text, so a
# query in any character set matches); the whole item is kept as DICOM JSON.
worklist_items = Table(
    "worklist_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item_key", String(255), nullable=False, unique=True),
    _text("source", 16),  # ris | local
    _text("state", 16),  # scheduled | retired
    _text("patient_name", 255),
    _text("patient_id"),
    _text("patient_birth_date", 16),
    _text("patient_sex", 16),
    _text("accession_number"),
    _text("referring_physician_name", 255),
    _text("study_instance_uid"),
    _text("requested_procedure_id"),
    _text("requested_procedure_description", 255),
    _text("scheduled_procedure_step_id"),
    _text("scheduled_procedure_step_start_date", 16),
    _text("scheduled_procedure_step_start_time", 32),
    _text("modality", 16),
    _text("scheduled_station_ae_title"),
    _text("scheduled_station_name"),
    _text("scheduled_procedure_step_location"),
    _text("scheduled_performing_physician_name", 255),
    _text("scheduled_procedure_step_status", 16),
    Column("dataset", Text, nullable=False),  # the item, DICOM JSON
    Column("updated_at", Float, nullable=False),
    Index("ix_worklist_accession", "accession_number"),
    Index("ix_worklist_study", "study_instance_uid"),
    Index("ix_worklist_patient", "patient_id"),
)

# Modality Performed Procedure Steps received (N-CREATE, then N-SETs).
mpps = Table(
    "mpps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_instance_uid", String(64), nullable=False, unique=True),
    _text("status", 16),  # IN PROGRESS | COMPLETED | DISCONTINUED
    _text("calling_ae", 16),
    Column("dataset", Text, nullable=False),  # DICOM JSON, N-SETs applied
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)


def ensure_tables(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        metadata.create_all(conn, checkfirst=True)
