"""The supervisor's recent log records, kept in memory for the console's log page.

Records still go where they went (standard error, the journal); this handler only
keeps a copy of the last few hundred. Network workers log in their own processes and
are not seen here: the journal has them.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any


class LogBuffer(logging.Handler):
    def __init__(self, capacity: int = 500, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {
                "time": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        except Exception:  # a record whose message cannot be formatted
            return
        with self._guard:
            self._records.append(entry)

    def records(self, limit: int = 200, level: str = "") -> list[dict[str, Any]]:
        """The newest ``limit`` records (newest first), at ``level`` or above."""
        floor = logging.getLevelName(level.upper()) if level else 0
        floor = floor if isinstance(floor, int) else 0
        with self._guard:
            found = [r for r in self._records if logging.getLevelName(r["level"]) >= floor]
        return list(reversed(found))[:limit]

    def attach(self) -> None:
        logging.getLogger().addHandler(self)

    def detach(self) -> None:
        logging.getLogger().removeHandler(self)
