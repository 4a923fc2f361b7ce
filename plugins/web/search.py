"""Study search for the console and the API, by the matching rules of C-FIND.

A search is a STUDY-level query of the Study Root model written as DICOM keywords and
values (``PatientName=DOE*``, ``StudyDate=20260101-20261231``, ``ModalitiesInStudy=CT``).
Each key becomes a condition through the core's matching engine
(``dicombox.core.matching``), the one the Q/R SCP uses: wildcards, ranges, UID lists
and person names component by component, so a search finds what findscu would, with
two differences for people who type: person names match whatever their case (``doe*``
finds DOE^JANE; the Q/R SCP keeps its configured matching), and codes (CS: modality,
sex) are taken in capitals. A key the index does not hold, or a value its VR cannot
have (a date that is no date), is refused with what is allowed, never searched for.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from sqlalchemy import distinct, func, select

from dicombox.core.box import Box
from dicombox.core.index import schema
from dicombox.core.index.attributes import LEVEL_COLUMNS
from dicombox.core.matching import Match, date_time_span, match


@dataclass(frozen=True)
class SearchKey:
    keyword: str
    column: Any
    vr: str


def _keys() -> dict[str, SearchKey]:
    """Every patient- and study-level key the index holds as a column."""
    keys: dict[str, SearchKey] = {}
    for level, table in (("patient", schema.patients), ("study", schema.studies)):
        for column, keyword in LEVEL_COLUMNS[level].items():
            tag = tag_for_keyword(keyword)
            if tag is not None and keyword not in keys:
                keys[keyword] = SearchKey(keyword, table.c[column], dictionary_VR(tag))
    return keys


KEYS = _keys()
MODALITIES = "ModalitiesInStudy"
# What the console's search form offers; the API takes any key of KEYS too.
FORM_KEYS = ("PatientName", "PatientID", "AccessionNumber", "StudyDate", MODALITIES)


class SearchError(ValueError):
    """A key the search does not know, or a value its VR cannot have: ``key``, ``value``
    and what is ``allowed`` say which and why."""

    def __init__(self, message: str, key: str, value: str, allowed: str) -> None:
        super().__init__(message)
        self.key, self.value, self.allowed = key, value, allowed

    def as_dict(self) -> dict[str, str]:
        return {"detail": str(self), "key": self.key, "value": self.value,
                "allowed": self.allowed}  # fmt: skip


_DATE = r"\d{8}"
_TIME = r"\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?)?"
# What a value of each VR may be (the VRs of KEYS that are not free text), and how to
# say so. A range is FROM-TO with either end left out.
VALUE_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "DA": (
        re.compile(rf"{_DATE}|{_DATE}-|-{_DATE}|{_DATE}-{_DATE}"),
        "a date as YYYYMMDD, or a range FROM-TO of them (20260101-20261231; "
        "20260101- from then on, -20261231 until then)",
    ),
    "TM": (
        re.compile(rf"{_TIME}|{_TIME}-|-{_TIME}|{_TIME}-{_TIME}"),
        "a time as HHMM or HHMMSS, or a range FROM-TO of them (0800-1230)",
    ),
    "UI": (
        re.compile(r"[0-9]{1,64}(?:\.[0-9]+)*(?:\\[0-9]{1,64}(?:\.[0-9]+)*)*"),
        "UIDs (digits and dots, at most 64 characters), several separated by \\",
    ),
    "CS": (
        re.compile(r"[A-Z0-9 _*?]{1,16}(?:\\[A-Z0-9 _*?]{1,16})*"),
        "a code of at most 16 letters, digits, spaces or _ (* and ? as wildcards), "
        "several separated by \\",
    ),
    "AS": (re.compile(r"\d{3}[DWMY]"), "an age such as 045Y, 006M, 003W or 012D"),
    "DS": (re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"), "a number"),
}


def checked_value(keyword: str, vr: str, value: str) -> str:
    """``value`` as the search uses it (codes in capitals); SearchError if its VR
    cannot have it."""
    value = value.upper() if vr == "CS" else value
    form = VALUE_FORMS.get(vr)
    if form is None or value == "*":
        return value
    pattern, allowed = form
    valid = pattern.fullmatch(value) is not None
    if valid and vr == "DA":
        valid = all(_is_date(d) for d in value.split("-") if d)
    if valid and vr == "TM":
        valid = all(_is_time(t) for t in value.split("-") if t)
    if valid and vr == "UI":
        valid = all(len(uid) <= 64 for uid in value.split("\\"))
    if not valid:
        raise SearchError(f"{keyword} = {value!r}: expected {allowed}", keyword, value, allowed)
    return value


def _is_date(text: str) -> bool:
    try:
        dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


def _is_time(text: str) -> bool:
    digits = text.replace(":", "").split(".")[0]
    limits = (23, 59, 60)  # 60: a leap second
    parts = [int(digits[n : n + 2]) for n in range(0, len(digits), 2)]
    return all(part <= limit for part, limit in zip(parts, limits, strict=False))


def conditions(query: dict[str, str], case_insensitive: bool) -> list[tuple[str, Match]]:
    """(keyword, match) for each key of ``query`` that narrows the search."""
    found: list[tuple[str, Match]] = []
    for keyword, value in query.items():
        if keyword == MODALITIES:
            value = checked_value(keyword, "CS", value)
            cond = match(schema.series.c.modality, "CS", value.split("\\"))
        elif keyword in KEYS:
            key = KEYS[keyword]
            value = checked_value(keyword, key.vr, value)
            cond = match(key.column, key.vr, value, case_insensitive)
        else:
            allowed = "one of " + ", ".join(sorted([*KEYS, MODALITIES]))
            raise SearchError(
                f"{keyword!r} is not a study search key: {allowed}", keyword, value, allowed
            )
        if cond is not None:
            found.append((keyword, cond))
    dates, times = query.get("StudyDate", ""), query.get("StudyTime", "")
    if "-" in dates and "-" in times:
        # 20060705-20060707 with 1000-1800: one span, not "10 to 18 o'clock each day".
        st = schema.studies
        found = [(k, m) for k, m in found if k not in ("StudyDate", "StudyTime")]
        found.append(("StudyDate", date_time_span(st.c.study_date, st.c.study_time, dates, times)))
    return found


def search_studies(
    box: Box, query: dict[str, str], limit: int = 200, case_insensitive: bool = True
) -> list[dict[str, Any]]:
    """The studies matching ``query`` (keyword -> value), newest study date first. Person
    names match whatever their case unless ``case_insensitive`` is False; SearchError
    for a key or value that cannot be searched for."""
    p, st, se, i = schema.patients, schema.studies, schema.series, schema.instances
    wanted = conditions({k: v for k, v in query.items() if v not in ("", None)}, case_insensitive)
    series_count = select(func.count(se.c.id)).where(se.c.study_pk == st.c.id)

    def of_instances(value: Any) -> Any:
        """``value`` over the study's instances (a kept-both duplicate once)."""
        return (
            select(value)
            .select_from(i.join(se, i.c.series_pk == se.c.id))
            .where(se.c.study_pk == st.c.id, i.c.copy == 0)
            .scalar_subquery()
        )

    modalities = select(func.group_concat(distinct(se.c.modality))).where(se.c.study_pk == st.c.id)
    stmt = (
        select(
            p.c.patient_name,
            p.c.patient_id,
            p.c.patient_birth_date,
            p.c.patient_sex,
            st.c.study_instance_uid,
            st.c.study_date,
            st.c.study_time,
            st.c.study_description,
            st.c.accession_number,
            st.c.referring_physician_name,
            modalities.scalar_subquery().label("modalities"),
            series_count.scalar_subquery().label("series"),
            of_instances(func.count(i.c.id)).label("instances"),
            of_instances(func.coalesce(func.sum(i.c.size), 0)).label("bytes"),
            of_instances(func.max(i.c.received_at)).label("last_received"),
        )
        .select_from(st.join(p, st.c.patient_pk == p.c.id))
        .order_by(st.c.study_date.desc(), st.c.study_time.desc(), st.c.id.desc())
    )
    for keyword, cond in wanted:
        if keyword == MODALITIES:
            stmt = stmt.where(select(se.c.id).where(se.c.study_pk == st.c.id, cond.sql).exists())
        else:
            stmt = stmt.where(cond.sql)
    checks = [(KEYS[k].column.name, m.check) for k, m in wanted if m.check and k in KEYS]
    found: list[dict[str, Any]] = []
    with box.index.engine.connect() as conn:
        for row in conn.execute(stmt).mappings():
            # Person-name wildcards: SQL narrowed by prefix, the check decides per component.
            if all(check(str(row[column] or "")) for column, check in checks):
                found.append(_study(dict(row)))
                if len(found) >= limit:
                    break
    return found


