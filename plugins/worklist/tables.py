"""The worklist plugin's own tables in the index database: cached and local worklist
items, and the performed procedure steps modalities report. Created when the plugin
first opens the index (``ensure_tables``); the core's schema knows nothing of them."""

from __future__ import annotations

from sqlalchemy import Column, Engine, Float, Index, Integer, MetaData, String, Table, Text

from dicombox.core.index.engine import write_transaction
from dicombox.core.index.schema import text_column

metadata = MetaData()


# One row per scheduled procedure step. Matching keys are columns (decoded text, so a
# query in any character set matches); the whole item is kept as DICOM JSON.
worklist_items = Table(
    "worklist_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item_key", String(255), nullable=False, unique=True),
    text_column("source", 16),  # ris | local
    text_column("state", 16),  # scheduled | retired
    text_column("patient_name", 255),
    text_column("patient_id"),
    text_column("patient_birth_date", 16),
    text_column("patient_sex", 16),
    text_column("accession_number"),
    text_column("referring_physician_name", 255),
    text_column("study_instance_uid"),
    text_column("requested_procedure_id"),
    text_column("requested_procedure_description", 255),
    text_column("scheduled_procedure_step_id"),
    text_column("scheduled_procedure_step_start_date", 16),
    text_column("scheduled_procedure_step_start_time", 32),
    text_column("modality", 16),
    text_column("scheduled_station_ae_title"),
    text_column("scheduled_station_name"),
    text_column("scheduled_procedure_step_location"),
    text_column("scheduled_performing_physician_name", 255),
    text_column("scheduled_procedure_step_status", 16),
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
    text_column("status", 16),  # IN PROGRESS | COMPLETED | DISCONTINUED
    text_column("calling_ae", 16),
    Column("dataset", Text, nullable=False),  # DICOM JSON, N-SETs applied
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)


_ensured: set[int] = set()


def ensure_tables(engine: Engine) -> None:
    """Create the tables if absent; once per database engine and process."""
    key = id(engine)
    if key in _ensured:
        return
    with write_transaction(engine) as conn:
        metadata.create_all(conn, checkfirst=True)
    _ensured.add(key)
