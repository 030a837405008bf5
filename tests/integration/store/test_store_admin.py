"""Instance state, nodes (reference §8.3, §18.5), command log (reference §5.7) and the retention sweep (reference §13.7)."""

from __future__ import annotations

import pytest

from mailproxyd.errors import StartRefused
from mailproxyd.store import (
    Database,
    bounces,
    commandlog,
    events,
    leases,
    meta,
    queue,
    ratelimit,
    retention,
)
from mailproxyd.store import messages as store_messages

from .conftest import NOW, make_item, rate_windows, setup_tenant


def test_instance_settings_and_bounce_cursor(database: Database) -> None:
    with database.transaction() as tx:
        meta.ensure_instance(tx, "prod", NOW)
        meta.ensure_instance(tx, "other", NOW + 1)  # existing row is kept
        instance = meta.get_instance(tx)
        assert instance["name"] == "prod" and instance["created_at"] == NOW
        assert instance["bounce_enabled"] is False and instance["bounce_imap_port"] == 993
        assert instance["bounce_imap_folder"] == "INBOX" and instance["bounce_imap_ssl"] is True
        assert (
            instance["bounce_poll_interval"] == 60 and instance["bounce_imap_password_set"] is False
        )
        assert instance["bounce_last_sync"] is None
        meta.update_instance(
            tx,
            {
                "bounce_enabled": True,
                "bounce_imap_host": "imap.x",
                "bounce_imap_password": "imap-secret",
            },
            NOW + 5,
        )
        instance = meta.get_instance(tx)
        assert (
            instance["bounce_imap_password_set"] is True and "bounce_imap_password" not in instance
        )
        assert instance["updated_at"] == NOW + 5 and instance["bounce_imap_host"] == "imap.x"
        assert meta.get_instance_for_bounce(tx)["bounce_imap_password"] == "imap-secret"
        meta.update_instance(tx, {"bounce_imap_port": 1993, "bounce_imap_password": None}, NOW + 6)
        assert meta.get_instance(tx)["bounce_imap_password_set"] is False
        assert bounces.try_lock(tx, "node/reporter", until=NOW + 100, now=NOW + 8)
        bounces.finish(
            tx, "node/reporter", now=NOW + 9, next_poll_ts=NOW + 69, succeeded=True, error=None
        )
        assert meta.get_instance(tx)["bounce_last_sync"] == NOW + 9


def test_nodes_take_over_rules(database: Database) -> None:
    alive = {100: True, 200: False}
    pid_alive = alive.__getitem__
    multi = database.backend == "postgres"
    with database.transaction() as tx:
        assert meta.register_node(tx, "mail-1", "host-a", 100, NOW, pid_alive) is False
        with pytest.raises(StartRefused) as info:
            meta.register_node(tx, "mail-1", "host-b", 300, NOW + 5, pid_alive)
        assert info.value.message == "node id 'mail-1' is already active on this database"
        # Same host, pid gone: a crashed node restarted at once takes its id over.
        alive[100] = False
        assert meta.register_node(tx, "mail-1", "host-a", 200, NOW + 6, pid_alive) is True
        assert meta.heartbeat_node(tx, "mail-1", NOW + 10)
        if multi:
            assert meta.register_node(tx, "mail-2", "host-b", 5, NOW + 11, pid_alive) is False
        else:
            with pytest.raises(StartRefused) as info:
                meta.register_node(tx, "mail-2", "host-b", 5, NOW + 11, pid_alive)
            assert info.value.message == (
                "database is already served by node 'mail-1' (SQLite supports one node)"
            )
        # A heartbeat older than 15 s is not live, whatever the host.
        assert meta.register_node(tx, "mail-1", "host-c", 7, NOW + 25, pid_alive) is True
        assert [n["node_id"] for n in meta.list_nodes(tx)] == (
            ["mail-1", "mail-2"] if multi else ["mail-1"]
        )
        assert meta.list_nodes(tx)[0]["host"] == "host-c"
        meta.delete_node(tx, "mail-1")
        assert not meta.heartbeat_node(tx, "mail-1", NOW + 30)