def study_row(box: Box, study_uid: str) -> dict[str, Any] | None:
    """One study as ``search_studies`` describes it, or None (also for what is no UID)."""
    try:
        rows = search_studies(box, {"StudyInstanceUID": study_uid}, limit=1)
    except SearchError:
        return None
    return rows[0] if rows else None


def _study(row: dict[str, Any]) -> dict[str, Any]:
    row["modalities"] = sorted(m for m in str(row["modalities"] or "").split(",") if m)
    row["instances"] = int(row["instances"] or 0)
    row["bytes"] = int(row["bytes"] or 0)
    return row


def series_of(box: Box, study_uid: str) -> list[dict[str, Any]]:
    """The series of a study, each with its instances in Instance Number order and the
    middle one named as its preview."""
    se, st = schema.series, schema.studies
    stmt = (
        select(
            se.c.series_instance_uid,
            se.c.series_number,
            se.c.modality,
            se.c.series_description,
            se.c.body_part_examined,
        )
        .select_from(se.join(st, se.c.study_pk == st.c.id))
        .where(st.c.study_instance_uid == study_uid)
        .order_by(se.c.id)
    )
    with box.index.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    for row in rows:
        uids = [uid for uid, _ in box.index.instances_of([row["series_instance_uid"]])]
        row["instances"] = uids
        row["preview"] = uids[len(uids) // 2] if uids else None
    return sorted(rows, key=lambda r: _number(r["series_number"]))


def first_series(box: Box, study_uid: str) -> str | None:
    """The Series Instance UID of the study's first series (the first to arrive)."""
    se, st = schema.series, schema.studies
    with box.index.engine.connect() as conn:
        return conn.execute(
            select(se.c.series_instance_uid)
            .select_from(se.join(st, se.c.study_pk == st.c.id))
            .where(st.c.study_instance_uid == study_uid)
            .order_by(se.c.id)
            .limit(1)
        ).scalar()


def _number(text: Any) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        return float("inf")
