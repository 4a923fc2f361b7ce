"""The C-FIND SCP: an identifier becomes one SQL query on the index; each row becomes a
pending response. Files are never opened."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import Select, distinct, func, select, true

from dicombox.core.box import Box
from dicombox.core.index import schema
from dicombox.core.matching import (
    Match,
    answer_items,
    date_time_span,
    match,
    sequence_check,
)
from dicombox.core.net.dataset_codec import decode_dataset as decode_identifier
from dicombox.core.net.dataset_codec import encode_dataset as encode_identifier
from dicombox.core.net.service import Reply, Request
from dicombox.plugins.qr.keys import KEYS, ORDER, TABLES, Key
from dicombox.plugins.qr.models import BY_FIND_UID, TABLE_LEVEL, Model

log = logging.getLogger("dicombox.qr")

SUCCESS, PENDING, PENDING_WARNING, CANCELLED = 0x0000, 0xFF00, 0xFF01, 0xFE00
OUT_OF_RESOURCES, IDENTIFIER_MISMATCH, UNABLE_TO_PROCESS = 0xA700, 0xA900, 0xC000
# A key below the query level in a hierarchical query: the status seed 002 answers.
KEY_BELOW_LEVEL = 0x0106
NOT_MATCHING = {
    "QueryRetrieveLevel",
    "SpecificCharacterSet",
    "RetrieveAETitle",
    "InstanceAvailability",
    "TimezoneOffsetFromUTC",
}


class QueryError(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass
class Query:
    """A decoded C-FIND identifier, checked against its information model."""

    model: Model
    level: str
    requested: list[str]  # keywords to answer, in identifier order
    matches: list[tuple[Key, Match]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    charset: str = ""
    items: dict[str, Dataset] = field(default_factory=dict)  # sequence keys' query items

    @property
    def table_level(self) -> str:
        return TABLE_LEVEL[self.level]


def parse_query(identifier: Dataset, model: Model, case_insensitive: bool) -> Query:
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in model.levels:
        raise QueryError(
            IDENTIFIER_MISMATCH,
            f"Query/Retrieve Level {level or '(none)'!r} is not one of "
            f"{'/'.join(model.levels)} in the {model.name} model",
        )
    query = Query(model, level, [], charset=str(identifier.get("SpecificCharacterSet", "") or ""))
    depth = model.levels.index(level)
    for element in identifier:
        keyword = element.keyword
        if element.tag.group in (0x0000, 0x0002):
            continue
        if not keyword or element.tag.is_private:
            if not element.tag.is_private_creator:
                query.unsupported.append(f"{element.tag}")  # not held: FF01, not echoed
            continue
        if keyword in NOT_MATCHING:
            if keyword in ("RetrieveAETitle", "InstanceAvailability"):
                query.requested.append(keyword)
            continue
        key = KEYS.get(keyword)
        if key is None:
            query.requested.append(keyword)
            query.unsupported.append(keyword)
            continue
        if model.levels.index(model.key_level(key.table_level)) > depth:
            raise QueryError(
                KEY_BELOW_LEVEL,
                f"{keyword} is a {model.key_level(key.table_level)} key, below "
                f"the {level} level of this hierarchical query",
            )
        query.requested.append(keyword)
        if element.VR == "SQ":
            if element.value:
                query.items[keyword] = element.value[0]
                check = sequence_check(element.value[0], case_insensitive)
                if check is not None:
                    query.matches.append((key, Match(true(), check)))
            continue
        if key.column is not None:
            found = match(key.column, key.vr, element.value, case_insensitive)
            if found is not None:
                query.matches.append((key, found))
        elif key.computed == "ModalitiesInStudy" and element.value:
            found = match(schema.series.c.modality, "CS", element.value)
            if found is not None:
                query.matches.append((key, found))
        elif element.value not in (None, "", []):
            query.unsupported.append(keyword)  # a return-only key cannot narrow matches
    _combine_date_time_ranges(query, identifier)
    return query


# Date and time keys that, both given as ranges, mean one continuous span (seed 002).
DATE_TIME_PAIRS = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
    ("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"),
)


def _combine_date_time_ranges(query: Query, identifier: Dataset) -> None:
    """Study Date 20060705-20060707 with Study Time 1000-1800 means 5 July 10:00 to
    7 July 18:00, not "10 to 18 o'clock on each day"."""
    for date_key, time_key in DATE_TIME_PAIRS:
        date_text = str(identifier.get(date_key, "") or "")
        time_text = str(identifier.get(time_key, "") or "")
        if "-" not in date_text or "-" not in time_text:
            continue
        span = date_time_span(KEYS[date_key].column, KEYS[time_key].column, date_text, time_text)
        query.matches = [(k, m) for k, m in query.matches if k.keyword not in (date_key, time_key)]
        query.matches.append((KEYS[date_key], span))


def _computed(name: str) -> Any:
    p, st, se, i = schema.patients, schema.studies, schema.series, schema.instances
    if name == "NumberOfStudyRelatedSeries":
        return select(func.count(se.c.id)).where(se.c.study_pk == st.c.id).scalar_subquery()
    if name == "NumberOfStudyRelatedInstances":
        return (
            select(func.count(i.c.id))
            .select_from(i.join(se, i.c.series_pk == se.c.id))
            .where(se.c.study_pk == st.c.id)
            .scalar_subquery()
        )
    if name == "NumberOfSeriesRelatedInstances":
        return select(func.count(i.c.id)).where(i.c.series_pk == se.c.id).scalar_subquery()
    if name == "NumberOfPatientRelatedStudies":
        return select(func.count(st.c.id)).where(st.c.patient_pk == p.c.id).scalar_subquery()
    if name == "NumberOfPatientRelatedSeries":
        return (
            select(func.count(se.c.id))
            .select_from(se.join(st, se.c.study_pk == st.c.id))
            .where(st.c.patient_pk == p.c.id)
            .scalar_subquery()
        )
    if name == "NumberOfPatientRelatedInstances":
        return (
            select(func.count(i.c.id))
            .select_from(i.join(se, i.c.series_pk == se.c.id).join(st, se.c.study_pk == st.c.id))
            .where(st.c.patient_pk == p.c.id)
            .scalar_subquery()
        )
    if name == "ModalitiesInStudy":
        return (
            select(func.group_concat(distinct(se.c.modality)))
            .where(se.c.study_pk == st.c.id)
            .scalar_subquery()
        )
    if name == "SOPClassesInStudy":
        return (
            select(func.group_concat(distinct(i.c.sop_class_uid)))
            .select_from(i.join(se, i.c.series_pk == se.c.id))
            .where(se.c.study_pk == st.c.id)
            .scalar_subquery()
        )
    raise KeyError(name)


def build_select(query: Query) -> Select[Any]:
    base = query.table_level
    levels = ORDER[: ORDER.index(base) + 1]
    columns: list[Any] = []
    for keyword in query.requested:
        key = KEYS.get(keyword)
        if key is None or key.table_level not in levels:
            continue
        if key.column is not None:
            columns.append(key.column.label(keyword))
        elif key.computed:
            columns.append(_computed(key.computed).label(keyword))
    for level in levels:
        columns.append(TABLES[level].c.extra.label(f"extra:{level}"))
    joined = TABLES[base]
    for child, parent in zip(reversed(levels), reversed(levels[:-1]), strict=False):
        joined = joined.join(TABLES[parent], TABLES[child].c[f"{parent}_pk"] == TABLES[parent].c.id)
    stmt = select(*columns).select_from(joined)
    for key, found in query.matches:
        if key.computed == "ModalitiesInStudy":
            se = schema.series
            stmt = stmt.where(
                select(se.c.id).where(se.c.study_pk == schema.studies.c.id, found.sql).exists()
            )
        elif key.table_level in levels:
            stmt = stmt.where(found.sql)
    if base == "instance":
        stmt = stmt.where(schema.instances.c.copy == 0)  # a kept-both duplicate answers once
    return stmt.order_by(TABLES[base].c.id)


def instances_select(query: Query) -> Select[Any]:
    """The stored files a C-MOVE or C-GET identifier asks for, whatever its level."""
    p, st, se, i = schema.patients, schema.studies, schema.series, schema.instances
    joined = (
        i.join(se, i.c.series_pk == se.c.id)
        .join(st, se.c.study_pk == st.c.id)
        .join(p, st.c.patient_pk == p.c.id)
    )
    stmt = (
        select(
            i.c.path,
            i.c.sop_class_uid,
            i.c.sop_instance_uid,
            i.c.transfer_syntax_uid,
        )
        .select_from(joined)
        .where(i.c.copy == 0)
    )
    for key, found in query.matches:
        if key.computed == "ModalitiesInStudy":
            stmt = stmt.where(select(se.c.id).where(se.c.study_pk == st.c.id, found.sql).exists())
        elif key.column is not None:
            stmt = stmt.where(found.sql)
    return stmt.order_by(st.c.id, se.c.id, i.c.id)


def _extra_value(row: dict[str, Any], keyword: str) -> Any:
    key = KEYS[keyword]
    raw = row.get(f"extra:{key.table_level}") or "{}"
    element = json.loads(raw).get(f"{_tag_of(keyword):08X}")
    if not element:
        return None
    return Dataset.from_json({f"{_tag_of(keyword):08X}": element})[keyword].value


def _row_value(key: Key, row: dict[str, Any]) -> Any:
    """What a Python-side check sees: the text of a column, or a held element's value."""
    return _extra_value(row, key.keyword) if key.extra else str(row.get(key.keyword, ""))


