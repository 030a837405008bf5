"""Shared pieces of the fault suite: a tenant with an account, bulk enqueue, what the SMTP
server received (by client id), and a look straight into the node's database (SQLite or
PostgreSQL) to check that it is consistent after the faults."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesHeaderParser
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.daemon import ADMIN_TOKEN, Node

TENANT = "acme"
ACCOUNT = "smtp1"


def setup_tenant(
    node: Node, smtp_port: int, sync_base: str | None, *, account: dict[str, Any] | None = None
) -> str | None:
    """Tenant ``acme`` (reporting to ``sync_base``) with the default account ``smtp1``; the
    tenant's API key."""
    tenant: dict[str, Any] = {"id": TENANT, "name": "Acme"}
    if sync_base is not None:
        tenant["client_base_url"] = sync_base
    answer = node.http("POST", "/tenant", json=tenant)
    assert answer.status_code == 200, answer.text
    key = answer.json().get("api_key")
    body = {
        "id": ACCOUNT,
        "tenant_id": TENANT,
        "host": "127.0.0.1",
        "port": smtp_port,
        "tls_mode": "none",
        "is_default": True,
        **(account or {}),
    }
    answer = node.http("POST", "/account", json=body)
    assert answer.status_code == 200, answer.text
    return str(key) if key else None


def message(client_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": client_id,
        "account_id": ACCOUNT,
        "from": "orders@acme.example",
        "to": ["ann@example.org"],
        "subject": f"Order {client_id}",
        "body": "Thanks!",
        **extra,
    }


def add_messages(url: str, ids: list[str], timeout: float = 60.0) -> httpx.Response:
    body = {"tenant_id": TENANT, "messages": [message(i) for i in ids]}
    return httpx.post(
        url + "/commands/add-messages",
        json=body,
        headers={"X-API-Token": ADMIN_TOKEN},
        timeout=timeout,
    )


def enqueue(node: Node, ids: list[str], batch: int = 500) -> None:
    """Queue every id (batches of ``batch``), asserting each request is fully accepted."""
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        answer = add_messages(node.url, chunk)
        assert answer.status_code == 200, answer.text
        assert answer.json()["queued"] == len(chunk), answer.text


def client_id_of(data: bytes) -> str:
    """The ``X-Genro-Mail-ID`` header of a transmitted message."""
    headers = BytesHeaderParser().parsebytes(data)
    value = headers.get("X-Genro-Mail-ID")
    assert value, f"no X-Genro-Mail-ID in {data[:300]!r}"
    return str(value).strip()


def transmissions(datas: list[bytes]) -> Counter[str]:
    """How often each client id reached the SMTP server."""
    return Counter(client_id_of(d) for d in datas)


class Inspector:
    """Read-only SQL on the node's database, for the final consistency checks."""

    def __init__(self, database: str) -> None:
        self.database = database

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if self.database.startswith("postgres"):
            with psycopg.connect(self.database, autocommit=True, row_factory=dict_row) as conn:
                yield conn.cursor()
        else:
            path = self.database.removeprefix("sqlite:")
            conn = sqlite3.connect(path, timeout=30)
            conn.row_factory = sqlite3.Row
            try:
                yield conn.cursor()
            finally:
                conn.close()

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if not self.database.startswith("postgres"):
            sql = sql.replace("%s", "?")
        with self._cursor() as cur:
            cur.execute(sql, params)
            return [dict(row) for row in cur.fetchall()]

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def status_counts(self) -> dict[str, int]:
        rows = self.rows("SELECT status, COUNT(*) AS n FROM messages GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    def in_flight(self, owner_prefix: str = "") -> int:
        """Messages claimed right now (by owners starting with ``owner_prefix``)."""
        return int(
            self.scalar(
                "SELECT COUNT(*) FROM messages WHERE status = 'sending' AND lease_owner LIKE %s",
                (owner_prefix + "%",),
            )
        )

    def consistency_problems(self, now: float | None = None) -> list[str]:
        """What a healthy, idle database must not contain: stuck claims, orphan events,
        leases held by runs that are gone, unreported events."""
        now = time.time() if now is None else now
        problems = []
        stuck = self.scalar("SELECT COUNT(*) FROM messages WHERE status = 'sending'")
        if stuck:
            problems.append(f"{stuck} messages stuck in sending")
        held = self.scalar(
            "SELECT COUNT(*) FROM messages WHERE lease_owner IS NOT NULL AND status <> 'sending'"
        )
        if held:
            problems.append(f"{held} settled messages still carry a lease owner")
        orphans = self.scalar(
            "SELECT COUNT(*) FROM events e WHERE NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.pk = e.message_pk)"
        )
        if orphans:
            problems.append(f"{orphans} orphan events")
        unreported = self.scalar("SELECT COUNT(*) FROM events WHERE reported_ts IS NULL")
        if unreported:
            problems.append(f"{unreported} events never acknowledged")
        sessions = self.scalar(
            "SELECT COUNT(*) FROM session_slots WHERE lease_until > %s", (now + 1,)
        )
        if sessions:
            problems.append(f"{sessions} SMTP session slots still held")
        locks = self.scalar(
            "SELECT COUNT(*) FROM sync_state WHERE lock_owner IS NOT NULL AND lock_until > %s",
            (now + 1,),
        )
        if locks:
            problems.append(f"{locks} reporter locks still held")
        return problems
