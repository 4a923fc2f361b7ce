"""MWL SCP: the cached and local worklist items, served to modalities with the same
matching as C-FIND (``core.matching``): keys held as columns narrow the SQL query; any
other key, sequences included, is matched against the stored item itself. Items whose
MPPS is COMPLETED or DISCONTINUED are left out unless [worklist] answer_performed names
that state (``performed.answered``)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import select

from dicombox.core.box import Box
from dicombox.core.index.attributes import text_value
from dicombox.core.matching import (
    Match,
    answer_items,
    as_text,
    date_time_span,
    match,
    sequence_check,
    value_matches,
)
from dicombox.core.net.dataset_codec import decode_dataset, encode_dataset
from dicombox.core.net.service import Reply, Request
from dicombox.plugins.worklist.items import SCHEDULED, SPS_COLUMNS, TOP_COLUMNS, item_dataset
from dicombox.plugins.worklist.performed import answered, performed_by_item
from dicombox.plugins.worklist.tables import worklist_items

log = logging.getLogger("dicombox.worklist")

SUCCESS, PENDING, PENDING_WARNING, CANCELLED = 0x0000, 0xFF00, 0xFF01, 0xFE00
UNABLE_TO_PROCESS = 0xC000
SPS = "ScheduledProcedureStepSequence"
_COLUMN_OF = {k: c for c, k in {**TOP_COLUMNS, **SPS_COLUMNS}.items()}
_SPS_KEYS = set(SPS_COLUMNS.values())


def _conditions(
    identifier: Dataset, case_insensitive: bool
) -> tuple[list[tuple[str, Match]], list[Any], bool]:
    """Conditions on columns (by column name), checks on the stored item, and whether
    a key was ignored (a private one: FF01)."""
    sql: list[tuple[str, Match]] = []
    checks: list[Any] = []
    ignored = False

    def add(element: Any, in_step: bool) -> None:
        nonlocal ignored
        keyword = element.keyword
        if not keyword or element.tag.is_private:
            ignored = ignored or not element.tag.is_private_creator
            return
        if keyword == "SpecificCharacterSet" or element.value in (None, "", []):
            return
        column = _COLUMN_OF.get(keyword)
        if column is not None and (keyword in _SPS_KEYS) == in_step:
            found = match(worklist_items.c[column], element.VR, element.value, case_insensitive)
            if found is not None:
                sql.append((column, found))
            return
        holder = (lambda item: item[SPS][0]) if in_step else (lambda item: item)
        if element.VR == "SQ":
            check = sequence_check(element.value[0], case_insensitive) if element.value else None
            if check is not None:
                checks.append(lambda item, k=keyword, h=holder, c=check: c(h(item).get(k)))
            return
        wanted = as_text(element.value)
        queries = wanted if isinstance(wanted, list) else [wanted]
        checks.append(
            lambda item, k=keyword, h=holder, vr=element.VR, q=queries: any(
                value_matches(vr, one, text_value(h(item).get(k)), case_insensitive) for one in q
            )
        )

    for element in identifier:
        if element.keyword == SPS:
            for inner in element.value[0] if element.value else []:
                add(inner, in_step=True)
        else:
            add(element, in_step=False)
    step = identifier.get(SPS, [Dataset()])
    step = step[0] if step else Dataset()
    dates = str(step.get("ScheduledProcedureStepStartDate", "") or "")
    times = str(step.get("ScheduledProcedureStepStartTime", "") or "")
    if "-" in dates and "-" in times:  # one span, as for C-FIND (seed 002)
        t = worklist_items.c
        date_column, time_column = (
            "scheduled_procedure_step_start_date",
            "scheduled_procedure_step_start_time",
        )
        sql = [(c, m) for c, m in sql if c not in (date_column, time_column)]
        span = date_time_span(t[date_column], t[time_column], dates, times)
        sql.append((date_column, span))
    return sql, checks, ignored


def _answer(item: Dataset, identifier: Dataset, charset: str) -> Dataset:
    """The requested keys from the stored item; sequences cut to the query item's keys."""
    out = Dataset()
    ascii_only = True
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword == "SpecificCharacterSet":
            continue
        if element.VR == "SQ":
            query_item = element.value[0] if element.value else None
            value: Any = answer_items(item.get(keyword), query_item)
        else:
            value = item.get(keyword)
        setattr(out, keyword, value)
        ascii_only = ascii_only and str(value).isascii()
    if not ascii_only:
        out.SpecificCharacterSet = "ISO_IR 192"
    elif charset:
        out.SpecificCharacterSet = charset
    return out


class WorklistSCP:
    def __init__(
        self,
        box: Box,
        case_insensitive_names: bool = False,
        answer_performed: Iterable[str] = (),
    ) -> None:
        self.box = box
        self.case_insensitive = case_insensitive_names
        self.answer_performed = tuple(answer_performed)

    def handle(self, request: Request) -> Iterator[Reply]:
        ts = request.context.transfer_syntax
        self.box.bus.publish(  # audited (PS3.15 Query) whether or not it can be answered
            "query.received",
            sop_class_uid=request.context.abstract_syntax,
            transfer_syntax=ts,
            model="worklist",
            identifier=base64.b64encode(request.dataset.data).decode("ascii"),
            **request.peer.event_fields(),
        )
        try:
            identifier = decode_dataset(request.dataset.data, ts)
            sql, checks, ignored = _conditions(identifier, self.case_insensitive)
        except Exception as exc:
            log.warning("worklist query from %s unreadable: %s", request.peer.calling_ae, exc)
            yield Reply(UNABLE_TO_PROCESS, fields={"ErrorComment": "identifier cannot be parsed"})
            return
        charset = str(identifier.get("SpecificCharacterSet", "") or "")
        statement = select(worklist_items).where(worklist_items.c.state == SCHEDULED)
        for _, found in sql:
            statement = statement.where(found.sql)
        sent = 0
        with self.box.index.engine.connect() as conn:
            rows = conn.execute(statement.order_by(worklist_items.c.id)).all()
            performed = performed_by_item(conn, [row.id for row in rows])
        for row in rows:
            if not answered(performed.get(row.id), self.answer_performed):
                continue
            item = item_dataset(row)
            if not all(f.check is None or f.check(str(row._mapping[c])) for c, f in sql):
                continue  # a wildcard SQL's LIKE could not decide
            if not all(check(item) for check in checks):
                continue
            if request.cancelled():
                yield Reply(CANCELLED)
                return
            answer = _answer(item, identifier, charset)
            yield Reply(PENDING_WARNING if ignored else PENDING, dataset=encode_dataset(answer, ts))
            sent += 1
        self.box.bus.publish("worklist.queried", calling_ae=request.peer.calling_ae, matches=sent)
        yield Reply(SUCCESS)
