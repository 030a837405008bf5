"""Supervision that takes real time: a silent worker is killed and replaced (reference §2.2, §18.4).

A worker that stops sending heartbeats (here: frozen with SIGSTOP, so it is alive but silent)
is killed with SIGKILL after 30 s and restarted under the same index. The test waits for the
real 30 s rule; it is the one slow test of the suite, marked ``slow``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.daemon import Daemon, pid_running, wait_for


@pytest.mark.slow
def test_a_silent_worker_is_killed_and_restarted(daemon: Daemon) -> None:
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "1"})
    sender = next(w for w in node.workers() if w["kind"] == "sender")
    frozen = int(sender["pid"])
    os.kill(frozen, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        fresh = wait_for(
            lambda: next(
                (
                    w
                    for w in node.workers()
                    if w["kind"] == "sender"
                    and w.get("pid") not in (None, frozen)
                    and w["state"] == "running"
                ),
                None,
            ),
            60,
            interval=0.5,
            what="a new sender process",
        )
    finally:
        if pid_running(frozen):
            os.kill(frozen, signal.SIGCONT)
    silent_for = time.monotonic() - stopped_at
    # Heartbeats come every 5 s and silence is tolerated for 30 s: never before ~25 s of
    # silence (the last heartbeat may predate the freeze by up to 5 s), well within a minute.
    assert 24 <= silent_for <= 60, silent_for
    assert fresh["index"] == sender["index"] and fresh["restarts"] == 1
    wait_for(lambda: not pid_running(frozen), 10, what="the frozen worker to be gone")
    assert f"(pid {frozen}) silent for" in node.log()


@pytest.mark.slow
def test_an_unreachable_database_at_start_is_retried_for_30_s_then_exit_1(daemon: Daemon) -> None:
    # A port nothing listens on: connection refused at once, every time.
    node = daemon.serve(database="postgresql://postgres@127.0.0.1:9/none", wait=False)
    started = time.monotonic()
    code = node.wait_exit(90)
    elapsed = time.monotonic() - started
    assert code == 1
    assert 29 <= elapsed <= 75, elapsed
    log = node.log()
    assert "retrying" in log and "gave up after 30 s" in log
    assert "Traceback" not in log
