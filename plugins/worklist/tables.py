"""The worklist plugin's own tables in the index database: cached and local worklist
items, and the performed procedure steps modalities report. Created when the plugin
first opens the index (``ensure_tables``); the core's schema knows nothing of them."""

from __future__ import annotations

import json
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
)

from dicombox.core.index.attributes import text_value
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

# The scheduled steps each performed procedure step names (one row per item of its
# Scheduled Step Attributes Sequence, which an N-SET cannot change): how a step is tied
# to its worklist items (see performed.py).
mpps_steps = Table(
    "mpps_steps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mpps_id", Integer, nullable=False),  # mpps.id
    text_column("study_instance_uid"),
    text_column("accession_number"),
    text_column("requested_procedure_id"),
    text_column("scheduled_procedure_step_id"),
    Index("ix_mpps_steps_study", "study_instance_uid"),
    Index("ix_mpps_steps_accession", "accession_number"),
    Index("ix_mpps_steps_mpps", "mpps_id"),
)
_STEP_KEYS = {
    "study_instance_uid": "StudyInstanceUID",
    "accession_number": "AccessionNumber",
    "requested_procedure_id": "RequestedProcedureID",
    "scheduled_procedure_step_id": "ScheduledProcedureStepID",
}


def scheduled_steps(mpps_id: int, ds: Dataset) -> list[dict[str, Any]]:
    """The mpps_steps rows of a performed procedure step's data set."""
    return [
        {"mpps_id": mpps_id, **{c: text_value(item.get(k))[:64] for c, k in _STEP_KEYS.items()}}
        for item in ds.get("ScheduledStepAttributesSequence") or []
    ]


def _link_earlier_steps(conn: Connection) -> None:
    """Fill mpps_steps for the steps received before the table existed."""
    rows = conn.execute(select(mpps.c.id, mpps.c.dataset)).all()
    for row in rows:
        steps = scheduled_steps(row.id, Dataset.from_json(json.loads(row.dataset)))
        if steps:
            conn.execute(mpps_steps.insert(), steps)


_ensured: set[int] = set()


def ensure_tables(engine: Engine) -> None:
    """Create the tables if absent; once per database engine and process."""
    key = id(engine)
    if key in _ensured:
        return
    with write_transaction(engine) as conn:
        had_steps = inspect(conn).has_table(mpps_steps.name)
        metadata.create_all(conn, checkfirst=True)
        if not had_steps:
            _link_earlier_steps(conn)
    _ensured.add(key)
