"""Opening databases: URLs, file modes, SQLite settings, refusal of newer schemas."""

from __future__ import annotations

import os
import stat

import psycopg
import pytest

from mailproxyd.core.crypto import SecretBox
from mailproxyd.errors import ConfigError, DatabaseUnavailable, StartRefused, StoreError
from mailproxyd.store import Database, meta, open_database, parse_url
from mailproxyd.store.migrate import load_migrations


def test_parse_url_forms(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "x.db")
    assert parse_url(path) == ("sqlite", path)
    assert parse_url(f"sqlite:{path}") == ("sqlite", path)
    assert parse_url(f"sqlite://{path}") == ("sqlite", path)
    assert parse_url("postgresql://u@h/db") == ("postgres", "postgresql://u@h/db")
    assert parse_url("postgres://u@h/db") == ("postgres", "postgres://u@h/db")


@pytest.mark.parametrize("url", [":memory:", "sqlite::memory:", "file::memory:?cache=shared", ""])
def test_memory_database_refused(url: str, secret_box: SecretBox) -> None:
    with pytest.raises(ConfigError):
        open_database(url, box=secret_box)


def test_sqlite_files_are_private_and_configured(
    tmp_path: os.PathLike[str], secret_box: SecretBox
) -> None:
    path = os.path.join(tmp_path, "mail_service.db")
    old_umask = os.umask(0o022)  # a permissive umask must not leak into the files' modes
    try:
        db = open_database(f"sqlite:{path}", box=secret_box)
        try:
            with db.transaction() as tx:
                meta.set_scheduler_active(tx, True)
            # Keep a transaction open so the -wal and -shm files exist while we look.
            with db.transaction(write=False) as tx:
                assert meta.get_scheduler_active(tx) is True
                for suffix in ("", "-wal", "-shm"):
                    mode = stat.S_IMODE(os.stat(path + suffix).st_mode)
                    assert mode == 0o600, (suffix, oct(mode))
            with db.transaction(write=False) as tx:
                assert tx.raw("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
                assert tx.raw("PRAGMA foreign_keys") == [{"foreign_keys": 1}]
                assert tx.raw("PRAGMA busy_timeout")[0]["timeout"] >= 5000
                # FULL (2): every commit is on disk before it returns, even in WAL mode.
                assert tx.raw("PRAGMA synchronous") == [{"synchronous": 2}]
        finally:
            db.close()
    finally:
        os.umask(old_umask)


def test_sqlite_create_false_needs_existing_database(
    tmp_path: os.PathLike[str], secret_box: SecretBox
) -> None:
    path = os.path.join(tmp_path, "absent.db")
    with pytest.raises(StoreError):
        open_database(path, box=secret_box, create=False)
    assert not os.path.exists(path)


def test_sqlite_unreachable_directory(tmp_path: os.PathLike[str], secret_box: SecretBox) -> None:
    with pytest.raises(DatabaseUnavailable):
        open_database(os.path.join(tmp_path, "missing", "x.db"), box=secret_box)


def test_postgres_unreachable(secret_box: SecretBox) -> None:
    with pytest.raises(DatabaseUnavailable):
        open_database(
            "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1",
            box=secret_box,
            connect_timeout=1.0,
        )


def test_new_database_is_at_latest_version_and_inactive(database: Database) -> None:
    with database.transaction(write=False) as tx:
        assert meta.schema_version(tx) == load_migrations(database.backend).latest
        assert meta.get_scheduler_active(tx) is False


def test_reopen_keeps_data(db_url: str, secret_box: SecretBox) -> None:
    with open_database(db_url, box=secret_box) as db, db.transaction() as tx:
        meta.set_key_fingerprint(tx, "0123456789abcdef")
    with open_database(db_url, box=secret_box) as db, db.transaction() as tx:
        assert meta.get_key_fingerprint(tx) == "0123456789abcdef"


def _set_version(db_url: str, version: int) -> None:
    if db_url.startswith("sqlite:"):
        import sqlite3

        lite = sqlite3.connect(db_url[len("sqlite:") :])
        with lite:
            lite.execute("UPDATE schema_version SET version = ?", (version,))
        lite.close()
    else:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = %s", (version,))


def test_newer_schema_refused(db_url: str, secret_box: SecretBox) -> None:
    open_database(db_url, box=secret_box).close()
    supported = load_migrations(parse_url(db_url)[0]).latest
    _set_version(db_url, 99)
    try:
        with pytest.raises(StartRefused) as info:
            open_database(db_url, box=secret_box)
        assert info.value.message == (
            f"database schema version 99 is newer than this mail-proxy supports ({supported})"
        )
    finally:
        _set_version(db_url, supported)


def test_driver_errors_are_translated(database: Database) -> None:
    with pytest.raises(StoreError) as info, database.transaction() as tx:
        tx.raw("SELECT no_such_column FROM meta")
    assert type(info.value) is StoreError
    assert "no_such_column" in info.value.message
