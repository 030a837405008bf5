"""The store: the only code that speaks SQL (SQLite through ``sqlite3``, PostgreSQL through
``psycopg``).

``open_database(url, box=...)`` opens and migrates a database and returns a ``Database``; the
store functions in ``meta``, ``tenants``, ``accounts``, ``queue``, ``events``, ``ratelimit``,
``sessions``, ``sync``, ``commandlog``, ``retention`` and ``bounces`` each take an open ``Tx`` first and run
inside the caller's transaction (``db.transaction()``, ``db.run(fn, ...)`` or
``await AsyncDatabase(db).run(fn, ...)``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from mailproxyd.core.crypto import SecretBox
from mailproxyd.errors import ConfigError, DatabaseUnavailable, StoreError

from .database import AsyncDatabase, Backend, Database, Tx, translate_psycopg, translate_sqlite
from .migrate import MigrationSet, load_migrations, migrate

__all__ = ["AsyncDatabase", "Database", "Tx", "open_database", "parse_url"]


def parse_url(url: str) -> tuple[Backend, str]:
    """``("sqlite", absolute path)`` or ``("postgres", conninfo URL)`` for a database location.

    Accepted: ``postgresql://…``, ``postgres://…``, ``sqlite:<path>`` (also ``sqlite://<path>``)
    and a bare file path. In-memory SQLite is refused: every worker process must see the same data.
    """
    text = url.strip()
    if text.startswith(("postgresql://", "postgres://")):
        return "postgres", text
    path = text
    if path.startswith("sqlite:"):
        path = path[len("sqlite:") :]
        if path.startswith("//"):
            path = path[2:]
    if not path:
        raise ConfigError(f'database "{url}" is refused: give a file path or a PostgreSQL URL')
    if ":memory:" in path or "mode=memory" in path:
        raise ConfigError(
            f'database "{url}" is refused: an in-memory database cannot be shared by the '
            "worker processes; give a file path or a PostgreSQL URL"
        )
    return "sqlite", str(Path(path).expanduser().absolute())


def open_database(
    url: str,
    *,
    box: SecretBox,
    create: bool = True,
    pool_size: int = 8,
    connect_timeout: float = 10.0,
    migrations: MigrationSet | None = None,
) -> Database:
    """Open the database at ``url``, creating or migrating its schema under a lock.

    Raises ``ConfigError`` for ``:memory:``, ``StartRefused`` for a newer schema,
    ``DatabaseUnavailable`` when it cannot be reached, ``StoreError`` when ``create`` is false
    and there is no database/schema yet. ``connect_timeout`` bounds the wait for PostgreSQL
    (the caller retries at start, reference §2.6). ``migrations`` replaces the packaged set (tests).
    """
    backend, target = parse_url(url)
    if backend == "sqlite":
        db = _open_sqlite(target, box, create, pool_size)
    else:
        db = _open_postgres(target, box, pool_size, connect_timeout)
    try:
        chosen = migrations if migrations is not None else load_migrations(backend)
        db.run(migrate, chosen, create=create)
    except BaseException:
        db.close()
        raise
    return db


def _open_sqlite(path: str, box: SecretBox, create: bool, pool_size: int) -> Database:
    if not os.path.exists(path):
        if not create:
            raise StoreError(f"database {path} does not exist")
        try:
            # Created 0600 before sqlite opens it; sqlite gives the -wal and -shm files it creates
            # later the permissions of the main file, so every file stays private.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise DatabaseUnavailable(f"database unreachable: cannot create {path}: {exc}") from exc
    db = Database("sqlite", box, sqlite_path=path, pool_size=pool_size)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            # WAL is a property of the file; switching needs no open transaction.
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise translate_sqlite(exc) from exc
    return db


#: Said when a PostgreSQL URL is configured on an install without the ``postgresql`` extra.
POSTGRES_MISSING = (
    "PostgreSQL support is not installed: install mail-proxy[postgresql] "
    "(pip install 'mail-proxy[postgresql]')"
)


def _open_postgres(
    conninfo: str, box: SecretBox, pool_size: int, connect_timeout: float
) -> Database:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise ConfigError(POSTGRES_MISSING) from exc
    try:
        pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": False},
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=connect_timeout,
            open=False,
            name="mail-proxy",
        )
    except psycopg.Error as exc:
        raise translate_psycopg(exc) from exc
    try:
        pool.open(wait=True, timeout=connect_timeout)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        pool.close()
        raise translate_psycopg(exc) from exc
    return Database("postgres", box, pg_pool=pool, pool_size=pool_size)
