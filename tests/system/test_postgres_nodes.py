"""Nodes sharing one PostgreSQL database, and the one-node rule of SQLite (reference §8.3, §8.6, §18.5)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.daemon import Daemon, wait_for
from tests.dbfixtures import create_pg_database, drop_pg_database
from tests.system.test_control_and_wakeups import _log_events

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(daemon: Daemon) -> Iterator[str]:
    url = create_pg_database("mp_daemon")
    try:
        yield url
    finally:
        # Stop the nodes before their database goes away.
        daemon.close()
        drop_pg_database(url)


def test_two_nodes_wake_each_other_and_node_ids_are_exclusive(daemon: Daemon, pg_url: str) -> None:
    common = {"GMP_DATABASE_URL": pg_url, "GMP_SENDER_PROCESSES": "1"}
    first = daemon.serve(env={**common, "GMP_NODE_ID": "node-a"})
    second = daemon.serve(
        env={
            **common,
            "GMP_NODE_ID": "node-b",
            "GMP_SEND_LOOP_INTERVAL": "5",
            "GMP_LOG_LEVEL": "DEBUG",
        }
    )
    assert first.control("status")["node"] == "node-a"
    assert second.http("GET", "/status").json()["node"] == "node-b"

    # run-now on one node reaches the idle workers of the other through LISTEN/NOTIFY.
    asked = time.time()
    first.control("run_now")
    woken = wait_for(
        lambda: (e := _log_events(second, "woken (run_now)")) and len(e) >= 2 and e,
        5,
        what="node-b's workers to be woken from node-a",
    )
    assert max(woken.values()) - asked < 1.0

    # The scheduler state is shared: a suspend on one node is seen by the other.
    first.control("suspend")
    assert second.control("status")["scheduler_active"] is False

    # A third node with a live node id is refused (exit 2).
    clash = daemon.serve(env={**common, "GMP_NODE_ID": "node-a"}, wait=False)
    assert clash.wait_exit(40) == 2
    assert "error: node id 'node-a' is already active on this database" in clash.log()


def test_a_second_node_on_one_sqlite_database_is_refused(daemon: Daemon) -> None:
    first = daemon.serve(env={"GMP_NODE_ID": "solo", "GMP_SENDER_PROCESSES": "1"})
    database = first.env["GMP_DB_PATH"]
    other = daemon.serve(env={"GMP_NODE_ID": "intruder"}, database=database, wait=False)
    assert other.wait_exit(30) == 2
    assert "error: database is already served by node 'solo' (SQLite supports one node)" in (
        other.log()
    )
    assert first.process.poll() is None
