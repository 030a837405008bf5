"""The first steps of a new user on a fresh HOME (reference §15.2), as real commands."""

from __future__ import annotations

import json
import os
import re
import socket
import stat

from tests.daemon import Daemon, pid_running


def test_start_status_list_stop_delete(daemon: Daemon) -> None:
    started = daemon.cli("start", "demo")
    assert started.returncode == 0, started.stderr
    out = started.stdout
    token = re.search(r"^Admin token: (\S+)$", out, re.M)
    url = re.search(r"running \(pid (\d+)\) at (http://127\.0\.0\.1:\d+)$", out, re.M)
    assert token and len(token.group(1)) == 43, out
    assert url, out
    pid, base = int(url.group(1)), url.group(2)
    home = daemon.home / "demo"
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    for name in ("config.toml", "api_token", "secret.key", "mail_service.db", "server.pid"):
        assert stat.S_IMODE(os.stat(home / name).st_mode) == 0o600, name
    assert (home / "api_token").read_text().strip() == token.group(1)
    pid_file = json.loads((home / "server.pid").read_text())
    assert pid_file["pid"] == pid and pid_running(pid)
    assert stat.S_IMODE(os.stat(home / "logs" / "mail-proxy.log").st_mode) == 0o600

    again = daemon.cli("start", "demo")
    assert (again.returncode, again.stdout.strip()) == (0, f"already running (pid {pid})")

    status = daemon.cli("status", "demo")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("demo: running")
    assert f"pid:        {pid}" in status.stdout and base in status.stdout
    assert "scheduler:  active" in status.stdout  # new instances start with it active
    assert "sender 2/2" in status.stdout
    as_json = json.loads(daemon.cli("status", "demo", "--json").stdout)
    assert as_json["status"] == "running" and as_json["pid"] == pid

    listing = daemon.cli("list")
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("demo "))
    assert row.split()[:3] == ["demo", "running", str(pid)] and row.split()[-1] == "sqlite"
    listed = json.loads(daemon.cli("list", "--json").stdout)["instances"]
    assert [(i["name"], i["status"], i["url"]) for i in listed] == [("demo", "running", base)]

    log = (home / "logs" / "mail-proxy.log").read_text()
    # Workers' lines reach the daemon's single log file through the supervisor.
    assert re.search(r"Z INFO supervisor\[\d+\] mail-proxy \S+ ready: node \S+, database ", log)
    assert re.search(r"Z INFO api\[\d+\] listening on", log)

    restarted = daemon.cli("restart", "demo")
    assert restarted.returncode == 0, restarted.stderr
    new_pid = int(re.search(r"running \(pid (\d+)\)", restarted.stdout).group(1))  # type: ignore[union-attr]
    assert new_pid != pid and not pid_running(pid) and pid_running(new_pid)
    assert "Admin token" not in restarted.stdout  # shown once, at creation only
    pid = new_pid

    stopped = daemon.cli("stop", "demo")
    assert (stopped.returncode, stopped.stdout.strip()) == (0, "'demo' stopped")
    assert not pid_running(pid) and not (home / "server.pid").exists()
    after = daemon.cli("status", "demo")
    assert (after.returncode, after.stdout.strip()) == (3, "demo: stopped")
    assert daemon.cli("stop", "demo").returncode == 0  # not running: still success

    refused = daemon.cli("delete", "demo")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: missing --force (required when not running interactively)"
    )
    deleted = daemon.cli("delete", "demo", "--force")
    assert (deleted.returncode, deleted.stdout.strip()) == (0, "Instance 'demo' deleted")
    assert not home.exists()
    assert daemon.cli("list").stdout.strip().startswith("no instances")
    gone = daemon.cli("status", "demo")
    assert (gone.returncode, gone.stderr.strip()) == (1, "error: instance 'demo' does not exist")


def test_usage_errors_are_one_line_with_exit_code_two(daemon: Daemon) -> None:
    bad_flag = daemon.cli("start", "demo", "--bogus")
    assert bad_flag.returncode == 2 and bad_flag.stderr.startswith("error: ")
    assert len(bad_flag.stderr.strip().splitlines()) == 1
    bad_port = daemon.cli("start", "demo", "--port", "99999")
    assert bad_port.returncode == 2
    assert "--port" in bad_port.stderr and "Traceback" not in bad_port.stderr
    assert not (daemon.home / "demo").exists()  # nothing created by a refused start
    version = daemon.cli("--version")
    assert (version.returncode, version.stdout.strip()) == (0, "mail-proxy 1.0.0")


def test_a_start_that_cannot_become_ready_shows_the_log(daemon: Daemon) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        failed = daemon.cli("start", "demo", "--port", str(port))
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[0].startswith("error: instance 'demo' did not start")
    assert any(f"port {port} is already in use" in line for line in lines[1:])
    assert not (daemon.home / "demo" / "server.pid").exists()
