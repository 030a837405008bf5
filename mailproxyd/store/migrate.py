"""Schema creation and numbered migrations, applied at open under a lock.

A fresh database is built from ``sql/schema.<backend>.sql`` and stamped with the latest version;
an older one gets ``sql/migrations/NNNN_<name>.<backend>.sql`` for every version above its own,
in order. Both run inside one transaction that holds the migration lock (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: ``pg_advisory_xact_lock``), so nodes starting together migrate once.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mailproxyd.errors import StartRefused, StoreError

from .database import Backend, Tx

# Arbitrary constant identifying mail-proxy's migration lock among advisory locks.
PG_MIGRATION_LOCK = 0x6D61696C70  # "mailp"
_MIGRATION_FILE = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.(sqlite|postgres)\.sql$")


@dataclass(frozen=True)
class MigrationSet:
    """The schema and its migrations for one backend."""

    schema: str
    migrations: list[tuple[int, str]] = field(default_factory=list)

    @property
    def latest(self) -> int:
        return self.migrations[-1][0] if self.migrations else 0


def load_migrations(backend: Backend, directory: Path | None = None) -> MigrationSet:
    """Read the schema and migrations of ``backend`` from ``directory`` (default: the package)."""
    root = directory if directory is not None else Path(str(resources.files("mailproxyd") / "sql"))
    schema = (root / f"schema.{backend}.sql").read_text(encoding="utf-8")
    found: list[tuple[int, str]] = []
    for path in sorted((root / "migrations").iterdir()):
        match = _MIGRATION_FILE.match(path.name)
        if match and match.group(2) == backend:
            found.append((int(match.group(1)), path.read_text(encoding="utf-8")))
    versions = [version for version, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"migrations must be numbered 1..N without gaps (found {versions})")
    return MigrationSet(schema=schema, migrations=found)


def split_statements(script: str) -> list[str]:
    """Split an SQL script into statements (sqlite3 cannot run a script inside our transaction)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            current = []
    if "\n".join(current).strip():
        raise StoreError("SQL script ends inside a statement")
    return statements


def _run_script(tx: Tx, script: str) -> None:
    if tx.backend == "postgres":
        tx.raw(script)  # psycopg runs several statements at once when there are no parameters
        return
    for statement in split_statements(script):
        tx.raw(statement)


def current_version(tx: Tx) -> int | None:
    """The schema version stored in the database, or None when it has no mail-proxy schema."""
    if not tx.value("schema_version_table_exists"):
        return None
    version = tx.value("schema_version_get")
    return int(version) if version is not None else 0


def migrate(tx: Tx, migrations: MigrationSet, *, create: bool = True) -> int:
    """Bring the schema to ``migrations.latest`` inside ``tx``; return the resulting version.

    The caller must have opened ``tx`` as a write transaction (SQLite takes its write lock with
    ``BEGIN IMMEDIATE``); on PostgreSQL the advisory lock is taken here.
    """
    if tx.backend == "postgres":
        tx.execute("advisory_xact_lock", {"key": PG_MIGRATION_LOCK})
    version = current_version(tx)
    supported = migrations.latest
    if version is None:
        if not create:
            raise StoreError("the database holds no mail-proxy schema")
        _run_script(tx, migrations.schema)
        tx.execute("schema_version_insert", {"version": supported})
        return supported
    if version > supported:
        raise StartRefused(
            f"database schema version {version} is newer than this mail-proxy supports "
            f"({supported})"
        )
    apply_migrations(tx, migrations, after=version)
    return supported


def apply_migrations(
    tx: Tx, migrations: MigrationSet, *, after: int = 0, upto: int | None = None
) -> int:
    """Run the migrations numbered ``after + 1 .. upto`` (default: all); return the last one.

    With ``after=0`` this builds the schema from migrations alone, which the migration test
    compares with ``schema.<backend>.sql``.
    """
    last = after
    for number, script in migrations.migrations:
        if after < number <= (upto if upto is not None else migrations.latest):
            _run_script(tx, script)
            if not tx.execute("schema_version_set", {"version": number}):
                tx.execute("schema_version_insert", {"version": number})
            last = number
    return last
