"""Every key a C-FIND can carry, and where its value comes from.

Matching keys are index columns. Counts and lists (Number of Study Related Instances,
Modalities in Study …) are computed by the index at query time. Return-only keys come
from the per-level ``extra`` JSON the index keeps. A key the box does not hold is
answered empty, with the FF01 warning status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicombox.core.index import schema
from dicombox.core.index.attributes import LEVEL_COLUMNS, RETURN_ONLY
from dicombox.plugins.qr.models import TABLE_LEVEL

TABLES = {
    "patient": schema.patients,
    "study": schema.studies,
    "series": schema.series,
    "instance": schema.instances,
}
ORDER = ("patient", "study", "series", "instance")


@dataclass(frozen=True)
class Key:
    keyword: str
    table_level: str  # patient | study | series | instance
    vr: str
    column: Any = None  # an index column when the key is stored
    computed: str = ""  # the name of a value computed at query time
    extra: bool = False  # held in the level's extra JSON


def _catalogue() -> dict[str, Key]:
    keys: dict[str, Key] = {}
    for level, columns in LEVEL_COLUMNS.items():
        table = TABLES[level]
        for column, keyword in columns.items():
            tag = tag_for_keyword(keyword)
            if tag is None or keyword in keys:
                continue
            keys[keyword] = Key(keyword, level, dictionary_VR(tag), column=table.c[column])
        for keyword in RETURN_ONLY[level]:
            tag = tag_for_keyword(keyword)
            if tag is not None and keyword not in keys:
                keys[keyword] = Key(keyword, level, dictionary_VR(tag), extra=True)
    for keyword, level in (
        ("NumberOfPatientRelatedStudies", "patient"),
        ("NumberOfPatientRelatedSeries", "patient"),
        ("NumberOfPatientRelatedInstances", "patient"),
        ("NumberOfStudyRelatedSeries", "study"),
        ("NumberOfStudyRelatedInstances", "study"),
        ("ModalitiesInStudy", "study"),
        ("SOPClassesInStudy", "study"),
        ("NumberOfSeriesRelatedInstances", "series"),
    ):
        tag = tag_for_keyword(keyword)
        assert tag is not None
        keys[keyword] = Key(keyword, level, dictionary_VR(tag), computed=keyword)
    return keys


KEYS = _catalogue()


def key_for_tag(tag: int) -> Key | None:
    keyword = keyword_for_tag(tag)
    return KEYS.get(keyword) if keyword else None


def level_of(key: Key) -> str:
    return {v: k for k, v in TABLE_LEVEL.items()}[key.table_level]
