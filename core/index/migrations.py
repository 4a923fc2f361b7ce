"""Schema migrations: an ordered list of steps, each applied once and recorded.

A new column or table is a new step appended here; steps never change once released,
so a box updated in the field brings its index forward on start.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, inspect, select

from dicombox.core.index import schema
from dicombox.core.index.engine import write_transaction


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(conn)


def _v2_deliveries(conn: Connection) -> None:
    schema.deliveries.create(conn, checkfirst=True)


def _v3_outbox(conn: Connection) -> None:
    schema.outbox.create(conn, checkfirst=True)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial, _v2_deliveries, _v3_outbox]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return (
        conn.execute(
            select(schema.schema_version.c.version)
            .order_by(schema.schema_version.c.version.desc())
            .limit(1)
        ).scalar()
        or 0
    )


def migrate(engine: Engine) -> int:
    """Bring the schema to the newest version; returns the version reached."""
    with write_transaction(engine) as conn:
        version = current_version(conn)
        for number, step in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            step(conn)
            conn.execute(
                schema.schema_version.insert().values(version=number, applied_at=time.time())
            )
            version = number
    return version
