"""StudyIndex: what is stored, by patient, study, series and instance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import Engine, bindparam, delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from dicombox.core.header import value_of
from dicombox.core.index import schema
from dicombox.core.index.attributes import INDEXED_TAGS, level_values
from dicombox.core.index.engine import insert_row, write_transaction
from dicombox.core.index.migrations import migrate


@dataclass(frozen=True)
class StoredInstance:
    """What the index learned about one stored file."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    path: str
    copy: int
    calling_ae: str = ""


class StudyIndex:
    # The top-level elements ``add_instance`` reads: all a header scan needs to keep.
    header_tags = INDEXED_TAGS

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.version = migrate(engine)
        self._series_pk: dict[str, int] = {}  # series UID -> row id, for this process
        self._insert_instance = schema.instances.insert()
        # The hot path's INSERT goes in only while the remembered series row is still
        # that series: the watermark may have removed it (in another process), and
        # SQLite may give its id to the next new series.
        series = schema.series
        self._in_remembered_series = (
            select(series.c.id)
            .where(
                series.c.id == bindparam("guard_series_pk"),
                series.c.series_instance_uid == bindparam("guard_series_uid"),
            )
            .exists()
        )

    # ------------------------------------------------------------------ writing
    def add_instance(
        self,
        ds: Dataset,
        *,
        path: str,
        size: int,
        transfer_syntax_uid: str,
        calling_ae: str,
        replace: bool = False,
        copy: int = 0,
        outbox: Sequence[dict[str, Any]] = (),
    ) -> StoredInstance:
        """Record one stored instance and the patient/study/series it belongs to, in one
        transaction, with its route jobs (``outbox`` rows: see core/outbox.py).
        ``replace`` overwrites the row of an existing instance."""
        now = time.time()
        series_uid = value_of(ds, "SeriesInstanceUID")
        row = level_values(ds, "instance") | {
            "path": path,
            "size": size,
            "copy": copy,
            "calling_ae": calling_ae,
            "transfer_syntax_uid": transfer_syntax_uid,
            "availability": "ONLINE",
            "received_at": now,
        }
        t = schema.instances
        for attempt in range(3):
            # Most instances join a series already known to this process: one INSERT then.
            series_pk = self._series_pk.get(series_uid)
            try:
                if series_pk is not None and not replace:  # the hot path: one INSERT
                    if insert_row(
                        self.engine,
                        t,
                        {**row, "series_pk": series_pk},
                        self._in_remembered_series,
                        with_rows=(schema.outbox, outbox) if outbox else None,
                        guard_series_pk=series_pk,
                        guard_series_uid=series_uid,
                    ):
                        break
                    self._series_pk.pop(series_uid, None)  # gone: look it up again
                    continue
                with write_transaction(self.engine) as conn:
                    if series_pk is None:
                        series_pk = self._ensure_parents(conn, ds, now)
                    if replace:
                        conn.execute(
                            t.delete().where(
                                t.c.sop_instance_uid == row["sop_instance_uid"], t.c.copy == copy
                            )
                        )
                    conn.execute(self._insert_instance, {**row, "series_pk": series_pk})
                    if outbox:
                        conn.execute(schema.outbox.insert(), list(outbox))
                break
            except IntegrityError:
                # A series row this process remembered is gone, or another writer (a
                # PostgreSQL index shared by boxes) made the same parent row first: look
                # again.
                self._series_pk.pop(series_uid, None)
                if attempt == 2:
                    raise
        else:  # every attempt found its remembered series gone: cannot happen twice
            raise RuntimeError(f"no row written for instance {row['sop_instance_uid']}")
        self._series_pk[series_uid] = series_pk
        if len(self._series_pk) > 10000:
            self._series_pk.clear()
        return StoredInstance(
            row["sop_instance_uid"],
            row["sop_class_uid"],
            value_of(ds, "StudyInstanceUID"),
            series_uid,
            path,
            copy,
            calling_ae,
        )

    def _ensure_parents(self, conn: Any, ds: Dataset, now: float) -> int:
        patient_pk = self._ensure(
            conn,
            schema.patients,
            level_values(ds, "patient"),
            ("patient_id", "issuer_of_patient_id", "patient_name"),
            {},
            now,
        )
        study_pk = self._ensure(
            conn,
            schema.studies,
            level_values(ds, "study"),
            ("study_instance_uid",),
            {"patient_pk": patient_pk},
            now,
        )
        return self._ensure(
            conn,
            schema.series,
            level_values(ds, "series"),
            ("series_instance_uid",),
            {"study_pk": study_pk},
            now,
        )

    @staticmethod
    def _ensure(
        conn: Any,
        table: Any,
        values: dict[str, Any],
        keys: tuple[str, ...],
        parent: dict[str, int],
        now: float,
    ) -> int:
        where = [table.c[k] == values[k] for k in keys]
        found = conn.execute(select(table.c.id).where(*where)).scalar()
        if found is not None:
            return int(found)
        result = conn.execute(table.insert().values(**values, **parent, created_at=now))
        return int(result.inserted_primary_key[0])

    # ------------------------------------------------------------------ reading
    def copies_of(self, sop_instance_uid: str) -> int:
        """How many copies of this instance are stored (0: it is new)."""
        t = schema.instances
        with self.engine.connect() as conn:
            found = conn.execute(
                select(func.count()).where(t.c.sop_instance_uid == sop_instance_uid)
            ).scalar()
        return int(found or 0)

    def known_paths(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(schema.instances.c.path)).scalars())

    def studies(self) -> list[dict[str, Any]]:
        """Every study with its patient, modalities and counts, newest first."""
        p, st, se, i = schema.patients, schema.studies, schema.series, schema.instances
        query = (
            select(
                p.c.patient_name,
                p.c.patient_id,
                st.c.study_instance_uid,
                st.c.study_date,
                st.c.study_time,
                st.c.study_description,
                st.c.accession_number,
                func.count(func.distinct(se.c.id)).label("series"),
                func.count(i.c.id).label("instances"),
                func.coalesce(func.sum(i.c.size), 0).label("bytes"),
                func.max(i.c.received_at).label("last_received"),
            )
            .select_from(
                st.join(p, st.c.patient_pk == p.c.id)
                .join(se, se.c.study_pk == st.c.id)
                .join(i, i.c.series_pk == se.c.id)
            )
            .group_by(st.c.id, p.c.id)
            .order_by(func.max(i.c.received_at).desc())
        )
        modalities = select(se.c.study_pk, se.c.modality).distinct()
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            by_study: dict[int, set[str]] = {}
            uid_pk = dict(conn.execute(select(st.c.study_instance_uid, st.c.id)).all())
            for pk, modality in conn.execute(modalities):
                by_study.setdefault(pk, set()).add(modality)
        for row in rows:
            row["modalities"] = "\\".join(
                sorted(by_study.get(uid_pk[row["study_instance_uid"]], ()))
            )
        return rows

    def instance_rows(self, **where: str) -> list[dict[str, Any]]:
        t = schema.instances
        query = select(t).where(*[t.c[k] == v for k, v in where.items()]).order_by(t.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def study_instances(self, study_uids: list[str]) -> list[tuple[str, str]]:
        """(SOP Instance UID, path in the store) of every instance of these studies, in
        study, series and arrival order; a kept-both duplicate once."""
        i, se, st = schema.instances, schema.series, schema.studies
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(i.c.sop_instance_uid, i.c.path)
                .select_from(
                    i.join(se, i.c.series_pk == se.c.id).join(st, se.c.study_pk == st.c.id)
                )
                .where(st.c.study_instance_uid.in_(study_uids), i.c.copy == 0)
                .order_by(st.c.id, se.c.id, i.c.id)
            ).all()
        return [(r.sop_instance_uid, r.path) for r in rows]

    def instances_of(self, uids: list[str]) -> list[tuple[str, str]]:
        """(SOP Instance UID, path in the store) of what each of ``uids`` names, be it a
        study, a series or an instance: in the order given, each series in Instance
        Number order, each instance once."""
        i, se, st = schema.instances, schema.series, schema.studies
        query = (
            select(
                i.c.sop_instance_uid,
                i.c.path,
                i.c.instance_number,
                st.c.study_instance_uid,
                se.c.series_instance_uid,
                se.c.id.label("series_pk"),
            )
            .select_from(i.join(se, i.c.series_pk == se.c.id).join(st, se.c.study_pk == st.c.id))
            .where(
                i.c.copy == 0,
                or_(
                    st.c.study_instance_uid.in_(uids),
                    se.c.series_instance_uid.in_(uids),
                    i.c.sop_instance_uid.in_(uids),
                ),
            )
            .order_by(st.c.id, se.c.id, i.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        order = {uid: n for n, uid in reversed(list(enumerate(uids)))}

        def place(row: Any) -> tuple[int, int, float]:
            asked = min(
                order.get(row.study_instance_uid, len(uids)),
                order.get(row.series_instance_uid, len(uids)),
                order.get(row.sop_instance_uid, len(uids)),
            )
            number = str(row.instance_number or "").strip()
            return asked, row.series_pk, float(number) if _is_number(number) else float("inf")

        seen: set[str] = set()
        found = []
        for row in sorted(rows, key=place):
            if row.sop_instance_uid not in seen:
                seen.add(row.sop_instance_uid)
                found.append((row.sop_instance_uid, row.path))
        return found

    def remove_instances(self, sop_instance_uids: list[str]) -> int:
        """Forget these instances (every copy), and series, studies and patients left
        empty by it. The caller removes the files."""
        i, se, st, p = schema.instances, schema.series, schema.studies, schema.patients
        removed = 0
        with write_transaction(self.engine) as conn:
            for start in range(0, len(sop_instance_uids), 500):
                chunk = sop_instance_uids[start : start + 500]
                removed += conn.execute(delete(i).where(i.c.sop_instance_uid.in_(chunk))).rowcount
            conn.execute(delete(se).where(~select(i.c.id).where(i.c.series_pk == se.c.id).exists()))
            conn.execute(
                delete(st).where(~select(se.c.id).where(se.c.study_pk == st.c.id).exists())
            )
            conn.execute(
                delete(p).where(~select(st.c.id).where(st.c.patient_pk == p.c.id).exists())
            )
        self._series_pk.clear()
        return int(removed)

    def totals(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
                for name, table in (
                    ("patients", schema.patients),
                    ("studies", schema.studies),
                    ("series", schema.series),
                    ("instances", schema.instances),
                )
            }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
