"""Login sessions, kept server-side, and the throttle on failed logins.

The browser holds a random session id in an HttpOnly, SameSite=Strict cookie; the
database holds its SHA-256, the user, the expiry and the session's CSRF token, which
every state-changing request made with the cookie must carry.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select

from dicombox.core.index.engine import write_transaction
from dicombox.plugins.web.accounts import Accounts, User, ensure_tables, sessions


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: float


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


class SessionStore:
    def __init__(self, engine: Engine, accounts: Accounts, hours: float) -> None:
        self.engine = engine
        self.accounts = accounts
        self.lifetime_s = hours * 3600
        ensure_tables(engine)

    def open(self, user: User) -> tuple[str, Session]:
        """A new session for ``user``: (the cookie's value, the session)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(user, secrets.token_urlsafe(32), now + self.lifetime_s)
        with write_transaction(self.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at < now))
            conn.execute(
                sessions.insert().values(
                    id_hash=_hash(session_id),
                    user=user.name,
                    csrf=session.csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session of this cookie value; None if unknown, expired, or its user
        is gone (so removing a user logs them out at once, and a changed role counts)."""
        if not session_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sessions).where(sessions.c.id_hash == _hash(session_id))
            ).first()
        if row is None or row.expires_at < time.time():
            return None
        user = self.accounts.get(row.user)
        return Session(user, row.csrf, row.expires_at) if user else None

    def close(self, session_id: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.id_hash == _hash(session_id)))


class LoginThrottle:
    """After ``limit`` failed logins for one name within ``window_s``, that name is
    refused for ``window_s`` (even with the right password), which makes guessing slow
    without locking anyone out for long."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(name, []) if now - t < self.window_s]
        self._failures[name] = times
        return times

    def blocked(self, name: str) -> bool:
        with self._lock:
            return len(self._recent(name, time.monotonic())) >= self.limit

    def failed(self, name: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._recent(name, now).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
