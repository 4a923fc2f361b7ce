"""Local accounts of the console, in a table of the index database that this plugin owns.

Passwords are hashed with scrypt (memory-hard, in the standard library) under a random
salt per account and compared in constant time. There is no default account and no
default password: the first one is made with ``dicombox web user add``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Column, Engine, Float, MetaData, String, Table, delete, select, update

from dicombox.core.index.engine import write_transaction

ROLES = ("viewer", "operator", "admin")  # each may do what the one before it may, and more
MIN_PASSWORD = 8
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")

# scrypt cost: 16 MiB of memory and some 50 ms per check: cheap for a login, dear for
# whoever tries a dictionary against a stolen database.
SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES = 2**14, 8, 1, 32

metadata = MetaData()

users = Table(
    "web_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password", String(255), nullable=False),  # scrypt$n$r$p$salt$hash (hex)
    Column("created_at", Float, nullable=False),
    Column("last_login", Float, nullable=False, server_default="0"),
)

# Server-side sessions: only a hash of the cookie's value is kept, so reading the
# database does not hand out logins.
sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user", String(64), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

_ensured: set[int] = set()


def ensure_tables(engine: Engine) -> None:
    """Create the console's tables if absent; once per database engine and process."""
    if id(engine) in _ensured:
        return
    with write_transaction(engine) as conn:
        metadata.create_all(conn, checkfirst=True)
    _ensured.add(id(engine))


class AccountError(ValueError):
    """A name, role or password that cannot be used; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: float = 0.0
    last_login: float = 0.0

    def may(self, role: str) -> bool:
        """Does this user's role include ``role``?"""
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed, bytes.fromhex(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=64 << 20
    )


# Checked against when a name is unknown, so that a wrong name takes as long as a
# wrong password and the timing does not tell which names exist.
_DECOY = hash_password(secrets.token_hex(8))


class Accounts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_tables(engine)

    def add(self, name: str, role: str, password: str) -> User:
        if not NAME_PATTERN.fullmatch(name):
            raise AccountError(f"{name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-'")
        check_role(role)
        check_new_password(password)
        if self.get(name) is not None:
            raise AccountError(f"there is a user {name!r} already")
        now = time.time()
        with write_transaction(self.engine) as conn:
            conn.execute(
                users.insert().values(
                    name=name, role=role, password=hash_password(password), created_at=now
                )
            )
        return User(name, role, now)

    def set_password(self, name: str, password: str) -> None:
        check_new_password(password)
        self._require(name)
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(users).where(users.c.name == name).values(password=hash_password(password))
            )
            # A new password ends the sessions the old one opened.
            conn.execute(delete(sessions).where(sessions.c.user == name))

    def remove(self, name: str) -> None:
        self._require(name)
        with write_transaction(self.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.user == name))
            conn.execute(delete(users).where(users.c.name == name))

    def get(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        return _user(row) if row else None

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def count(self) -> int:
        return len(self.list())

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (unknown name or wrong password:
        the caller must not say which)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            check_password(password, _DECOY)
            return None
        if not check_password(password, row.password):
            return None
        with write_transaction(self.engine) as conn:
            conn.execute(update(users).where(users.c.name == name).values(last_login=time.time()))
        return _user(row)

    def _require(self, name: str) -> None:
        if self.get(name) is None:
            raise AccountError(f"there is no user {name!r}")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")


def _user(row: object) -> User:
    return User(row.name, row.role, row.created_at, row.last_login)  # type: ignore[attr-defined]
