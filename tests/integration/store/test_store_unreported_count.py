"""The unreported-events gauge (reference §14) read from the count its triggers keep (migration 4).

After every kind of change to the events (recorded, acknowledged, deleted with their message,
purged by retention, deleted with their tenant, folded) the gauge must equal a real COUNT of
the unacknowledged events, on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailproxyd.core.crypto import SecretBox
from mailproxyd.store import (
    Database,
    events,
    gauges,
    leases,
    open_database,
    queue,
    retention,
    tenants,
)
from mailproxyd.store import messages as store_messages

from .conftest import NOW, make_item, setup_tenant

OWNER = "node-1/sender-0"
URL = "https://app.example"


def _gauge(db: Database) -> dict[str, int]:
    with db.transaction(write=False) as tx:
        return dict(gauges.queue_gauges(tx, NOW)["unreported"])


def _real_count(db: Database) -> dict[str, int]:
    """Every tenant with its unacknowledged events, counted from the events themselves."""
    with db.transaction(write=False) as tx:
        found = {str(row["id"]): 0 for row in tx.raw("SELECT id FROM tenants")}
        rows = tx.raw(
            "SELECT tenant_id, count(*) AS n FROM events WHERE reported_ts IS NULL "
            "GROUP BY tenant_id"
        )
    for row in rows:
        if str(row["tenant_id"]) in found:
            found[str(row["tenant_id"])] = int(row["n"])
    return found


def _assert_right(db: Database, expected: dict[str, int]) -> None:
    assert _real_count(db) == expected
    assert _gauge(db) == expected


def _fail(db: Database, tenant_id: str, keys: list[str], now: float = NOW) -> None:
    """Queue ``keys`` and fail them: one unacknowledged ``error`` event each."""
    with db.transaction() as tx:
        queue.enqueue(tx, tenant_id, [make_item(k) for k in keys], [], now)
        for row in queue.claim_batch(tx, tenant_id, "main", OWNER, 100, now, 120):
            assert leases.complete_error(tx, row["pk"], OWNER, now, error="550 no")


def _ack(db: Database, tenant_id: str, limit: int, now: float) -> int:
    with db.transaction() as tx:
        ids = [e["event_id"] for e in events.unreported(tx, tenant_id, limit)]
        return events.acknowledge(tx, ids, now)


def test_the_gauge_follows_records_acks_deletions_retention_and_tenants(
    database: Database,
) -> None:
    setup_tenant(database, "acme", client_base_url=URL)
    setup_tenant(database, "beta", client_base_url=URL)
    setup_tenant(database, "quiet")  # no sync URL: its events are acknowledged as recorded
    _assert_right(database, {"acme": 0, "beta": 0, "quiet": 0})

    _fail(database, "acme", [f"a{i}" for i in range(6)])
    _fail(database, "beta", ["b0", "b1", "b2"])
    _fail(database, "quiet", ["q0"])
    _assert_right(database, {"acme": 6, "beta": 3, "quiet": 0})

    # Acknowledged in several statements, one of them repeating ids already acknowledged.
    assert _ack(database, "acme", 2, NOW + 1) == 2
    with database.transaction() as tx:
        ids = [e["event_id"] for e in events.unreported(tx, "acme", 100)]
        assert events.acknowledge(tx, ids[:1] * 3, NOW + 2) == 1
    _assert_right(database, {"acme": 3, "beta": 3, "quiet": 0})

    # A message deleted with an unacknowledged event takes it along (events.message_pk cascade).
    with database.transaction() as tx:
        assert store_messages.delete_messages(tx, "beta", ["b0"])["removed"] == 1
    _assert_right(database, {"acme": 3, "beta": 2, "quiet": 0})

    # Retention purges the acknowledged messages (acme's three, quiet's one): nothing changes.
    with database.transaction() as tx:
        swept = retention.sweep(tx, NOW + 10_000, 3600, 0)
    assert swept["messages"] == 4
    _assert_right(database, {"acme": 3, "beta": 2, "quiet": 0})

    # Acknowledged, then purged: still right, and 0.
    assert _ack(database, "acme", 100, NOW + 20_000) == 3
    with database.transaction() as tx:
        assert retention.sweep(tx, NOW + 30_000, 3600, 0)["messages"] == 3
    _assert_right(database, {"acme": 0, "beta": 2, "quiet": 0})

    # A deleted tenant's events go with its messages; one created again under that id starts at 0.
    with database.transaction() as tx:
        tenants.delete(tx, "beta")
    _assert_right(database, {"acme": 0, "quiet": 0})
    setup_tenant(database, "beta", client_base_url=URL)
    _assert_right(database, {"acme": 0, "beta": 0, "quiet": 0})
    _fail(database, "beta", ["again"])
    _assert_right(database, {"acme": 0, "beta": 1, "quiet": 0})


def test_many_changes_fold_and_stay_right(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gauges, "FOLD_AT", 3)
    setup_tenant(database, "acme", client_base_url=URL)
    setup_tenant(database, "beta", client_base_url=URL)
    for n in range(4):
        _fail(database, "acme", [f"a{n}"])
        _fail(database, "beta", [f"b{n}"])
    assert _ack(database, "beta", 4, NOW + 1) == 4
    _assert_right(database, {"acme": 4, "beta": 0})
    _assert_right(database, {"acme": 4, "beta": 0})  # read again after the fold
    if database.backend == "postgres":
        with database.transaction(write=False) as tx:
            rows = tx.raw("SELECT tenant_id, delta FROM unreported_count")
        # One row for acme; beta's count of 0 needs none.
        assert [(r["tenant_id"], int(r["delta"])) for r in rows] == [("acme", 4)]


def _drop_the_count(db: Database) -> None:
    """Put the database back at schema version 3 (before the count existed)."""
    with db.transaction() as tx:
        if db.backend == "postgres":
            tx.raw("DROP TABLE unreported_count")
            for kind in ("insert", "update", "delete"):
                tx.raw(f"DROP TRIGGER events_unreported_count_{kind} ON events")
                tx.raw(f"DROP FUNCTION unreported_count_{kind}()")
        else:
            for kind in ("insert", "update", "delete"):
                tx.raw(f"DROP TRIGGER events_unreported_count_{kind}")
            tx.raw("DROP TABLE unreported_count")
        tx.execute("schema_version_set", {"version": 3})


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_migration_counts_the_events_already_there(
    backend: str,
    tmp_path: Path,
    secret_box: SecretBox,
    pg_database_factory: Callable[[], str],
) -> None:
    url = f"sqlite:{tmp_path / 'old.db'}" if backend == "sqlite" else pg_database_factory()
    db = open_database(url, box=secret_box)
    try:
        setup_tenant(db, "acme", client_base_url=URL)
        setup_tenant(db, "beta", client_base_url=URL)
        _fail(db, "acme", ["a0", "a1", "a2"])
        _fail(db, "beta", ["b0"])
        assert _ack(db, "acme", 1, NOW + 1) == 1
        _drop_the_count(db)
    finally:
        db.close()
    db = open_database(url, box=secret_box)
    try:
        with db.transaction(write=False) as tx:
            assert tx.value("schema_version_get") >= 4
        _assert_right(db, {"acme": 2, "beta": 1})
        _fail(db, "beta", ["b1"])
        _assert_right(db, {"acme": 2, "beta": 2})
    finally:
        db.close()
