"""An unreachable database: 503 everywhere, ``/health`` with its own body (reference §4.4, §5.1, §2.6)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest

from mailproxyd.core.crypto import SecretBox
from tests.apiclient import PG_ADMIN_URL, ApiServer
from tests.dbfixtures import _pg_unavailable


@pytest.fixture
def doomed_pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"mp_api_gone_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _pg_unavailable(str(exc))
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        yield url
    finally:
        _drop(url)


def _drop(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_database_gone_gives_503(api_server: ApiServer, doomed_pg_url: str) -> None:
    """The API's database disappears under it (a SQLite file, once open, cannot vanish)."""
    from mailproxyd.store import AsyncDatabase, open_database

    db = open_database(doomed_pg_url, box=SecretBox(secrets.token_bytes(32)), connect_timeout=1)
    ctx = api_server.ctx
    original = ctx.db
    ctx.db = AsyncDatabase(db)
    try:
        with api_server.admin() as c:
            assert c.get("/health").json() == {"status": "ok"}
            _drop(doomed_pg_url)
            r = c.get("/health")
            assert r.status_code == 503
            assert r.json() == {"status": "unavailable", "detail": "database unreachable"}
            unavailable = {"ok": False, "error": "unavailable", "detail": "database unreachable"}
            r = c.post("/commands/add-messages", json={"tenant_id": "x", "messages": [{"id": "m"}]})
            assert (r.status_code, r.json()) == (503, unavailable)
            with api_server.client("some-tenant-key-or-other") as tenant:
                # Even authentication needs the database: 503, not 401.
                r = tenant.get("/tenants")
                assert (r.status_code, r.json()) == (503, unavailable)
    finally:
        ctx.db = original
        db.close()
