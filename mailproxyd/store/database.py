"""Database handles: one transaction at a time, named queries, driver errors translated once.

``Database`` is synchronous and thread-safe: every ``transaction()`` borrows a connection from a
small pool (sqlite3 connections, or a ``psycopg_pool.ConnectionPool``) for its duration.
``AsyncDatabase`` runs a store function in a worker thread (``trio.to_thread``) inside one
transaction, bounded by a ``CapacityLimiter``, retrying transient lock conflicts.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import msgspec
import trio

from mailproxyd.core.crypto import SecretBox
from mailproxyd.errors import DatabaseUnavailable, MailProxyError, StoreError

from ._queries import queries_for

if TYPE_CHECKING:
    # psycopg is the optional extra mail-proxy[postgresql]: imported where PostgreSQL is used,
    # so a SQLite-only install runs without it.
    import psycopg_pool

Backend = Literal["sqlite", "postgres"]
Params = Mapping[str, Any] | None
P = ParamSpec("P")
T = TypeVar("T")

# How often ``run`` retries a transaction that lost a lock race (SQLITE_BUSY past the busy
# timeout, PostgreSQL serialization failure or deadlock) before giving up.
RETRY_ATTEMPTS = 5
SQLITE_BUSY_TIMEOUT_MS = 10_000
# While PostgreSQL is unreachable, a transaction waits this long for a connection instead of the
# pool's full timeout: the API answers 503 at once (and /health within a second) rather than
# after 10 s per request. The first connection obtained again ends the outage.
PG_OUTAGE_WAIT_SECONDS = 1.0


class TransientConflict(StoreError):
    """The transaction lost a lock race; running it again may succeed."""


def _dict_row_sqlite(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


# Primary SQLite result codes (https://sqlite.org/rescode.html).
_SQLITE_BUSY = {5, 6}  # BUSY, LOCKED
_SQLITE_UNAVAILABLE = {3, 8, 10, 11, 13, 14, 15, 26}  # PERM READONLY IOERR CORRUPT FULL CANTOPEN
# PROTOCOL NOTADB


def translate_sqlite(exc: sqlite3.Error) -> MailProxyError:
    """The mail-proxy error for a sqlite3 exception (by its SQLite result code)."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _SQLITE_BUSY or (primary is None and "database is locked" in text):
        return TransientConflict(f"database is busy: {text}")
    if primary in _SQLITE_UNAVAILABLE:
        return DatabaseUnavailable(f"database unreachable: {text}")
    return StoreError(f"database error: {text}")


def translate_psycopg(exc: Exception) -> MailProxyError:
    """The mail-proxy error for a psycopg / psycopg_pool exception."""
    import psycopg
    import psycopg.errors
    import psycopg_pool

    # A unique violation here is two nodes inserting the same new key at once (e.g. one message
    # id enqueued twice concurrently): the retry sees the other's row and takes the update path.
    if isinstance(
        exc,
        psycopg.errors.SerializationFailure
        | psycopg.errors.DeadlockDetected
        | psycopg.errors.UniqueViolation,
    ):
        return TransientConflict(f"database conflict: {exc}")
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return DatabaseUnavailable(f"database unreachable: {exc}")
    return StoreError(f"database error: {exc}")


_COPY_COLUMNS = re.compile(r"^\s*COPY\s+\w+\s*\(([^)]*)\)\s+FROM\s+STDIN\s*$", re.I | re.S)


@functools.cache
def _copy_columns(name: str, sql: str) -> tuple[str, ...]:
    """The column list of a ``COPY table (a, b, …) FROM STDIN`` statement (text format)."""
    match = _COPY_COLUMNS.match(sql)
    if match is None:
        raise StoreError(f"query {name!r} is not a plain COPY … FROM STDIN")
    return tuple(column.strip() for column in match.group(1).split(","))


def _json_rows(rows: list[Mapping[str, Any]]) -> str:
    return msgspec.json.encode(rows).decode("utf-8")


