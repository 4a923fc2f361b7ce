"""Recording a forward's deliveries while the association runs, not once it ends: a box
killed midway then sends only what the remote had not yet acknowledged.

Acknowledged instances are written to the index (``deliveries``) and announced
(``forward.done``) in batches: every ``RECORD_EVERY`` instances, or at the first
acknowledgement ``RECORD_WITHIN_S`` after the batch began, one transaction each, and
whatever is left when the delivery ends. A kill therefore re-sends at most one batch.
"""

from __future__ import annotations

import time

from dicombox.core.box import Box
from dicombox.core.index.deliveries import record_deliveries
from dicombox.core.net.sending import StoredFile

RECORD_EVERY = 50  # instances per index write
RECORD_WITHIN_S = 0.5  # an acknowledgement waits about this long at most to be recorded


class DeliveryRecorder:
    """Takes each item the remote acknowledged (``add``), records them in batches.

    ``origin`` maps a frame sent in place of a stored instance (split_enhanced) to that
    instance, which counts as delivered once all of its frames were."""

    def __init__(self, box: Box, remote: str, origin: dict[str, StoredFile]) -> None:
        self.box = box
        self.remote = remote
        self.origin = origin
        self._frames_left: dict[str, int] = {}
        for original in origin.values():
            uid = original.sop_instance_uid
            self._frames_left[uid] = self._frames_left.get(uid, 0) + 1
        self._pending: list[StoredFile] = []
        self._since = 0.0

    def add(self, item: StoredFile) -> None:
        original = self.origin.get(item.sop_instance_uid)
        if original is not None:  # a frame: its instance is delivered with its last frame
            uid = original.sop_instance_uid
            self._frames_left[uid] -= 1
            if self._frames_left[uid]:
                return
            item = original
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(item)
        if len(self._pending) >= RECORD_EVERY or time.monotonic() - self._since >= RECORD_WITHIN_S:
            self.flush()

    def flush(self) -> None:
        """Record and announce what was acknowledged since the last flush."""
        if not self._pending:
            return
        batch = self._pending
        record_deliveries(
            self.box.index.engine, self.remote, [i.sop_instance_uid for i in batch], "delivered"
        )
        self._pending = []  # only once recorded: a failed write is tried again at the end
        self.box.bus.publish(  # the commitment plugin asks about them; audited
            "forward.done",
            remote=self.remote,
            instances=[[i.sop_class_uid, i.sop_instance_uid] for i in batch],
        )
