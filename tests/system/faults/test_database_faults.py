"""Database faults: PostgreSQL connections killed and the database made unreachable mid-drain
(the long run also restarts the cluster), and a full disk under SQLite. Meanwhile the API answers
503 ``unavailable``; afterwards everything resumes and nothing accepted is lost (reference §2.6, §4.4)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.daemon import Daemon, Node, wait_for
from tests.dbfixtures import PG_ADMIN_URL, create_pg_database, drop_pg_database
from tests.system.faults.conftest import Scale
from tests.system.faults.harness import (
    Inspector,
    add_messages,
    enqueue,
    setup_tenant,
    transmissions,
)
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import TenantServer


@pytest.fixture
def pg_url(daemon: Daemon) -> Iterator[str]:
    url = create_pg_database("mp_faults")
    try:
        yield url
    finally:
        daemon.close()
        _allow_connections(url, True)
        drop_pg_database(url)


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _dbname(url: str) -> str:
    return url.rpartition("/")[2]


def _terminate(url: str) -> None:
    _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{_dbname(url)}' AND pid <> pg_backend_pid()"
    )


def _allow_connections(url: str, allowed: bool) -> None:
    _admin(f'ALTER DATABASE "{_dbname(url)}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')


def _cluster_online() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def _cluster_restarted() -> Iterator[None]:
    """``pg_ctlcluster … restart``; the cluster is online again when this block ends."""
    version, cluster = "15", "main"
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    if listing.returncode == 0 and listing.stdout.split():
        version, cluster = listing.stdout.split()[:2]
    try:
        subprocess.run(["pg_ctlcluster", version, cluster, "restart"], check=True, timeout=120)
        yield
    finally:
        if not _cluster_online():
            subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=False, timeout=120)
        wait_for(_cluster_online, 60, interval=0.5, what="PostgreSQL back online")


def _health(node: Node) -> httpx.Response | None:
    try:
        return httpx.get(node.url + "/health", timeout=5)
    except httpx.HTTPError:
        return None


def _drain(inspector: Inspector, total: int, timeout: float = 240) -> None:
    wait_for(
        lambda: inspector.status_counts().get("sent", 0) == total,
        timeout,
        interval=0.5,
        what=f"{total} messages sent",
    )
    wait_for(
        lambda: inspector.scalar("SELECT COUNT(*) FROM events WHERE reported_ts IS NULL") == 0,
        120,
        interval=0.5,
        what="every event acknowledged",
    )


@pytest.mark.postgres
def test_postgres_outage_mid_drain_gets_503_then_resumes(
    daemon: Daemon,
    pg_url: str,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    scale: Scale,
) -> None:
    smtp_sink.delay = 0.05
    sync = tenant_server()
    env = {"GMP_DATABASE_URL": pg_url, "GMP_NODE_ID": "pg-faults", "GMP_RETRY_DELAYS": "1"}
    node = daemon.serve(env=env)
    setup_tenant(node, smtp_sink.port, sync.base_url)
    inspector = Inspector(pg_url)
    ids = [f"db-{n:04d}" for n in range(300)]
    enqueue(node, ids)
    wait_for(lambda: len(smtp_sink.received()) >= 30, 120, what="the drain under way")

    # Connections killed under the node's feet, a few times: the pools reconnect.
    for _ in range(3):
        _terminate(pg_url)
        time.sleep(0.5)

    # The database unreachable for a while: 503 on the API, the node itself stays up.
    _allow_connections(pg_url, False)
    _terminate(pg_url)
    answer = wait_for(
        lambda: (h := _health(node)) is not None and h.status_code == 503 and h,
        30,
        what="/health 503",
    )
    assert answer.json() == {"status": "unavailable", "detail": "database unreachable"}
    refused = add_messages(node.url, ["db-refused"], timeout=30)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "unavailable"
    assert refused.headers["Retry-After"] == "5"
    time.sleep(3)
    assert node.process.poll() is None
    _allow_connections(pg_url, True)
    wait_for(lambda: (h := _health(node)) is not None and h.status_code == 200, 60, what="/health")
    more = [f"db-after-{n}" for n in range(20)]
    enqueue(node, more)

    if scale.name == "long":
        # The whole cluster restarted mid-drain (other tests' connections notice too).
        with _cluster_restarted():
            pass
        wait_for(lambda: (h := _health(node)) is not None and h.status_code == 200, 90)
        later = [f"db-restart-{n}" for n in range(20)]
        enqueue(node, later)
        more += later

    _drain(inspector, len(ids) + len(more))
    assert node.process.poll() is None
    sent = transmissions([r.data for r in smtp_sink.received()])
    assert set(sent) == set(ids + more)
    assert "db-refused" not in {r["id"] for r in inspector.rows("SELECT id FROM messages")}
    reported = {item["id"] for item in sync.reported_items() if item["event"] == "sent"}
    assert reported == set(ids + more)
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
    assert inspector.consistency_problems() == []
    duplicates = sum(n - 1 for n in sent.values())
    print(f"\nfaults/postgres-outage [{scale.name}]: messages={len(sent)} duplicates={duplicates}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-capped tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        # The last bytes one page at a time, so nothing is left at all.
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass


def test_sqlite_full_disk_gets_503_loses_nothing_and_recovers(
    daemon: Daemon, smtp_sink: SmtpSink, small_disk: Path
) -> None:
    database = small_disk / "mail.db"
    node = daemon.serve(
        env={"GMP_SCHEDULER_ACTIVE": "false", "GMP_SENDER_PROCESSES": "1"}, database=str(database)
    )
    setup_tenant(node, smtp_sink.port, None)
    accepted = [f"disk-{n}" for n in range(200)]
    enqueue(node, accepted, batch=100)
    filler = small_disk / "filler"
    _fill(filler)
    answers = []
    for n in range(20):
        ids = [f"full-{n}-{i}" for i in range(100)]
        answer = add_messages(node.url, ids, timeout=30)
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 200:
            accepted += ids
        answers.append(answer)
    refused = [a for a in answers if a.status_code == 503]
    assert refused, "a full disk never produced a 503"
    assert refused[0].json()["error"] == "unavailable"
    assert refused[0].headers["Retry-After"] == "5"
    assert node.process.poll() is None
    health = _health(node)
    assert health is not None and health.status_code in (200, 503)

    os.unlink(filler)  # space returns
    wait_for(
        lambda: add_messages(node.url, ["after-1"]).status_code == 200, 30, what="ingest again"
    )
    accepted.append("after-1")
    stored = {r["id"] for r in Inspector(str(database)).rows("SELECT id FROM messages")}
    assert set(accepted) <= stored
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
