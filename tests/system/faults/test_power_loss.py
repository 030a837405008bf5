"""Power loss during ingest: every add-messages request answered 200 has all its messages in the
database after a restart, and no request is half applied (reference §4.5). On SQLite, a copy of the
database files taken mid-write (the process group frozen, as a crash leaves the files) reopens
with every acknowledged message."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.daemon import Daemon, Node, wait_for
from tests.system.faults.conftest import Scale
from tests.system.faults.harness import TENANT, Inspector, add_messages, setup_tenant
from tests.system.smtpsink import SmtpSink

CLIENTS = 4
BATCH = 50


class Ingest:
    """Client threads posting batches of new ids until stopped, recording every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acknowledged: list[list[str]] = []  # answered 200 with every item queued
        self.unknown: list[list[str]] = []  # no answer, or not a 200
        self.acknowledged_at: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(CLIENTS)]

    def _run(self, client: int) -> None:
        request = 0
        while not self._stop.is_set():
            ids = [f"pl-{client}-{request}-{n}" for n in range(BATCH)]
            request += 1
            try:
                answer = add_messages(self.url, ids, timeout=10)
            except httpx.HTTPError:
                with self._lock:
                    self.unknown.append(ids)
                continue
            with self._lock:
                if answer.status_code == 200 and answer.json().get("queued") == BATCH:
                    self.acknowledged.append(ids)
                    self.acknowledged_at.append(time.monotonic())
                else:
                    self.unknown.append(ids)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def _stored_ids(inspector: Inspector) -> set[str]:
    rows = inspector.rows("SELECT id FROM messages WHERE tenant_id = %s", (TENANT,))
    return {row["id"] for row in rows}


def _check(stored: set[str], acknowledged: list[list[str]], every: list[list[str]]) -> None:
    missing = [i for ids in acknowledged for i in ids if i not in stored]
    assert missing == [], f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    halves = [ids[0] for ids in every if 0 < sum(i in stored for i in ids) < len(ids)]
    assert halves == [], f"requests applied in part: {halves[:5]}"


def _node(daemon: Daemon, database: str | None = None) -> Node:
    # The scheduler stays off: only ingest and durability matter here.
    return daemon.serve(
        env={"GMP_SCHEDULER_ACTIVE": "false", "GMP_SENDER_PROCESSES": "1"}, database=database
    )


def test_sigkill_of_the_whole_group_while_ingesting_keeps_every_200(
    daemon: Daemon, smtp_sink: SmtpSink, scale: Scale
) -> None:
    node = _node(daemon)
    database = node.env["GMP_DB_PATH"]
    setup_tenant(node, smtp_sink.port, None)
    ingest = Ingest(node.url)
    ingest.start()
    try:
        wait_for(lambda: len(ingest.acknowledged) >= 5, 30, what="ingest under way")
        time.sleep(scale.ingest_seconds)
        node.kill_group()  # power loss: supervisor, API and every worker at once
        node.process.wait(10)
    finally:
        ingest.stop()
    assert ingest.acknowledged
    restarted = _node(daemon, database)
    assert restarted.http("GET", "/health").status_code == 200
    every = ingest.acknowledged + ingest.unknown
    _check(_stored_ids(Inspector(database)), ingest.acknowledged, every)
    count = restarted.http("GET", "/stats").json()["messages"]["pending"]
    assert count >= BATCH * len(ingest.acknowledged)
    print(
        f"\nfaults/power-loss [{scale.name}]: acknowledged={len(ingest.acknowledged)} requests "
        f"({BATCH * len(ingest.acknowledged)} messages), unanswered={len(ingest.unknown)}"
    )


def test_sqlite_files_copied_mid_write_reopen(
    daemon: Daemon, smtp_sink: SmtpSink, scale: Scale, tmp_path: Path
) -> None:
    node = _node(daemon)
    database = Path(node.env["GMP_DB_PATH"])
    setup_tenant(node, smtp_sink.port, None)
    ingest = Ingest(node.url)
    ingest.start()
    copies: list[tuple[Path, int]] = []
    try:
        wait_for(lambda: len(ingest.acknowledged) >= 3, 30, what="ingest under way")
        deadline = time.monotonic() + scale.ingest_seconds
        while time.monotonic() < deadline or not copies:
            # Freeze every process of the node mid-write, take the files as they are on disk
            # (what a crash of all of them leaves), and let it run on.
            os.killpg(node.process.pid, signal.SIGSTOP)
            try:
                acknowledged = len(ingest.acknowledged)
                target = tmp_path / f"copy-{len(copies)}"
                target.mkdir()
                for suffix in ("", "-wal", "-shm"):
                    source = Path(str(database) + suffix)
                    if source.exists():
                        shutil.copyfile(source, target / (database.name + suffix))
                shutil.copyfile(database.parent / "secret.key", target / "secret.key")
                copies.append((target / database.name, acknowledged))
            finally:
                os.killpg(node.process.pid, signal.SIGCONT)
            time.sleep(0.5)
    finally:
        ingest.stop()
    node.signal(signal.SIGTERM)
    node.wait_exit(30)
    reopen = copies[-3:] if scale.name == "long" else copies[-1:]  # a node start each
    for copy, acknowledged in reopen:
        os.chmod(copy.parent / "secret.key", 0o600)
        reopened = _node(daemon, str(copy))
        assert reopened.http("GET", "/health").status_code == 200
        stored = _stored_ids(Inspector(str(copy)))
        # Everything acknowledged before the freeze is in the copy; nothing is half there.
        _check(stored, ingest.acknowledged[:acknowledged], ingest.acknowledged + ingest.unknown)
        reopened.signal(signal.SIGTERM)
        assert reopened.wait_exit(30) == 0
        conn = sqlite3.connect(copy)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    print(f"\nfaults/sqlite-copy [{scale.name}]: copies={len(copies)} reopened={len(reopen)}")
