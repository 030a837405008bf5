"""Migrations build exactly ``schema.<backend>.sql``, and an older database is upgraded."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailproxyd.core.crypto import SecretBox
from mailproxyd.store import open_database
from mailproxyd.store.database import Database
from mailproxyd.store.migrate import apply_migrations, load_migrations, migrate


def _sqlite_schema(path: str) -> dict[str, Any]:
    """Tables (columns, foreign keys), indexes (columns, uniqueness, partial predicate)."""
    conn = sqlite3.connect(path)
    try:
        shape: dict[str, Any] = {}
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        for kind, name, table, sql in objects:
            if kind == "table":
                shape[f"table {name}"] = {
                    "columns": conn.execute(f"PRAGMA table_xinfo({name})").fetchall(),
                    "foreign_keys": conn.execute(f"PRAGMA foreign_key_list({name})").fetchall(),
                    "indexes": sorted(conn.execute(f"PRAGMA index_list({name})").fetchall()),
                }
            elif kind == "index":
                where = re.search(r"\bWHERE\b(.*)$", sql or "", re.S | re.I)
                shape[f"index {name}"] = {
                    "table": table,
                    "columns": conn.execute(f"PRAGMA index_xinfo({name})").fetchall(),
                    "where": " ".join(where.group(1).split()) if where else None,
                }
            else:
                shape[f"{kind} {name}"] = " ".join((sql or "").split())
        return shape
    finally:
        conn.close()


def _pg_schema(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, "
            "is_identity, identity_generation, ordinal_position FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "ORDER BY indexname"
        ).fetchall()
        constraints = conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = 'public' ORDER BY 1, 2"
        ).fetchall()
        sequences = conn.execute(
            "SELECT sequence_name, data_type, start_value, increment FROM "
            "information_schema.sequences WHERE sequence_schema = 'public' ORDER BY 1"
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal "
            "ORDER BY 1"
        ).fetchall()
        functions = conn.execute(
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1"
        ).fetchall()
    return {
        "columns": columns,
        "indexes": indexes,
        "constraints": constraints,
        "sequences": sequences,
        "triggers": triggers,
        "functions": functions,
    }


def _empty_database(
    backend: str, tmp_path: Path, name: str, pg_database_factory: Callable[[], str]
) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / name}"
    return pg_database_factory()


def _schema_of(url: str) -> dict[str, Any]:
    return _sqlite_schema(url[len("sqlite:") :]) if url.startswith("sqlite:") else _pg_schema(url)


def _run(url: str, box: SecretBox, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(tx, ...)`` in a transaction on a database opened without running any migration."""
    backend = "sqlite" if url.startswith("sqlite:") else "postgres"
    if backend == "sqlite":
        path = url[len("sqlite:") :]
        sqlite3.connect(path).close()
        db = Database("sqlite", box, sqlite_path=path)
    else:
        import psycopg_pool

        pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=1, open=True)
        db = Database("postgres", box, pg_pool=pool)
    try:
        return db.run(fn, *args, **kwargs)
    finally:
        db.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_migrations_build_exactly_the_schema(
    backend: str,
    tmp_path: Path,
    secret_box: SecretBox,
    pg_database_factory: Callable[[], str],
) -> None:
    migrations = load_migrations(backend)  # type: ignore[arg-type]
    assert migrations.latest >= 1
    from_schema = _empty_database(backend, tmp_path, "schema.db", pg_database_factory)
    from_migrations = _empty_database(backend, tmp_path, "migrations.db", pg_database_factory)
    open_database(from_schema, box=secret_box).close()
    assert _run(from_migrations, secret_box, apply_migrations, migrations) == migrations.latest
    built = _schema_of(from_migrations)
    assert built == _schema_of(from_schema)
    tables = (
        {key for key in built if key.startswith("table ")}
        if backend == "sqlite"
        else {f"table {column[0]}" for column in built["columns"]}
    )
    assert {"table messages", "table events", "table tenants", "table accounts"} <= tables
    # Opening the migration-built database finds it current and changes nothing.
    open_database(from_migrations, box=secret_box).close()
    assert _schema_of(from_migrations) == built


def _write_tiny_set(root: Path, backend: str) -> None:
    """Version 1 has table t(a); version 2 adds column b; the schema file is version 2."""
    version_table = "CREATE TABLE schema_version (version INTEGER NOT NULL);\n"
    (root / "migrations").mkdir(parents=True)
    (root / "migrations" / f"0001_init.{backend}.sql").write_text(
        version_table + "CREATE TABLE t (a INTEGER NOT NULL);\n"
    )
    (root / "migrations" / f"0002_add_b.{backend}.sql").write_text(
        "ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x';\nCREATE INDEX t_b ON t (b);\n"
    )
    (root / f"schema.{backend}.sql").write_text(
        version_table
        + "CREATE TABLE t (a INTEGER NOT NULL, b TEXT NOT NULL DEFAULT 'x');\n"
        + "CREATE INDEX t_b ON t (b);\n"
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_opening_an_older_database_upgrades_it(
    backend: str,
    tmp_path: Path,
    secret_box: SecretBox,
    pg_database_factory: Callable[[], str],
) -> None:
    _write_tiny_set(tmp_path / "sql", backend)
    tiny = load_migrations(backend, tmp_path / "sql")  # type: ignore[arg-type]
    assert tiny.latest == 2
    url = _empty_database(backend, tmp_path, "old.db", pg_database_factory)

    def at_version_1(tx: Any) -> None:
        apply_migrations(tx, tiny, upto=1)
        tx.raw("INSERT INTO t (a) VALUES (7)")

    _run(url, secret_box, at_version_1)

    db = open_database(url, box=secret_box, migrations=tiny)
    try:
        with db.transaction(write=False) as tx:
            assert tx.value("schema_version_get") == 2
            assert tx.raw("SELECT a, b FROM t") == [{"a": 7, "b": "x"}]
        # Running the migration again is a no-op at the latest version.
        assert db.run(migrate, tiny) == 2
    finally:
        db.close()
    fresh = _empty_database(backend, tmp_path, "fresh.db", pg_database_factory)
    open_database(fresh, box=secret_box, migrations=tiny).close()
    assert _schema_of(fresh) == _schema_of(url)


def test_migration_numbering_must_have_no_gaps(tmp_path: Path) -> None:
    _write_tiny_set(tmp_path / "sql", "sqlite")
    os.rename(
        tmp_path / "sql" / "migrations" / "0002_add_b.sqlite.sql",
        tmp_path / "sql" / "migrations" / "0003_add_b.sqlite.sql",
    )
    from mailproxyd.errors import StoreError

    with pytest.raises(StoreError):
        load_migrations("sqlite", tmp_path / "sql")
