"""C-FIND matching (PS3.4 C.2.2.2) as conditions on index columns.

Single value, universal, wildcard, range (DA, TM, DT, with time matched by meaning), and
list of UID are SQL conditions. A person name with wildcards is matched component by
component, never across ``^`` or ``=``: SQL's LIKE narrows the rows, a check on each
row's value decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import and_, func, or_
from sqlalchemy.sql.elements import ColumnElement

WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
RANGE_VRS = {"DA", "TM", "DT"}
MULTI_VALUED_VRS = {"CS", "AE"}  # stored joined by a backslash, matched value by value


@dataclass
class Match:
    """How one key narrows the matches: an SQL condition, and for wildcards a check on
    the row's text that SQL cannot express."""

    sql: ColumnElement[bool]
    check: Callable[[str], bool] | None = None


def as_text(value: Any) -> str | list[str]:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return str(value)


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _wildcard_regex(value: str) -> re.Pattern[str]:
    parts = []
    for char in value:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return re.compile("".join(parts) + r"\Z", re.S)


def _person_name_check(query: str) -> Callable[[str], bool]:
    """Wildcard matching of a person name component by component: ``*`` and ``?`` never
    reach across ``^`` or ``=``, and a component the query leaves out matches anything
    (so ``DOE*`` finds ``DOE^JOHN``)."""
    groups = [[_wildcard_regex(c) if c else None for c in g.split("^")] for g in query.split("=")]

    def check(stored: str) -> bool:
        stored_groups = stored.split("=")
        for i, components in enumerate(groups):
            have = stored_groups[i].split("^") if i < len(stored_groups) else []
            for j, pattern in enumerate(components):
                if pattern is not None and not pattern.match(have[j] if j < len(have) else ""):
                    return False
        return True

    return check


def _time_bounds(value: str) -> tuple[str, str]:
    """A time value as the span it means: 10 is 10:00:00 to 10:59:59.999999."""
    value = value.replace(":", "")
    whole, _, fraction = value.partition(".")
    low = whole.ljust(6, "0") + (f".{fraction}" if fraction else "")
    high = whole.ljust(6, "9") + (f".{fraction.ljust(6, '9')}" if fraction else ".999999")
    return low, high


def _range(column: Any, vr: str, value: str) -> ColumnElement[bool]:
    low, _, high = value.partition("-")
    conditions = []
    if vr == "TM":
        if low:
            conditions.append(column >= _time_bounds(low)[0])
        if high:
            conditions.append(column <= _time_bounds(high)[1])
    else:
        if low:
            conditions.append(column >= low)
        if high:
            # A date-time upper bound covers all of its last unit: pad with nines.
            conditions.append(column <= (high if vr == "DA" else high + "\uffff"))
    conditions.append(column != "")
    return and_(*conditions)


def match(column: Any, vr: str, value: Any, case_insensitive: bool = False) -> Match | None:
    """The condition for one key's value; None means universal matching."""
    text = as_text(value)
    if isinstance(text, list):
        values = [v for v in text if v]
        if not values:
            return None
        if vr == "UI" or len(values) > 1:
            return Match(column.in_(values))
        text = values[0]
    if text in ("", "*"):
        return None
    if vr == "UI" and "\\" in text:
        return Match(column.in_(text.split("\\")))
    if vr in RANGE_VRS and "-" in text:
        return Match(_range(column, vr, text))
    if vr == "TM":
        low, high = _time_bounds(text)
        return Match(and_(column >= low, column <= high))
    target = func.lower(column) if case_insensitive and vr == "PN" else column
    if case_insensitive and vr == "PN":
        text = text.lower()
    if vr == "PN" and ("*" in text or "?" in text):
        # SQL narrows by the literal start of the family name; the check decides.
        prefix = re.split(r"[*?^=]", text, maxsplit=1)[0]
        fold = (lambda v: v.lower()) if case_insensitive else (lambda v: v)
        check = _person_name_check(text)
        return Match(
            target.like(_like_pattern(prefix) + "%", escape="\\"),
            lambda stored: check(fold(stored)),
        )
    if vr in WILDCARD_VRS and ("*" in text or "?" in text):
        pattern = _wildcard_regex(text)
        like = target.like(_like_pattern(text), escape="\\")
        if vr in MULTI_VALUED_VRS:
            return Match(like, lambda stored: any(pattern.match(v) for v in stored.split("\\")))
        return Match(
            like,
            lambda stored: bool(
                pattern.match(stored.lower() if case_insensitive and vr == "PN" else stored)
            ),
        )
    if vr in MULTI_VALUED_VRS:
        return Match(
            or_(
                target == text,
                target.like(f"{text}\\%", escape="|"),
                target.like(f"%\\{text}", escape="|"),
                target.like(f"%\\{text}\\%", escape="|"),
            )
        )
    return Match(target == text)