def _tag_of(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    assert tag is not None
    return tag


class FindSCP:
    def __init__(self, box: Box, max_matches: int, case_insensitive_names: bool) -> None:
        self.box = box
        self.max_matches = max_matches
        self.case_insensitive = case_insensitive_names

    def handle(self, request: Request) -> Iterator[Reply]:
        model = BY_FIND_UID[request.context.abstract_syntax]
        ts = request.context.transfer_syntax
        self.box.bus.publish(  # audited (PS3.15 Query) whether or not it can be answered
            "query.received",
            sop_class_uid=request.context.abstract_syntax,
            transfer_syntax=ts,
            model=model.name,
            identifier=base64.b64encode(request.dataset.data).decode("ascii"),
            **request.peer.event_fields(),
        )
        try:
            identifier = decode_identifier(request.dataset.data, ts)
            fuzzy = request.extended[2:3] == b"\x01"  # negotiated case-insensitive names
            query = parse_query(identifier, model, self.case_insensitive or fuzzy)
        except QueryError as exc:
            log.warning("C-FIND from %s refused: %s", request.peer.calling_ae, exc)
            yield Reply(exc.status, fields={"ErrorComment": str(exc)[:64]})
            return
        except Exception as exc:  # an identifier pydicom cannot read
            log.warning("C-FIND from %s: unreadable identifier: %s", request.peer.calling_ae, exc)
            yield Reply(UNABLE_TO_PROCESS, fields={"ErrorComment": "identifier cannot be parsed"})
            return
        pending = PENDING_WARNING if query.unsupported else PENDING
        sent = 0
        levels = ORDER[: ORDER.index(query.table_level) + 1]
        with self.box.index.engine.connect() as conn:
            for row in conn.execute(build_select(query)).mappings():
                values = dict(row)
                if not all(
                    found.check is None or found.check(_row_value(key, values))
                    for key, found in query.matches
                ):
                    continue
                if request.cancelled():
                    yield Reply(CANCELLED)
                    return
                if self.max_matches and sent >= self.max_matches:
                    too_many = f"more than {self.max_matches} matches; narrow the query"
                    yield Reply(OUT_OF_RESOURCES, fields={"ErrorComment": too_many})
                    return
                yield Reply(
                    pending, dataset=encode_identifier(self._response(query, values, levels), ts)
                )
                sent += 1
        self.box.bus.publish(
            "query.done",
            calling_ae=request.peer.calling_ae,
            level=query.level,
            model=model.name,
            matches=sent,
        )
        yield Reply(SUCCESS)

    def _response(self, query: Query, row: dict[str, Any], levels: tuple[str, ...]) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = query.level
        ascii_only = True
        for keyword in query.requested:
            key = KEYS.get(keyword)
            if keyword == "RetrieveAETitle":
                value: Any = self.box.config.box.ae_title
            elif keyword == "InstanceAvailability":
                value = "ONLINE"
            elif key is None or key.table_level not in levels:
                value = None
            elif key.extra and key.vr == "SQ":
                value = answer_items(_extra_value(row, keyword), query.items.get(keyword))
            elif key.extra:
                value = _extra_value(row, keyword)
            else:
                value = row.get(keyword)
                if key.computed == "ModalitiesInStudy" or key.computed == "SOPClassesInStudy":
                    value = [v for v in str(value or "").split(",") if v] or None
                elif value is not None and key.vr in ("IS", "US", "UL") and value == "":
                    value = None
                elif isinstance(value, str) and "\\" in value:
                    value = value.split("\\")
            if key is not None and key.vr == "SQ" and not key.extra:
                value = []  # a sequence the index does not hold is answered empty
            setattr(ds, keyword, value if value not in ("",) else None)
            if isinstance(value, str) and not value.isascii():
                ascii_only = False
        if not ascii_only:
            ds.SpecificCharacterSet = "ISO_IR 192"
        elif query.charset:
            ds.SpecificCharacterSet = query.charset
        return ds