def test_scheduler_and_fingerprint(database: Database) -> None:
    with database.transaction() as tx:
        assert meta.get_key_fingerprint(tx) is None
        meta.set_key_fingerprint(tx, "abcdef0123456789")
        meta.set_scheduler_active(tx, True)
    with database.transaction(write=False) as tx:
        assert meta.get_key_fingerprint(tx) == "abcdef0123456789"
        assert meta.get_scheduler_active(tx) is True


def test_command_log(database: Database) -> None:
    with database.transaction() as tx:
        ids = [
            commandlog.append(tx, NOW, "addTenant", None, {"id": "acme"}, 200),
            commandlog.append(
                tx, NOW + 10, "addMessages", "acme", {"messages": [{"id": "m"}]}, 200
            ),
            commandlog.append(tx, NOW + 20, "deleteMessages", "acme", {"ids": ["m"]}, 200),
            commandlog.append(tx, NOW + 30, "addMessages", "beta", {"messages": []}, 400),
        ]
        assert ids == sorted(ids)
        newest_first = commandlog.list_commands(tx)
        assert [c["id"] for c in newest_first] == ids[::-1]
        assert (
            newest_first[0]["payload"] == {"messages": []}
            and newest_first[0]["response_status"] == 400
        )
        assert [c["id"] for c in commandlog.list_commands(tx, tenant_id="acme")] == [ids[2], ids[1]]
        assert [c["id"] for c in commandlog.list_commands(tx, endpoint_filter="Messages")] == ids[
            :0:-1
        ]
        window = commandlog.list_commands(tx, since_ts=NOW + 10, until_ts=NOW + 20)
        assert [c["id"] for c in window] == [ids[2], ids[1]]
        assert [c["id"] for c in commandlog.list_commands(tx, limit=1, offset=1)] == [ids[2]]
        exported = commandlog.export(tx, since_ts=NOW + 5)
        assert [c["endpoint"] for c in exported] == ["addMessages", "deleteMessages", "addMessages"]
        assert commandlog.purge(tx, NOW + 15) == 2
        assert len(commandlog.export(tx)) == 2


def test_retention_sweep(database: Database) -> None:
    setup_tenant(database, "acme", client_base_url="https://app.example")
    setup_tenant(database, "quiet")  # no URL: its events are acknowledged when recorded
    owner = "n/s"
    with database.transaction() as tx:
        for tenant_id in ("acme", "quiet"):
            queue.enqueue(
                tx,
                tenant_id,
                [make_item("sent"), make_item("failed"), make_item("queued")],
                [],
                NOW,
            )
            rows = queue.claim_batch(tx, tenant_id, "main", owner, 2, NOW, 120)
            leases.complete_sent(tx, rows[0]["pk"], owner, NOW)
            leases.complete_error(tx, rows[1]["pk"], owner, NOW, error="no")
        acme_events = events.unreported(tx, "acme", 10)
        events.acknowledge(tx, [acme_events[0]["event_id"]], NOW + 10)  # only "sent" acked
        ratelimit.reserve(tx, "acme", "main", None, NOW, rate_windows(limit_per_minute=10))
        commandlog.append(tx, NOW, "addMessages", "acme", {}, 200)
    with database.transaction() as tx:
        assert retention.sweep(tx, NOW + 50, 100, 1000) == {
            "messages": 0,
            "rate_slots": 0,
            "session_slots": 0,
            "commands": 0,
        }
        swept = retention.sweep(tx, NOW + 86_401, 100, 1000)
        assert swept == {"messages": 3, "rate_slots": 1, "session_slots": 0, "commands": 1}
        remaining = {
            tenant_id: sorted(r["id"] for r in store_messages.list_messages(tx, tenant_id, NOW)[0])
            for tenant_id in ("acme", "quiet")
        }
        assert remaining == {"acme": ["failed", "queued"], "quiet": ["queued"]}
        # A retention ≤ 0 disables the message sweep; command-log ≤ 0 keeps entries forever.
        events.acknowledge(tx, [acme_events[1]["event_id"]], NOW + 20)
        commandlog.append(tx, NOW, "addMessages", "acme", {}, 200)
        assert retention.sweep(tx, NOW + 10**7, 0, 0)["messages"] == 0
        assert retention.sweep(tx, NOW + 10**7, 0, 0)["commands"] == 0
        assert retention.sweep(tx, NOW + 10**7, 100, 0, chunk=1)["messages"] == 1
