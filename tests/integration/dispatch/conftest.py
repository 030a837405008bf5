"""Fixtures of the dispatch tests: a database on each backend, a scripted SMTP server, and a
``Harness`` that plays the sender worker's context in-process.

The harness is what ``workers/sender.py`` hands to the dispatch cycle: settings, the async
database, a link to the supervisor (here a recorder of the messages sent on it), a logger and a
clock. Messages are queued through the store's ``enqueue`` with items shaped as the enqueue
service hands them over, so the cycle sees exactly what production sees.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

from mailproxyd.settings import Settings
from mailproxyd.store import AsyncDatabase, Database, accounts, events, meta, queue, tenants
from mailproxyd.store import messages as store_messages
from mailproxyd.workers._runtime import Doorbell
from tests import helpers
from tests.dbfixtures import (  # noqa: F401  (fixtures)
    database,
    db_url,
    instance_key,
    pg_session_database,
    pg_session_url,
    secret_box,
)
from tests.integration.dispatch.scripted_smtp import ScriptedController, ScriptedHandler


def make_settings(url: str, **overrides: Any) -> Settings:
    """Settings for a sender on ``url``; no retry jitter, so retry times are exact."""
    fields = {"retry_jitter": 0.0, "log_delivery_activity": True, **overrides}
    return helpers.make_settings(url, **fields)


class FakeLink:
    """The supervisor link as seen by a worker: records what the worker sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def wakes(self, target: str) -> int:
        return sum(1 for m in self.sent if m.get("type") == "wake" and m.get("target") == target)


@dataclasses.dataclass(eq=False)
class Harness:
    """An in-process sender context plus helpers to set up data and read results."""

    database: Database
    settings: Settings
    smtp_port: int
    db: AsyncDatabase = dataclasses.field(init=False)
    link: FakeLink = dataclasses.field(default_factory=FakeLink)
    log: logging.Logger = dataclasses.field(
        default_factory=lambda: logging.getLogger("tests.dispatch")
    )
    owner: str = "test-node/sender-1"
    now: Callable[[], float] = time.time
    stopping: trio.Event = dataclasses.field(default_factory=trio.Event)
    stop_deadline: float = math.inf
    wake: Doorbell = dataclasses.field(default_factory=Doorbell)
    cycles: Doorbell = dataclasses.field(default_factory=Doorbell)
    cycles_done: int = 0

    def __post_init__(self) -> None:
        self.db = AsyncDatabase(self.database)

    async def cycle_done(self) -> None:
        self.cycles_done += 1

    def request_stop(self, grace: float) -> None:
        self.stop_deadline = trio.current_time() + grace
        self.stopping.set()
        self.wake.ring()
        self.cycles.ring()

    # ------------------------------------------------------------------ setup

    def tenant(self, tenant_id: str = "acme", **fields: Any) -> None:
        with self.database.transaction() as tx:
            tenants.create_or_replace(tx, {"id": tenant_id, **fields}, time.time())
            meta.set_scheduler_active(tx, True)

    def account(self, tenant_id: str = "acme", account_id: str = "main", **fields: Any) -> None:
        settings = {"host": "127.0.0.1", "port": self.smtp_port, "tls_mode": "none", **fields}
        with self.database.transaction() as tx:
            accounts.create_or_replace(tx, tenant_id, {"id": account_id, **settings}, time.time())

    def enqueue(
        self,
        tenant_id: str,
        ids: list[str],
        *,
        now: float | None = None,
        drop: tuple[str, ...] | list[str] = (),
        **fields: Any,
    ) -> None:
        """Queue messages ``ids`` (fields override ``message_item``; ``drop`` removes keys)."""
        items = [message_item(mid, **fields) for mid in ids]
        for item in items:
            for key in drop:
                item.pop(key, None)
        with self.database.transaction() as tx:
            result = queue.enqueue(tx, tenant_id, items, [], time.time() if now is None else now)
        assert result.queued == len(ids), result.rejected

    # ------------------------------------------------------------------ reading

    def record(self, tenant_id: str, message_id: str) -> dict[str, Any]:
        with self.database.transaction(write=False) as tx:
            return dict(store_messages.get_message(tx, tenant_id, message_id, time.time()))

    def leases(self) -> dict[str, str]:
        """``{message id: lease owner}`` of every ``sending`` message (test-only SQL: the store
        deliberately exposes no lease owners)."""
        with self.database.transaction(write=False) as tx:
            cursor = tx._cursor
            cursor.execute("SELECT id, lease_owner FROM messages WHERE status = 'sending'")
            return {str(row["id"]): str(row["lease_owner"]) for row in cursor.fetchall()}

    def with_status(self, status: str) -> set[str]:
        """Ids of the messages whose stored status is ``status`` (one query, test-only SQL)."""
        with self.database.transaction(write=False) as tx:
            cursor = tx._cursor
            placeholder = "?" if tx.backend == "sqlite" else "%s"
            cursor.execute(f"SELECT id FROM messages WHERE status = {placeholder}", (status,))
            return {str(row["id"]) for row in cursor.fetchall()}

    def events(self, tenant_id: str = "acme") -> list[dict[str, Any]]:
        with self.database.transaction(write=False) as tx:
            return list(_all_events(tx, tenant_id))


def _all_events(tx: Any, tenant_id: str) -> list[dict[str, Any]]:
    # ``tail`` rather than ``unreported``: a tenant without a sync URL has its events
    # acknowledged as they are recorded (reference §13.6).
    return [dict(row) for row in events.tail(tx, 0, tenant_id, limit=100_000)]


def message_item(message_key: str, **fields: Any) -> dict[str, Any]:
    """A validated, normalised message as the enqueue service hands it to the store."""
    item: dict[str, Any] = {
        "id": message_key,
        "account_id": "main",
        "from": "Shop <shop@acme.example>",
        "to": ["ann@example.org"],
        "subject": f"Hello {message_key}",
        "body": "Hi there",
        "content_type": "plain",
        "priority": 2,
        "message_id": f"<{message_key}.{time.time_ns()}@acme.example>",
        "message_id_generated": True,
        "deferred_ts": None,
        "batch_code": None,
    }
    item.update(fields)
    return item


@pytest.fixture
def smtp() -> Iterator[ScriptedController]:
    controller = ScriptedController(ScriptedHandler())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def harness(
    database: Database,  # noqa: F811
    db_url: str,  # noqa: F811
    smtp: ScriptedController,
) -> Harness:
    h = Harness(database, make_settings(db_url), smtp.port)
    h.tenant("acme")
    h.account("acme", "main")
    return h


def new_pool(settings: Settings) -> Any:
    """The product's SMTP pool, as a sender process makes it."""
    from mailproxyd.services.dispatch.smtp import make_pool

    return make_pool(settings)


@pytest.fixture
async def pool(harness: Harness) -> Any:
    from mailproxyd.services.dispatch.smtp import close_pool

    made = new_pool(harness.settings)
    try:
        yield made
    finally:
        await close_pool(made)
