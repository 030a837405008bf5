"""Fixtures of the report tests: a real database (both backends), real tenant servers, and a
helper that records events through the real queue (enqueue → claim → complete), as a sender
would."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import pytest

from mailproxyd.drivers.http import ReportClient
from mailproxyd.services.context import Reporting, ServiceContext
from mailproxyd.settings import Settings, load_settings
from mailproxyd.store import AsyncDatabase, Database, leases
from mailproxyd.store import accounts as store_accounts
from mailproxyd.store import events as store_events
from mailproxyd.store import meta as store_meta
from mailproxyd.store import queue as store_queue
from mailproxyd.store import report as store_report
from mailproxyd.store import tenants as store_tenants
from tests.dbfixtures import (  # noqa: F401  (fixtures)
    database,
    db_url,
    instance_key,
    pg_session_database,
    pg_session_url,
    secret_box,
)
from tests.tenantservers import closed_port_url, tenant_server  # noqa: F401  (fixtures)

SENDER = "test-node/sender-1"


def _tenant(
    tx: Any, tenant_id: str, url: str | None, auth: Mapping[str, Any] | None, active: bool
) -> None:
    tenant: dict[str, Any] = {"id": tenant_id, "client_base_url": url, "active": active}
    if auth is not None:
        tenant["client_auth"] = dict(auth)
    store_tenants.create_or_replace(tx, tenant, time.time())
    for account_id in ("smtp1", "smtp2"):
        store_accounts.create_or_replace(
            tx, tenant_id, {"id": account_id, "host": "127.0.0.1", "port": 25}, time.time()
        )


def _produce(tx: Any, tenant_id: str, specs: Iterable[Mapping[str, Any]], now: float) -> None:
    """Enqueue, claim and complete messages; each spec: ``id``, ``account_id`` (default
    smtp1), ``priority`` (2), ``batch_code``, ``outcome`` ("sent" | "deferred" | "error"),
    ``kw`` (arguments of the ``complete_*`` call)."""
    specs = list(specs)
    items = [
        {
            "id": s["id"],
            "account_id": s.get("account_id", "smtp1"),
            "priority": s.get("priority", 2),
            "batch_code": s.get("batch_code"),
            "message_id": f"<{s['id']}@test>",
            "deferred_ts": None,
            "from": "a@example.org",
            "to": ["b@example.org"],
            "subject": "s",
            "body": "b",
        }
        for s in specs
    ]
    store_queue.enqueue(tx, tenant_id, items, [], now)
    by_id = {s["id"]: s for s in specs}
    for account_id in {item["account_id"] for item in items}:
        rows = store_queue.claim_batch(tx, tenant_id, account_id, SENDER, len(items), now, 120)
        for row in rows:
            spec = by_id[row["id"]]
            complete = {
                "sent": leases.complete_sent,
                "deferred": leases.complete_deferred,
                "error": leases.complete_error,
            }[spec.get("outcome", "sent")]
            assert complete(tx, row["pk"], SENDER, now, **spec.get("kw", {}))


@dataclasses.dataclass
class ReportEnv:
    """A database with tenants, and a way to record events and build reporter contexts."""

    db: Database
    adb: AsyncDatabase
    settings: Settings

    def add_tenant(
        self,
        tenant_id: str,
        url: str | None,
        auth: Mapping[str, Any] | None = None,
        *,
        active: bool = True,
    ) -> None:
        self.db.run(_tenant, tenant_id, url, auth, active)

    def record(
        self, tenant_id: str, specs: Iterable[Mapping[str, Any]], now: float | None = None
    ) -> None:
        self.db.run(_produce, tenant_id, list(specs), time.time() if now is None else now)

    def record_sent(self, tenant_id: str, ids: Iterable[str], now: float | None = None) -> None:
        self.record(tenant_id, [{"id": i} for i in ids], now)

    async def arecord_sent(self, batch: Mapping[str, Iterable[str]]) -> None:
        """Record ``sent`` events for several tenants in one transaction, off the event loop
        (so reporters running in the same trio run are not blocked meanwhile)."""

        def produce(tx: Any) -> None:
            for tenant_id, ids in batch.items():
                _produce(tx, tenant_id, [{"id": i} for i in ids], time.time())

        await self.adb.run(produce)

    def reject(self, tenant_id: str, rejections: list[dict[str, Any]], now: float) -> None:
        self.db.run(lambda tx: store_queue.enqueue(tx, tenant_id, [], rejections, now))

    def set_active(self, tenant_id: str, active: bool) -> None:
        self.db.run(lambda tx: store_tenants.update(tx, tenant_id, {"active": active}, time.time()))

    def state(self, tenant_id: str) -> dict[str, Any]:
        return self.db.run(store_report.get_state, tenant_id)

    def set_state(self, tenant_id: str, **changes: Any) -> None:
        self.db.run(store_report.save_state, tenant_id, **changes)

    def unreported(self, tenant_id: str) -> int:
        return self.db.run(store_events.unreported_count, tenant_id)

    def ctx(
        self, client: ReportClient, owner: str = "node-a/reporter", **changes: Any
    ) -> ServiceContext:
        settings = dataclasses.replace(self.settings, **changes) if changes else self.settings
        return ServiceContext(
            settings=settings,
            db=self.adb,
            link=None,  # type: ignore[arg-type]  # the report cycle never calls the supervisor
            log=logging.getLogger("tests.report"),
            kind="reporter",
            owner=owner,
            reporting=Reporting(client=client),
        )


@pytest.fixture
def report_env(database: Database, tmp_path: Any) -> ReportEnv:  # noqa: F811
    settings = load_settings(
        "serve",
        environ={"GMP_DB_PATH": str(tmp_path / "unused.db"), "MAIL_PROXY_HOME": str(tmp_path)},
    )
    database.run(store_meta.set_scheduler_active, True)
    return ReportEnv(database, AsyncDatabase(database, limiter_tokens=8), settings)


@pytest.fixture
async def sync_client() -> AsyncIterator[ReportClient]:
    async with ReportClient() as client:
        yield client
