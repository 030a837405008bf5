"""The control socket of a running node and the wake-up relay (reference §17, §8.6)."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time

import pytest

from mailproxyd.control.client import ControlError
from tests.daemon import Daemon, Node, wait_for

_LINE = re.compile(r"^(\S+Z) (\w+) ([\w-]+)\[(\d+)\] (.*)$")


def _log_events(node: Node, text: str) -> dict[str, float]:
    """For each process label, the time (Unix seconds) of its first log line containing text."""
    seen: dict[str, float] = {}
    for line in node.log().splitlines():
        match = _LINE.match(line)
        if match and text in match.group(5) and match.group(3) not in seen:
            stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
            seen[match.group(3)] = stamp.replace(tzinfo=dt.UTC).timestamp()
    return seen


def test_every_control_method_answers(daemon: Daemon) -> None:
    node = daemon.serve()
    status = node.control("status")
    assert status["pid"] == node.process.pid
    assert status["url"] == node.url and status["scheduler_active"] is True
    assert status["test_mode"] is False and status["version"] == "1.0.0"
    assert status["workers"]["sender"] == {"expected": 2, "running": 2}
    assert isinstance(status["started_at"], int) and isinstance(status["node"], str)

    workers = node.control("workers")["workers"]
    assert [w["kind"] for w in workers] == ["api", "sender", "sender", "reporter"]
    assert {"kind", "index", "pid", "state", "restarts", "started_at"} <= set(workers[1])

    stats = node.control("stats")
    assert stats["tenants"] == 0 and set(stats["messages"]) == {
        "pending", "deferred", "sending", "sent", "error"
    }  # fmt: skip
    assert node.control("run_now") == {"triggered": True}
    assert node.control("suspend") == {"scheduler_active": False, "active": False}
    assert node.control("status")["scheduler_active"] is False
    assert node.http("GET", "/status").json()["scheduler_active"] is False
    assert node.control("activate") == {"scheduler_active": True, "active": True}
    with pytest.raises(ControlError) as missing:
        node.control("suspend", {"tenant_id": "ghost"})
    assert missing.value.code == -32001 and "ghost" in missing.value.message
    with pytest.raises(ControlError) as missing_stats:
        node.control("stats", {"tenant_id": "ghost"})
    assert missing_stats.value.code == -32001
    assert node.control("reload") == {"reloaded": True, "changed": [], "restart_required": []}

    # A malformed line gets an error answer and the same connection goes on working.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(10)
        raw.connect(node.socket_path)
        raw.sendall(b"{oops\n" + json.dumps({"id": 9, "method": "workers"}).encode() + b"\n")
        buf = b""
        while buf.count(b"\n") < 2:
            buf += raw.recv(65536)
    first, second = (json.loads(line) for line in buf.splitlines())
    assert first["error"]["code"] == -32700
    assert second["id"] == 9 and len(second["result"]["workers"]) == 4

    assert node.control("stop", {"grace_seconds": 5}) == {"stopping": True}
    assert node.wait_exit(30) == 0


def test_run_now_reaches_idle_senders_within_milliseconds(daemon: Daemon) -> None:
    node = daemon.serve(env={"GMP_SEND_LOOP_INTERVAL": "5", "GMP_LOG_LEVEL": "DEBUG"})
    asked = time.time()
    node.control("run_now")
    woken = wait_for(
        lambda: (e := _log_events(node, "woken (run_now)")) and len(e) >= 3 and e,
        5,
        what="both senders and the reporter to be woken",
    )
    assert {"sender-0", "sender-1", "reporter"} <= set(woken)
    # Far below the 5 s poll interval: the wake-up travelled over the worker links.
    assert max(woken.values()) - asked < 1.0
