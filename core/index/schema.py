"""Tables of the index. Columns carry the matching and return keys the Q/R tables of the
conformance target list; names are the DICOM keywords in snake case."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def text_column(name: str, length: int = 64) -> Column:
    """A text column that is never NULL (empty = absent, as in DICOM): for plugins too."""
    return Column(name, String(length), nullable=False, server_default="")


schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

patients = Table(
    "patients",
    metadata,
    Column("id", Integer, primary_key=True),
    text_column("patient_id"),
    text_column("issuer_of_patient_id"),
    text_column("patient_name", 324),
    text_column("patient_birth_date", 8),
    text_column("patient_birth_time", 16),
    text_column("patient_sex", 16),
    text_column("other_patient_ids", 1024),
    text_column("other_patient_names", 1024),
    text_column("ethnic_group", 16),
    Column("patient_comments", Text, nullable=False, server_default=""),
    text_column("specific_character_set", 128),
    Column("extra", Text, nullable=False, server_default="{}"),  # return-only keys, DICOM JSON
    Column("created_at", Float, nullable=False),
    UniqueConstraint("patient_id", "issuer_of_patient_id", "patient_name", name="uq_patient"),
)

studies = Table(
    "studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_pk", Integer, ForeignKey("patients.id"), nullable=False, index=True),
    Column("study_instance_uid", String(64), nullable=False, unique=True),
    text_column("study_date", 8),
    text_column("study_time", 16),
    text_column("accession_number", 16),
    text_column("study_id", 16),
    text_column("referring_physician_name", 324),
    text_column("study_description"),
    text_column("name_of_physicians_reading_study", 324),
    text_column("admitting_diagnoses_description", 1024),
    text_column("patient_age", 4),
    text_column("patient_size", 16),
    text_column("patient_weight", 16),
    text_column("timezone_offset_from_utc", 5),
    text_column("institution_name"),
    Column("study_comments", Text, nullable=False, server_default=""),
    text_column("requesting_physician", 324),
    text_column("specific_character_set", 128),
    Column("extra", Text, nullable=False, server_default="{}"),
    Column("created_at", Float, nullable=False),
    Index("ix_studies_date", "study_date"),
    Index("ix_studies_accession", "accession_number"),
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_pk", Integer, ForeignKey("studies.id"), nullable=False, index=True),
    Column("series_instance_uid", String(64), nullable=False, unique=True),
    text_column("modality", 16),
    text_column("series_number", 12),
    text_column("series_description"),
    text_column("series_date", 8),
    text_column("series_time", 16),
    text_column("body_part_examined", 16),
    text_column("laterality", 16),
    text_column("protocol_name"),
    text_column("station_name", 16),
    text_column("manufacturer"),
    text_column("manufacturer_model_name"),
    text_column("institution_name"),
    text_column("institutional_department_name"),
    text_column("institution_address", 1024),
    text_column("performing_physician_name", 324),
    text_column("operators_name", 324),
    text_column("performed_procedure_step_id", 16),
    text_column("performed_procedure_step_start_date", 8),
    text_column("performed_procedure_step_start_time", 16),
    text_column("requested_procedure_id", 16),
    text_column("scheduled_procedure_step_id", 16),
    Column("extra", Text, nullable=False, server_default="{}"),
    Column("created_at", Float, nullable=False),
)

instances = Table(
    "instances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("series_pk", Integer, ForeignKey("series.id"), nullable=False, index=True),
    Column("sop_instance_uid", String(64), nullable=False),
    Column("copy", Integer, nullable=False, server_default="0"),  # keep-both duplicates: 1, 2…
    Column("sop_class_uid", String(64), nullable=False),
    text_column("instance_number", 12),
    text_column("content_date", 8),
    text_column("content_time", 16),
    text_column("acquisition_date", 8),
    text_column("acquisition_time", 16),
    text_column("image_type", 256),
    text_column("slice_thickness", 16),
    Column("number_of_frames", Integer, nullable=False, server_default="0"),
    Column("rows", Integer, nullable=False, server_default="0"),
    Column("columns", Integer, nullable=False, server_default="0"),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("path", String(512), nullable=False),
    Column("size", BigInteger, nullable=False),
    text_column("calling_ae", 16),
    text_column("availability", 16),
    Column("extra", Text, nullable=False, server_default="{}"),
    Column("received_at", Float, nullable=False),
    UniqueConstraint("sop_instance_uid", "copy", name="uq_instance_copy"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("queue", String(128), nullable=False, server_default=""),  # serialised per value
    Column("state", String(16), nullable=False),  # queued | running | done | failed | cancelled
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("retry_delay_s", Float, nullable=False),
    Column("next_run_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("progress", Text, nullable=False, server_default=""),
    Column("last_error", Text, nullable=False, server_default=""),
    Index("ix_jobs_due", "state", "next_run_at"),
)

# The outbox: jobs the routes of an instance ask for, written in the transaction that
# indexes it (so an acknowledged instance never lacks them) and turned into ``jobs`` rows
# by the supervisor (core/outbox.py). ``kind`` is the job kind; ``payload`` (JSON) says
# which job gathers the instance and how (core.outbox.RouteJob).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# What became of each instance at each remote: forwarded, then committed (or refused)
# by the remote's storage commitment. The watermark policy deletes only instances
# delivered and committed everywhere they had to go.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_instance_uid", String(64), nullable=False),
    Column("remote", String(64), nullable=False),  # the [[remote]] name
    Column("state", String(16), nullable=False),  # delivered | requested | committed | refused
    Column("transaction_uid", String(64), nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),  # a refusal's reason
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("sop_instance_uid", "remote", name="uq_delivery"),
    Index("ix_deliveries_transaction", "transaction_uid"),
)
