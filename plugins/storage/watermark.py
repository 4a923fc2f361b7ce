"""The watermark policy (off by default): when the store holds more than
``watermark_mb``, delete instances that every remote they were forwarded to has
committed, oldest first, down to ``watermark_low_mb``. Nothing else is ever deleted:
an instance never forwarded, or forwarded but not (yet) committed, stays."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import case, func, select

from dicombox.core.box import Box
from dicombox.core.index import schema

log = logging.getLogger("dicombox.watermark")

MB = 1 << 20


def stored_bytes(box: Box) -> int:
    with box.index.engine.connect() as conn:
        return int(
            conn.execute(select(func.coalesce(func.sum(schema.instances.c.size), 0))).scalar()
        )


def _deletable(box: Box, limit: int) -> list[tuple[str, str, int]]:
    """(uid, path, size) of committed instances, oldest first."""
    i, d = schema.instances, schema.deliveries
    committed_everywhere = (
        select(d.c.sop_instance_uid)
        .group_by(d.c.sop_instance_uid)
        .having(func.sum(case((d.c.state == "committed", 0), else_=1)) == 0)
    )
    with box.index.engine.connect() as conn:
        rows = conn.execute(
            select(i.c.sop_instance_uid, i.c.path, i.c.size)
            .where(i.c.sop_instance_uid.in_(committed_everywhere))
            .order_by(i.c.received_at)
            .limit(limit)
        ).all()
    return [(r.sop_instance_uid, r.path, r.size) for r in rows]


def enforce(box: Box) -> int:
    """Delete down to the low mark; returns how many instances went."""
    settings = box.config.storage
    if not settings.watermark_mb:
        return 0
    used = stored_bytes(box)
    if used <= settings.watermark_mb * MB:
        return 0
    target = (settings.watermark_low_mb or settings.watermark_mb * 0.9) * MB
    deleted = 0
    while used > target:
        batch = _deletable(box, 200)
        if not batch:
            log.warning(
                "store holds %d MB, over the %g MB watermark, but nothing more is committed",
                used // MB,
                settings.watermark_mb,
            )
            break
        chosen = []
        for uid, path, size in batch:
            if used <= target:
                break
            chosen.append((uid, path))
            used -= size
        # The index first: a file without a row is found again by reindexing, a row
        # without its file would be answered for but could not be sent.
        box.index.remove_instances([uid for uid, _ in chosen])
        for uid, path in chosen:
            box.store.path(path).unlink(missing_ok=True)
            box.bus.publish("instance.deleted", sop_instance_uid=uid, reason="watermark")
        deleted += len(chosen)
    if deleted:
        log.info("watermark: deleted %d committed instances", deleted)
    return deleted


def start_watch(box: Box) -> threading.Event:
    """Check every ``watermark_check_s`` in the supervisor; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(box.config.storage.watermark_check_s):
            try:
                enforce(box)
            except Exception:
                log.exception("watermark check failed")

    if box.config.storage.watermark_mb:
        threading.Thread(target=loop, name="watermark", daemon=True).start()
    return stop
