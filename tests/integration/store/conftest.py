"""Store tests: the fixtures of ``tests/dbfixtures.py`` plus small data helpers.

The fixtures are imported here so this directory runs on its own; once the root conftest
registers ``tests.dbfixtures`` as a plugin these imports simply shadow the same definitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailproxyd.core.crypto import SecretBox
from mailproxyd.core.ratelimit import Window, account_windows, tenant_windows
from mailproxyd.store import Database, accounts, meta, open_database, tenants
from tests.dbfixtures import (  # noqa: F401  (fixtures)
    database,
    db_url,
    instance_key,
    pg_database_factory,
    pg_session_database,
    pg_session_url,
    secret_box,
)

NOW = 1_767_225_600.0


def rate_windows(**limits: int) -> list[Window]:
    """The windows of an account's ``limit_per_*`` fields and a tenant's ``hourly``/``daily``."""
    tenant: dict[str, int] = {k: limits.pop(k) for k in ("hourly", "daily") if k in limits}
    return [*account_windows(limits), *tenant_windows(tenant)]


def make_item(message_key: str, **fields: Any) -> dict[str, Any]:
    """A validated, normalised message item as the enqueue service hands it to the store."""
    item: dict[str, Any] = {
        "id": message_key,
        "account_id": "main",
        "from": "shop@acme.example",
        "to": ["ann@example.org"],
        "subject": "Hello",
        "body": "Hi",
        "content_type": "plain",
        "priority": 2,
        "message_id": f"<{message_key}@acme.example>",
        "message_id_generated": True,
        "deferred_ts": None,
        "batch_code": None,
    }
    item.update(fields)
    return item


def setup_tenant(
    db: Database,
    tenant_id: str = "acme",
    account_ids: tuple[str, ...] = ("main",),
    *,
    scheduler_active: bool = True,
    **tenant_fields: Any,
) -> None:
    with db.transaction() as tx:
        tenants.create_or_replace(tx, {"id": tenant_id, **tenant_fields}, NOW)
        for account_id in account_ids:
            accounts.create_or_replace(
                tx, tenant_id, {"id": account_id, "host": "smtp.example.com", "port": 587}, NOW
            )
        meta.set_scheduler_active(tx, scheduler_active)


@pytest.fixture
def acme_free_sqlite(
    tmp_path: Path,
    secret_box: SecretBox,  # noqa: F811  (the imported fixture)
) -> Iterator[tuple[Database, Path]]:
    """A fresh SQLite database (no tenants yet) and its file path."""
    path = tmp_path / "mail_service.db"
    db = open_database(f"sqlite:{path}", box=secret_box)
    try:
        yield db, path
    finally:
        db.close()


@pytest.fixture
def acme(database: Database) -> Database:  # noqa: F811  (the imported fixture)
    """``database`` with tenant ``acme`` (account ``main``) and the scheduler active."""
    setup_tenant(database)
    return database