class Tx:
    """One open transaction: runs named queries and carries the database's ``SecretBox``."""

    def __init__(self, cursor: Any, backend: Backend, box: SecretBox) -> None:
        self._cursor = cursor
        self._queries = queries_for(backend)
        self.backend: Backend = backend
        self.box = box

    def _sql(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise StoreError(f"unknown query {name!r}") from None

    def execute(self, name: str, params: Params = None) -> int:
        """Run a statement; return the number of rows it changed."""
        self._cursor.execute(self._sql(name), params or {})
        return int(self._cursor.rowcount)

    def all(
        self, name: str, params: Params = None, *, plan_each_time: bool = False
    ) -> list[dict[str, Any]]:
        """Run a query; return every row as a dict.

        ``plan_each_time`` (PostgreSQL): never run it as a server-side prepared statement,
        whose generic plan is kept for the connection's life. A plan made while a table was
        young (a seq scan of a few pages) stays in use as the table grows, until the next
        ANALYZE; planned at each execution, the planner sees the table's current size.
        """
        if plan_each_time and self.backend == "postgres":
            self._cursor.execute(self._sql(name), params or {}, prepare=False)
        else:
            self._cursor.execute(self._sql(name), params or {})
        return list(self._cursor.fetchall())

    def one(self, name: str, params: Params = None) -> dict[str, Any] | None:
        """Run a query; return its first row, or None."""
        self._cursor.execute(self._sql(name), params or {})
        # fetchall, not fetchone: an ``UPDATE … RETURNING`` left half-stepped would keep the
        # sqlite3 statement active and make the COMMIT fail.
        rows = self._cursor.fetchall()
        return dict(rows[0]) if rows else None

    def value(self, name: str, params: Params = None) -> Any:
        """Run a query; return the first column of its first row, or None."""
        row = self.one(name, params)
        return next(iter(row.values())) if row else None

    def many(self, name: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run a statement once per parameter set.

        When the backend defines ``<name>_bulk``, that single statement runs instead with every
        parameter set as one JSON array in ``:rows`` (PostgreSQL: ``json_to_recordset``), which
        is several times faster than even a pipelined ``executemany``.
        """
        rows = list(rows)
        if not rows:
            return
        bulk = self._queries.get(f"{name}_bulk")
        if bulk is not None:
            self._cursor.execute(bulk, {"rows": _json_rows(rows)})
        else:
            self._cursor.executemany(self._sql(name), rows)

    def copy(self, name: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Bulk-insert rows with the PostgreSQL ``COPY … FROM STDIN`` statement ``name``.

        Each row is a mapping holding (at least) every column the statement lists, by name.
        No JSON to build and parse, no planning: about a third faster than a ``json_to_recordset``
        INSERT for a 500-message batch. Returns the number of rows written.
        """
        if self.backend != "postgres":
            raise StoreError(f"query {name!r}: COPY needs PostgreSQL")
        sql = self._sql(name)
        columns = _copy_columns(name, sql)
        count = 0
        with self._cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([row[column] for column in columns])
                count += 1
        return count

    def raw(self, sql: str) -> list[dict[str, Any]]:
        """Run literal SQL without parameters (migrations, tests); return its rows, if any."""
        self._cursor.execute(sql)
        return list(self._cursor.fetchall()) if self._cursor.description else []


class _SqlitePool:
    """sqlite3 connections shared between threads, one borrower at a time."""

    def __init__(self, path: str, size: int) -> None:
        self._path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._size = size
        self._closed = False

    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=0
            )
            conn.row_factory = _dict_row_sqlite
            conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: in WAL mode NORMAL may lose the last commits at a power cut, and a message
            # answered 200 must survive one. Throughput comes from fewer, larger commits.
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise translate_sqlite(exc) from exc
        return conn

    def get(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise DatabaseUnavailable("database closed")
            if self._idle:
                return self._idle.pop()
        return self.connect()

    def put(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Database:
    """An open mail-proxy database (SQLite file or PostgreSQL); see ``open_database``."""

    def __init__(
        self,
        backend: Backend,
        box: SecretBox,
        *,
        sqlite_path: str | None = None,
        pg_pool: psycopg_pool.ConnectionPool | None = None,
        pool_size: int = 8,
    ) -> None:
        self.backend: Backend = backend
        self.box = box
        self.sqlite_path = sqlite_path
        self._pg_pool = pg_pool
        self._pg_outage = False
        self._sqlite_pool = _SqlitePool(sqlite_path, pool_size) if sqlite_path else None

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """One transaction: committed when the block ends normally, rolled back otherwise.

        On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` so it takes the write lock
        up front (waiting up to the busy timeout) instead of failing when it first writes.
        """
        if self.backend == "sqlite":
            with self._sqlite_transaction(write) as tx:
                yield tx
        else:
            with self._pg_transaction() as tx:
                yield tx

    @contextlib.contextmanager
    def _sqlite_transaction(self, write: bool) -> Iterator[Tx]:
        assert self._sqlite_pool is not None
        conn = self._sqlite_pool.get()
        healthy = True
        try:
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise translate_sqlite(exc) from exc
            try:
                yield Tx(conn.cursor(), "sqlite", self.box)
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise translate_sqlite(exc) from exc
                raise
        except DatabaseUnavailable:
            healthy = False
            raise
        finally:
            if healthy:
                self._sqlite_pool.put(conn)
            else:
                conn.close()

    @contextlib.contextmanager
    def _pg_transaction(self) -> Iterator[Tx]:
        import psycopg
        import psycopg_pool
        from psycopg.rows import dict_row

        assert self._pg_pool is not None
        wait = PG_OUTAGE_WAIT_SECONDS if self._pg_outage else None
        try:
            with self._pg_pool.connection(timeout=wait) as conn:
                self._pg_outage = False
                with conn.cursor(row_factory=dict_row) as cur:
                    yield Tx(cur, "postgres", self.box)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
                self._pg_outage = True
            raise translate_psycopg(exc) from exc

    def run(self, fn: Callable[..., T], /, *args: Any, write: bool = True, **kwargs: Any) -> T:
        """``fn(tx, *args, **kwargs)`` in one transaction, retried after transient conflicts."""
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                with self.transaction(write=write) as tx:
                    return fn(tx, *args, **kwargs)
            except TransientConflict as exc:
                if attempt == RETRY_ATTEMPTS:
                    raise DatabaseUnavailable(str(exc)) from exc
                # A short, growing pause lets the competing transaction finish.
                time.sleep(0.02 * attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every connection."""
        if self._sqlite_pool is not None:
            self._sqlite_pool.close()
        if self._pg_pool is not None:
            self._pg_pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDatabase:
    """Trio front of a ``Database``: each call is one transaction in a worker thread."""

    def __init__(self, db: Database, limiter_tokens: int = 8) -> None:
        self.db = db
        self.limiter = trio.CapacityLimiter(limiter_tokens)
        # The health check has threads of its own: behind a queue of writes waiting for the
        # SQLite lock, /health took over a second under load although the database was fine.
        self._probe_limiter = trio.CapacityLimiter(2)

    async def run(
        self, fn: Callable[..., T], /, *args: Any, write: bool = True, **kwargs: Any
    ) -> T:
        """Run ``fn(tx, *args, **kwargs)`` in a thread, inside one transaction."""

        def call() -> T:
            return self.db.run(fn, *args, write=write, **kwargs)

        return await trio.to_thread.run_sync(call, limiter=self.limiter)

    async def probe(self, fn: Callable[..., T], /) -> T:
        """``fn(tx)`` in a read-only transaction outside the shared limiter (health checks)."""

        def call() -> T:
            return self.db.run(fn, write=False)

        return await trio.to_thread.run_sync(call, limiter=self._probe_limiter)
