"""The query/retrieve information models and their levels (PS3.4 C.6)."""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
# Index level (the table) behind each query level.
TABLE_LEVEL = {"PATIENT": "patient", "STUDY": "study", "SERIES": "series", "IMAGE": "instance"}


@dataclass(frozen=True)
class Model:
    name: str
    find: str
    move: str
    get: str
    levels: tuple[str, ...]

    def key_level(self, table_level: str) -> str:
        """The query level an index level's keys belong to in this model: patient keys
        are STUDY-level keys in the Study Root model."""
        level = {v: k for k, v in TABLE_LEVEL.items()}[table_level]
        return level if level in self.levels else self.levels[0]


PATIENT_ROOT = Model(
    "Patient Root",
    "1.2.840.10008.5.1.4.1.2.1.1",
    "1.2.840.10008.5.1.4.1.2.1.2",
    "1.2.840.10008.5.1.4.1.2.1.3",
    ("PATIENT", "STUDY", "SERIES", "IMAGE"),
)
STUDY_ROOT = Model(
    "Study Root",
    "1.2.840.10008.5.1.4.1.2.2.1",
    "1.2.840.10008.5.1.4.1.2.2.2",
    "1.2.840.10008.5.1.4.1.2.2.3",
    ("STUDY", "SERIES", "IMAGE"),
)
PATIENT_STUDY_ONLY = Model(
    "Patient/Study Only",
    "1.2.840.10008.5.1.4.1.2.3.1",
    "1.2.840.10008.5.1.4.1.2.3.2",
    "1.2.840.10008.5.1.4.1.2.3.3",
    ("PATIENT", "STUDY"),
)
MODELS = (PATIENT_ROOT, STUDY_ROOT, PATIENT_STUDY_ONLY)
BY_FIND_UID = {m.find: m for m in MODELS}
BY_MOVE_UID = {m.move: m for m in MODELS}
BY_GET_UID = {m.get: m for m in MODELS}
