"""Workers' environments carry no secret of the node (§2.5): the admin token comes over the link."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon import Daemon, wait_for


def test_no_admin_token_in_any_worker_environment(daemon: Daemon) -> None:
    # An instance whose token lives only in its api_token file (not in GMP_API_TOKEN).
    started = daemon.cli("start", "sec", env={"GMP_API_TOKEN": ""})
    assert started.returncode == 0, started.stderr
    token = (daemon.home / "sec" / "api_token").read_text().strip()
    pid_file = daemon.home / "sec" / "server.pid"
    supervisor = json.loads(pid_file.read_text())["pid"]
    children = wait_for(
        lambda: [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == supervisor],
        10,
        what="the worker processes",
    )
    assert len(children) >= 4  # api, 2 senders, reporter
    for proc in children:
        environ = (proc / "environ").read_bytes()
        assert token.encode() not in environ, proc
    assert daemon.cli("stop", "sec").returncode == 0


def _ppid(proc: Path) -> int | None:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1])
