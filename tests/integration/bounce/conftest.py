"""Fixtures of the bounce-poll tests: a real database (both backends), a real IMAP server
(pymap, tests/imapservers.py) and sent messages to bounce."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from mailproxyd.services.context import BounceOptions, ServiceContext
from mailproxyd.settings import load_settings
from mailproxyd.store import AsyncDatabase, Database
from mailproxyd.store import accounts as store_accounts
from mailproxyd.store import bounces as store_bounces
from mailproxyd.store import events as store_events
from mailproxyd.store import leases as store_leases
from mailproxyd.store import messages as store_messages
from mailproxyd.store import meta as store_meta
from mailproxyd.store import queue as store_queue
from mailproxyd.store import tenants as store_tenants
from tests.dbfixtures import (  # noqa: F401  (fixtures)
    database,
    db_url,
    instance_key,
    pg_session_database,
    pg_session_url,
    secret_box,
)
from tests.imapservers import ImapServer

FOLDER = "Bounces"
SENDER = "test-node/sender-1"


def message_id(key: str) -> str:
    return f"<{key}.5f1e0c8e@acme.example>"


@dataclasses.dataclass
class BounceEnv:
    db: Database
    adb: AsyncDatabase
    imap: ImapServer
    cafile: str

    def send(self, *keys: str, tenant_id: str = "acme") -> None:
        """Messages that went out (status ``sent``) with the Message-ID ``message_id(key)``."""

        def work(tx: Any) -> None:
            now = time.time()
            items = [
                {
                    "id": key,
                    "account_id": "smtp1",
                    "priority": 2,
                    "message_id": message_id(key),
                    "deferred_ts": None,
                    "from": "orders@acme.example",
                    "to": ["ann@example.org"],
                    "subject": "s",
                    "body": "b",
                }
                for key in keys
            ]
            store_queue.enqueue(tx, tenant_id, items, [], now)
            rows = store_queue.claim_batch(tx, tenant_id, "smtp1", SENDER, len(keys), now, 60)
            assert len(rows) == len(keys)
            for row in rows:
                assert store_leases.complete_sent(tx, row["pk"], SENDER, now)

        self.db.run(work)

    def configure(self, **changes: Any) -> None:
        settings = {
            "bounce_enabled": True,
            "bounce_imap_host": self.imap.host,
            "bounce_imap_port": self.imap.ssl_port,
            "bounce_imap_user": self.imap.user,
            "bounce_imap_password": self.imap.password,
            "bounce_imap_folder": FOLDER,
            "bounce_imap_ssl": True,
            "bounce_poll_interval": 60,
        }
        settings.update(changes)
        self.db.run(store_meta.update_instance, settings, time.time())

    def ctx(self, owner: str = "node-a/reporter", **kw: Any) -> ServiceContext:
        return ServiceContext(
            settings=load_settings("serve", environ={}),
            db=self.adb,
            link=None,  # type: ignore[arg-type]  # the poller never calls the supervisor
            log=logging.getLogger("tests.bounce"),
            kind="reporter",
            owner=owner,
            bounce=BounceOptions(cafile=self.cafile, timeout=10, **kw),
        )

    def bounce_events(self, tenant_id: str = "acme") -> list[dict[str, Any]]:
        rows = self.db.run(store_events.unreported, tenant_id, 1000)
        return [r for r in rows if r["event_type"] == "bounce"]

    def record(self, key: str, tenant_id: str = "acme") -> dict[str, Any]:
        found = self.db.run(lambda tx: store_messages.get_message(tx, tenant_id, key, time.time()))
        assert found is not None
        return found

    def instance(self) -> dict[str, Any]:
        return self.db.run(store_meta.get_instance)

    def state(self) -> dict[str, Any]:
        return self.db.run(store_bounces.get_state)

    def deliver(self, messages: Iterable[bytes]) -> list[int]:
        return [self.imap.append(raw, FOLDER) for raw in messages]


@pytest.fixture
def env(
    database: Database,  # noqa: F811
    imap_server: Callable[..., ImapServer],
    smtp_ca_file: str,
) -> BounceEnv:
    now = time.time()

    def tenant(tx: Any) -> None:
        # A sync URL, so bounce events wait for the reporter instead of being acknowledged.
        store_tenants.create_or_replace(
            tx, {"id": "acme", "client_base_url": "http://127.0.0.1:9"}, now
        )
        store_accounts.create_or_replace(
            tx, "acme", {"id": "smtp1", "host": "127.0.0.1", "port": 25}, now
        )
        store_meta.set_scheduler_active(tx, True)

    database.run(tenant)
    server = imap_server()
    server.create(FOLDER)
    bounce_env = BounceEnv(database, AsyncDatabase(database), server, smtp_ca_file)
    bounce_env.configure()
    return bounce_env