def date_time_span(date: Any, time: Any, dates: str, times: str) -> Match:
    """A date range and a time range as one span: the time bounds apply on the first and
    last day only. A value with no time matches anywhere in the span."""
    first_day, _, last_day = dates.partition("-")
    earliest, _, latest = times.partition("-")
    conditions = [date != ""]
    if first_day:
        start = _time_bounds(earliest)[0] if earliest else "000000"
        conditions.append(
            or_(date > first_day, and_(date == first_day, or_(time >= start, time == "")))
        )
    if last_day:
        end = _time_bounds(latest)[1] if latest else "235959.999999"
        conditions.append(
            or_(date < last_day, and_(date == last_day, or_(time <= end, time == "")))
        )
    return Match(and_(*conditions))


def value_matches(vr: str, query: str, stored: str, case_insensitive: bool = False) -> bool:
    """One key of a sequence item matched in Python, by the same rules as the SQL above:
    the items of a sequence are not index columns."""
    if query in ("", "*"):
        return True
    if case_insensitive and vr == "PN":
        query, stored = query.lower(), stored.lower()
    if vr == "UI" and "\\" in query:
        return stored in query.split("\\")
    if vr in RANGE_VRS and "-" in query:
        low, _, high = query.partition("-")
        if vr == "TM":
            low, high = _time_bounds(low)[0] if low else "", _time_bounds(high)[1] if high else ""
        elif vr == "DT" and high:
            high += "\uffff"
        return stored != "" and (not low or stored >= low) and (not high or stored <= high)
    if vr == "TM":
        low, high = _time_bounds(query)
        return low <= stored.replace(":", "") <= high
    values = stored.split("\\") if vr in MULTI_VALUED_VRS else [stored]
    if vr == "PN" and ("*" in query or "?" in query):
        return _person_name_check(query)(stored)
    if vr in WILDCARD_VRS and ("*" in query or "?" in query):
        pattern = _wildcard_regex(query)
        return any(pattern.match(v) for v in values)
    return query in values


def sequence_check(item: Any, case_insensitive: bool = False) -> Callable[[Any], bool] | None:
    """Sequence matching (PS3.4 C.2.2.2.6): the query's one item matches when some stored
    item matches every key it holds; an empty item is universal matching (None)."""
    keys = [
        (element.keyword, element.VR, as_text(element.value))
        for element in item
        if element.VR != "SQ" and element.value not in (None, "", [])
    ]
    nested = [(element.keyword, element.value[0]) for element in item if element.VR == "SQ"]
    nested_checks = [(k, sequence_check(v, case_insensitive)) for k, v in nested if v]
    if not keys and not any(check for _, check in nested_checks):
        return None

    def item_matches(stored: Any) -> bool:
        for keyword, vr, wanted in keys:
            have = as_text(stored.get(keyword, ""))
            have_text = "\\".join(have) if isinstance(have, list) else have
            queries = wanted if isinstance(wanted, list) else [wanted]
            if not any(value_matches(vr, q, have_text, case_insensitive) for q in queries):
                return False
        return all(check is None or check(stored.get(k)) for k, check in nested_checks)

    def check(stored: Any) -> bool:
        return any(item_matches(stored_item) for stored_item in stored or [])

    return check


def answer_items(stored: Any, item: Dataset | None) -> list[Dataset]:
    """A sequence key's answer: every stored item, cut to the keys the query item names
    (an empty query item asks for all of them)."""
    answered = []
    for stored_item in stored or []:
        if item is None or not len(item):
            answered.append(stored_item)
            continue
        cut = Dataset()
        for element in item:
            if element.tag in stored_item:
                cut[element.tag] = stored_item[element.tag]
            else:
                cut.add_new(element.tag, element.VR, None)
        answered.append(cut)
    return answered
