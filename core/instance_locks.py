"""One arrival of a SOP Instance at a time, across the box's threads and processes.

Two copies of one instance may arrive at once: a sender that timed out and sends again
while the first copy is still being taken in, or two modalities with the same object.
Between giving a file its name and committing its index row, the store and the index
disagree; a second copy of the instance looking then would take the first one's file for
a half-written leftover (and replace it), or give a ``keep-both`` copy the same number.
So ingest holds the instance's lock from its name to its row.

The lock is a flock on one of a fixed set of files under ``run/``, picked by the
instance UID's hash. Each use opens the file anew, and flocks on separate opens exclude
each other, threads of one process included."""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUCKETS = 64  # two instances share a lock only by their hash: rare, and only a wait


class InstanceLocks:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"{n:02d}.lock" for n in range(BUCKETS)]

    @contextmanager
    def held(self, sop_instance_uid: str) -> Iterator[None]:
        path = self.paths[zlib.crc32(sop_instance_uid.encode()) % BUCKETS]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # which releases the lock
