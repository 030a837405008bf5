"""A node's life as systemd and an operator see it (reference §2.2, §18.1–§18.4)."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from mailproxyd.control.client import ControlError
from tests.daemon import Daemon, pid_running, wait_for


def test_ready_restart_and_graceful_stop(daemon: Daemon) -> None:
    """One node's whole life: READY only when serving, a crashed sender comes back, SIGTERM
    stops everything with exit 0."""
    # WATCHDOG_USEC as systemd sets it for WatchdogSec=2: WATCHDOG=1 is due every second.
    node = daemon.serve(env={"WATCHDOG_USEC": "2000000"}, wait=False)
    node.wait_ready()
    # The moment READY=1 has arrived, the API answers and every worker is up.
    answer = node.http("GET", "/status")
    assert answer.status_code == 200
    assert answer.json()["workers"] == {
        "api": {"expected": 1, "running": 1},
        "sender": {"expected": 2, "running": 2},
        "reporter": {"expected": 1, "running": 1},
    }
    listing = node.workers()
    assert sorted((w["kind"], w["index"]) for w in listing) == [
        ("api", 0), ("reporter", 0), ("sender", 0), ("sender", 1)
    ]  # fmt: skip
    assert all(w["state"] == "running" and w["restarts"] == 0 for w in listing)
    lines = node.notify.lines()
    assert "STOPPING=1" not in lines[: lines.index("READY=1")]
    status_lines = [line for line in lines if line.startswith("STATUS=serving on")]
    assert status_lines and "senders 2/2; reporter 1/1" in status_lines[-1]

    wait_for(lambda: node.notify.lines().count("WATCHDOG=1") >= 2, 5, what="watchdog pings")

    # kill -9 of a sender: restarted, same index, visible again in ``workers``.
    victim = next(w for w in listing if w["kind"] == "sender" and w["index"] == 1)
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> dict | None:
        now = next(w for w in node.workers() if w["kind"] == "sender" and w["index"] == 1)
        ok = now["state"] == "running" and now.get("pid") not in (None, victim["pid"])
        return now if ok else None

    again = wait_for(restarted, 15, what="sender 1 to come back")
    assert again["restarts"] == 1
    assert not pid_running(victim["pid"])
    assert node.http("GET", "/status").json()["workers"]["sender"] == {"expected": 2, "running": 2}

    # SIGTERM: STOPPING=1, every child gone, socket removed, exit 0.
    pids = node.worker_pids()
    assert len(pids) == 4 and all(pid_running(p) for p in pids)
    node.signal(signal.SIGTERM)
    assert node.wait_exit(30) == 0
    assert node.notify.first("STOPPING=1") is not None
    assert not [p for p in pids if pid_running(p)]
    assert not os.path.exists(node.socket_path)


def test_workers_exit_soon_after_the_supervisor_is_killed(daemon: Daemon) -> None:
    node = daemon.serve()
    pids = node.worker_pids()
    killed_at = time.monotonic()
    os.kill(node.process.pid, signal.SIGKILL)
    node.process.wait(5)
    wait_for(lambda: not [p for p in pids if pid_running(p)], 10, what="orphaned workers to exit")
    assert time.monotonic() - killed_at < 10


def test_sighup_and_reload_apply_the_file_without_restarting(daemon: Daemon) -> None:
    config = Path(daemon.root) / "node.toml"
    config.write_text('[logging]\nlevel = "INFO"\n[scheduler]\nsender_processes = 2\n')
    node = daemon.serve(env={"GMP_CONFIG": str(config), "GMP_SENDER_PROCESSES": ""})
    before = sorted(node.worker_pids())
    assert "DEBUG" not in node.log()

    # SIGHUP with a new log level: RELOADING=1 … READY=1, and every worker logs at DEBUG now.
    config.write_text('[logging]\nlevel = "DEBUG"\n[scheduler]\nsender_processes = 2\n')
    node.signal(signal.SIGHUP)
    wait_for(lambda: node.notify.first("RELOADING=1"), 10, what="RELOADING=1")
    wait_for(lambda: node.notify.lines().count("READY=1") >= 2, 10, what="READY=1 after reload")
    wait_for(
        lambda: node.log().count("applied reloaded settings") == 4,
        10,
        what="every worker to apply the reload at DEBUG",
    )
    assert sorted(node.worker_pids()) == before
    assert node.process.poll() is None

    # The control method: what changed, what needs a restart; senders are resized.
    config.write_text(
        '[logging]\nlevel = "DEBUG"\n[scheduler]\nsender_processes = 3\ntest_mode = true\n'
    )
    assert node.control("reload") == {
        "reloaded": True,
        "changed": ["sender_processes"],
        "restart_required": ["test_mode"],
    }
    wait_for(
        lambda: [w["state"] for w in node.workers() if w["kind"] == "sender"] == ["running"] * 3,
        20,
        what="a third sender",
    )
    config.write_text("[scheduler]\nsender_processes = 1\n")
    node.control("reload")
    wait_for(
        lambda: [w["index"] for w in node.workers() if w["kind"] == "sender"] == [0],
        30,
        what="senders to shrink to one",
    )
    # An invalid file leaves the running configuration untouched; the method returns the error.
    config.write_text("[scheduler]\nsender_processes = 0\n")
    with pytest.raises(ControlError) as refused:
        node.control("reload")
    assert "scheduler.sender_processes" in refused.value.message
    assert [w["index"] for w in node.workers() if w["kind"] == "sender"] == [0]
    assert "reload failed, configuration unchanged" in node.log()


def test_start_errors_and_refusals_have_their_exit_codes(daemon: Daemon) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = daemon.serve(env={"GMP_PORT": str(port), "GMP_SENDER_PROCESSES": "1"}, wait=False)
        assert node.wait_exit(30) == 1
    assert f"error: port {port} is already in use" in node.log()
    assert "Traceback" not in node.log()
    assert node.notify.first("READY=1") is None

    # That start recorded the key's fingerprint: another key is refused (exit 2, reference §2.5).
    database = node.env["GMP_DB_PATH"]
    other_key = "A" * 43
    refused = daemon.serve(env={"GMP_SECRET_KEY": other_key}, database=database, wait=False)
    assert refused.wait_exit(30) == 2
    assert re.search(
        r"^error: secret key does not match the database \(expected fingerprint [0-9a-f]{16}\)$",
        refused.log(),
        re.M,
    ), refused.log()

    no_token = daemon.serve(env={"GMP_API_TOKEN": ""}, wait=False)
    assert no_token.wait_exit(30) == 2
    assert (
        "error: no admin token configured: set GMP_API_TOKEN or create the instance with "
        "mail-proxy start" in no_token.log()
    )
    bad = daemon.serve(env={"GMP_PORT": "abc"}, wait=False)
    assert bad.wait_exit(30) == 2
    assert (
        'error: configuration error: GMP_PORT: must be an integer between 1 and 65535 (got "abc")'
        in bad.log()
    )
