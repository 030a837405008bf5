"""pytest plugin: store fixtures on both backends.

``db_url`` is parametrized ``sqlite`` (a fresh file under ``tmp_path``) and ``postgres`` (one
throw-away database per test session, created here and dropped at the end; its tables are
emptied before each test). ``database`` is an open ``Database`` on that URL.

When PostgreSQL cannot be reached the ``postgres`` parameters skip, unless
``MAIL_PROXY_REQUIRE_POSTGRES=1`` is set (CI), in which case they fail. The server is
``MAIL_PROXY_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import psycopg
import pytest

from mailproxyd.core.crypto import SecretBox
from mailproxyd.store import Database, open_database

PG_ADMIN_URL = os.environ.get(
    "MAIL_PROXY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("MAIL_PROXY_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (MAIL_PROXY_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"PostgreSQL not reachable: {reason}")


def create_pg_database(prefix: str = "mp_store") -> str:
    """Create an empty database with a unique name; return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _pg_unavailable(str(exc).strip())
    return _pg_url(name)


def drop_pg_database(url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Children before parents, so plain DELETEs never trip a foreign key; tables added by later
# migrations and missing here are emptied after these.
_DELETE_ORDER = (
    "events",
    "rate_slots",
    "session_slots",
    "sync_state",
    "suspensions",
    "messages",
    "accounts",
    "tenants",
)


def reset_pg_database(db: Database) -> None:
    """Empty every table but ``schema_version`` and restart the id sequences.

    DELETE is much faster than TRUNCATE on tables holding a handful of rows, which is what a
    test leaves behind. Ids restart at 1 so that event ids have no gaps (the live tail waits
    briefly at a gap, see ``store.events.tail``).
    """
    with db.transaction() as tx:
        rows = tx.raw(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_version'"
        )
        present = {row["tablename"] for row in rows}
        ordered = [t for t in _DELETE_ORDER if t in present]
        ordered += sorted(present - set(ordered))
        for table in ordered:
            tx.raw(f"DELETE FROM {table}")
        sequences = tx.raw(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' "
            "AND last_value IS NOT NULL"
        )
        for row in sequences:
            tx.raw(f"ALTER SEQUENCE {row['sequencename']} RESTART")


@pytest.fixture(scope="session")
def instance_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="session")
def secret_box(instance_key: bytes) -> SecretBox:
    return SecretBox(instance_key)


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """The session's throw-away PostgreSQL database (schema created once)."""
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="session")
def pg_session_database(pg_session_url: str, secret_box: SecretBox) -> Iterator[Database]:
    db = open_database(pg_session_url, box=secret_box)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def pg_database_factory() -> Iterator[Callable[[], str]]:
    """Create extra empty PostgreSQL databases (dropped after the test); returns their URLs."""
    created: list[str] = []

    def make() -> str:
        url = create_pg_database("mp_store_extra")
        created.append(url)
        return url

    yield make
    for url in created:
        drop_pg_database(url)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """A database URL with the current schema and no data, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:{os.path.join(tmp_path, 'mail_service.db')}"
    reset_pg_database(request.getfixturevalue("pg_session_database"))
    url: str = request.getfixturevalue("pg_session_url")
    return url


@pytest.fixture
def database(
    request: pytest.FixtureRequest, db_url: str, secret_box: SecretBox
) -> Iterator[Database]:
    """An open ``Database`` on ``db_url`` (on PostgreSQL, the session's shared handle: do not
    close it)."""
    if db_url.startswith("postgres"):
        yield request.getfixturevalue("pg_session_database")
        return
    db = open_database(db_url, box=secret_box, pool_size=4)
    try:
        yield db
    finally:
        db.close()
