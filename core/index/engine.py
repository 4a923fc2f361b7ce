"""Opening the index database, and write transactions that several processes can share."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    select,
)
from sqlalchemy.exc import DBAPIError


def open_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and immediate write locks so
    that several worker processes can share it."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin() below drive transactions
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives any process crash; only a power cut can lose the last
        # commits, and the store (fsynced files) is the truth the index is rebuilt from
        # after an unclean stop (see core/reconcile.py).
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A write takes the lock up front: a deferred transaction that reads and then writes
        # fails at once (SQLITE_BUSY_SNAPSHOT) if another process wrote in between.
        immediate = conn.get_execution_options().get("immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class _WriterLock:
    """Queues a SQLite database's writers in the kernel (flock) and per process (a mutex).

    SQLite's own busy handler sleeps in growing steps (up to 100 ms) while another
    process writes; under several concurrent associations that sleeping, not the work,
    would set the pace. A blocking flock wakes the next writer the moment the lock frees.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._mutex = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._mutex:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


_writer_locks: dict[str, _WriterLock] = {}
_registry_lock = threading.Lock()


def _writer_lock(engine: Engine) -> _WriterLock | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    with _registry_lock:
        lock = _writer_locks.get(database)
        if lock is None:
            lock = _writer_locks[database] = _WriterLock(database + ".writer-lock")
        return lock


# With SQLite a process's writers take turns (the mutex above), so one connection per
# engine serves them all and no pool checkout is paid per write.
_write_connections: weakref.WeakKeyDictionary[Engine, Connection] = weakref.WeakKeyDictionary()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction, holding SQLite's write lock from its start."""
    lock = _writer_lock(engine)
    if lock is None:  # a server database: its own locking, a pooled connection
        with engine.connect() as conn, conn.begin():
            yield conn
        return
    with lock.held(), _write_connection(engine).begin() as transaction:
        yield transaction.connection


def _write_connection(engine: Engine) -> Connection:
    """This process's one connection for writing to a SQLite ``engine`` (held lock)."""
    conn = _write_connections.get(engine)
    if conn is None or conn.closed or conn.invalidated:
        conn = _write_connections[engine] = engine.connect()
        conn.execution_options(immediate=True)
    return conn


def close_engine(engine: Engine) -> None:
    """Close the shared write connection and the pool."""
    conn = _write_connections.pop(engine, None)
    if conn is not None:
        conn.close()
    engine.dispose()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'index.sqlite'}"


_compiled_inserts: dict[tuple[int, str, tuple[str, ...], int], tuple[str, list[str]]] = {}


def insert_row(
    engine: Engine,
    table: Table,
    row: dict[str, Any],
    only_if: ColumnElement[bool] | None = None,
    *,
    with_rows: tuple[Table, Sequence[dict[str, Any]]] | None = None,
    **only_if_values: Any,
) -> bool:
    """INSERT one row in a write transaction of its own; with ``only_if`` (a condition
    on other tables, its bound values by name in ``only_if_values``) only when it holds,
    in the same statement; with ``with_rows`` (a table and rows, all with the same keys),
    those rows too, in the same transaction, if the row went in. Returns whether the row
    went in.

    Every received instance ends in one such transaction. On SQLite it goes straight to
    the driver, with the statements compiled once: SQLAlchemy's begin, execute and
    commit cost several times SQLite's own work, and it runs inside the writer lock,
    which the other associations wait on. Errors are SQLAlchemy's, as on the general
    path."""
    keys = tuple(row)
    statement = _insert_statement(table, keys, only_if)
    values = {**row, **only_if_values}
    also_table, also_rows = with_rows if with_rows else (None, ())
    lock = _writer_lock(engine)
    if lock is None:  # a server database: the general path
        with write_transaction(engine) as conn:
            inserted = int(conn.execute(statement, values).rowcount or 0) == 1
            if inserted and also_table is not None and also_rows:
                conn.execute(also_table.insert(), list(also_rows))
            return inserted
    sql, names = _compiled(engine, table, keys, only_if, statement)
    also: tuple[str, list[str]] | None = None
    if also_table is not None and also_rows:
        also_keys = tuple(also_rows[0])
        also = _compiled(engine, also_table, also_keys, None, also_table.insert())
    with lock.held():
        driver = _write_connection(engine).connection.driver_connection
        try:
            driver.execute("BEGIN IMMEDIATE")
            try:
                inserted = driver.execute(sql, [values[name] for name in names]).rowcount
                if inserted == 1 and also is not None:
                    also_sql, also_names = also
                    driver.executemany(also_sql, [[r[n] for n in also_names] for r in also_rows])
                driver.execute("COMMIT")
            except BaseException:
                if driver.in_transaction:
                    driver.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            dialect = engine.dialect
            raise DBAPIError.instance(sql, None, exc, sqlite3.Error, dialect=dialect) from exc
    return inserted == 1


def _compiled(
    engine: Engine,
    table: Table,
    keys: tuple[str, ...],
    only_if: ColumnElement[bool] | None,
    statement: Any,
) -> tuple[str, list[str]]:
    """``statement`` (an INSERT of ``keys`` into ``table``) as the SQLite driver takes
    it, and the order of its parameters; compiled once."""
    cache_key = (id(engine), table.name, keys, id(only_if))
    compiled = _compiled_inserts.get(cache_key)
    if compiled is None:
        done = statement.compile(dialect=engine.dialect, column_keys=list(keys))
        compiled = _compiled_inserts[cache_key] = (str(done), list(done.positiontup or ()))
    return compiled


def _insert_statement(
    table: Table, keys: tuple[str, ...], only_if: ColumnElement[bool] | None
) -> Any:
    if only_if is None:
        return table.insert()
    # INSERT … SELECT :a, :b … WHERE <condition>: one statement, one round trip.
    values = select(*[bindparam(k, type_=table.c[k].type) for k in keys]).where(only_if)
    return table.insert().from_select(list(keys), values)
