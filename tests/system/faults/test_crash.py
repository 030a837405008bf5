"""Crash: a backlog drains while a sender, the reporter, the API and the supervisor are killed
with SIGKILL in turn (seeded moments, several rounds). At the end every message was delivered,
duplicates stay within what was in flight at the kills, every event was reported, and the
database holds no stuck claim, orphan event or lease of a dead run (reference §2.2, §8.3, §13.4, §18.4)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from tests.daemon import Daemon, Node, pid_running, wait_for
from tests.smtpservers import Script, SmtpServer
from tests.system.faults.conftest import Scale
from tests.system.faults.harness import Inspector, enqueue, setup_tenant, transmissions
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import TenantServer

NODE_ID = "crash-node"
ORDER = ("sender", "reporter", "api", "supervisor")


def _env() -> dict[str, str]:
    return {
        "GMP_NODE_ID": NODE_ID,
        "GMP_SENDER_PROCESSES": "2",
        "GMP_CLAIM_LEASE_SECONDS": "30",
        "GMP_RETRY_DELAYS": "1",
        "GMP_RETRY_JITTER": "0",
        "GMP_SEND_LOOP_INTERVAL": "0.2",
        "GMP_SMTP_TIMEOUT": "5",
    }


def _worker(node: Node, kind: str, rng: random.Random) -> dict[str, Any]:
    def running() -> list[dict[str, Any]]:
        return [w for w in node.workers() if w["kind"] == kind and w.get("pid")]

    found = wait_for(running, 90, interval=0.1, what=f"a running {kind}")
    return dict(rng.choice(found))


def test_sigkill_rounds_lose_nothing(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    scale: Scale,
) -> None:
    rng = random.Random(20 + scale.crash_messages)
    total = scale.crash_messages
    # A slow enough server that the drain outlasts every kill of the run.
    smtp_sink.delay = 0.12 if scale.name == "short" else 0.02
    sync = tenant_server()
    node = daemon.serve(env=_env())
    database = node.env["GMP_DB_PATH"]
    inspector = Inspector(database)
    setup_tenant(node, smtp_sink.port, sync.base_url)
    node.control("suspend")
    ids = [f"crash-{n:05d}" for n in range(total)]
    enqueue(node, ids)
    node.control("activate")

    kills = [kind for _ in range(scale.crash_rounds) for kind in ORDER]
    # Each kill fires once this fraction of the backlog has reached the SMTP server.
    marks = sorted(rng.uniform(0.05, 0.85) for _ in kills)
    in_flight_at_kills = 0
    log: list[str] = []
    for kind, mark in zip(kills, marks, strict=True):
        wait_for(
            lambda mark=mark: len(smtp_sink.received()) >= mark * total,
            180,
            interval=0.05,
            what=f"{mark:.0%} of the backlog delivered",
        )
        time.sleep(rng.uniform(0, 0.5))
        if kind == "supervisor":
            pids = node.worker_pids()
            os.kill(node.process.pid, signal.SIGKILL)
            node.process.wait(10)
            # Orphaned workers notice and exit on their own (reference §2.2: within 10 s).
            wait_for(
                lambda pids=pids: not [p for p in pids if pid_running(p)], 15, what="orphans gone"
            )
            left = inspector.in_flight(NODE_ID + "/")
            node = daemon.serve(env=_env(), database=database)
        else:
            victim = _worker(node, kind, rng)
            os.kill(int(victim["pid"]), signal.SIGKILL)
            left = inspector.in_flight(f"{NODE_ID}/{kind}-{victim['index']}")
            left = left if kind == "sender" else 0
        in_flight_at_kills += left
        log.append(f"{kind}@{mark:.0%}:{left}")

    def drained() -> bool:
        counts = inspector.status_counts()
        return counts.get("sent", 0) == total

    wait_for(drained, 300, interval=0.25, what="every message sent")
    wait_for(
        lambda: inspector.scalar("SELECT COUNT(*) FROM events WHERE reported_ts IS NULL") == 0,
        120,
        interval=0.25,
        what="every event acknowledged",
    )
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0

    sent = transmissions([r.data for r in smtp_sink.received()])
    assert set(sent) == set(ids), f"never delivered: {sorted(set(ids) - set(sent))[:10]}"
    duplicates = sum(n - 1 for n in sent.values())
    assert duplicates <= in_flight_at_kills, (duplicates, in_flight_at_kills, log)

    events = inspector.rows("SELECT id, event_type FROM events")
    reported = {(item["id"], item["event"]) for item in sync.reported_items()}
    assert {(e["id"], e["event_type"]) for e in events} <= reported
    assert sorted(e["id"] for e in events if e["event_type"] == "sent") == ids
    assert inspector.consistency_problems() == []
    retries = sum(1 for e in events if e["event_type"] == "deferred")
    items = sync.reported_items()
    repeated = len(items) - len({(item["id"], item["event"]) for item in items})
    print(
        f"\nfaults/crash [{scale.name}]: messages={total} kills={len(kills)} ({' '.join(log)}) "
        f"in_flight_at_kills={in_flight_at_kills} duplicates={duplicates} retries={retries} "
        f"report_items={len(items)} repeated_report_items={repeated} events={len(events)}"
    )


def test_a_restart_after_a_power_loss_frees_the_dead_runs_session_slots(
    daemon: Daemon, smtp_server: Callable[..., SmtpServer]
) -> None:
    """An account with one concurrent session, its session held by a node that loses power:
    the restarted node sends at once instead of waiting out the dead run's slot lease."""
    server = smtp_server(script=Script(stall_after_data=120))
    env = {**_env(), "GMP_CLAIM_LEASE_SECONDS": "120"}
    node = daemon.serve(env=env)
    database = node.env["GMP_DB_PATH"]
    inspector = Inspector(database)
    setup_tenant(node, server.port, None, account={"max_concurrent": 1})
    enqueue(node, ["slot-1"])
    wait_for(lambda: server.log.messages, 30, what="the message inside a held session")
    assert inspector.scalar("SELECT COUNT(*) FROM session_slots") == 1
    node.kill_group()
    node.process.wait(10)
    server.script.stall_after_data = 0
    started = time.monotonic()
    node = daemon.serve(env=env, database=database)
    wait_for(lambda: len(server.log.messages) >= 2, 60, what="the message sent again")
    # Well within the 120 s lease the dead run's slot would otherwise keep.
    assert time.monotonic() - started < 40
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
