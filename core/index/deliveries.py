"""What became of each instance at each destination (``deliveries``): forwarded to a
remote, committed by it, burned to media. Shared by the plugins that send things out."""

from __future__ import annotations

import time

from sqlalchemy import Engine, delete, insert

from dicombox.core.index import schema
from dicombox.core.index.engine import write_transaction


def record_deliveries(engine: Engine, remote: str, uids: list[str], state: str) -> None:
    """These instances reached ``remote`` now (any earlier record for them is replaced)."""
    d = schema.deliveries
    now = time.time()
    with write_transaction(engine) as conn:
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            conn.execute(delete(d).where(d.c.remote == remote, d.c.sop_instance_uid.in_(chunk)))
            conn.execute(
                insert(d),
                [
                    {"sop_instance_uid": u, "remote": remote, "state": state, "updated_at": now}
                    for u in chunk
                ],
            )
