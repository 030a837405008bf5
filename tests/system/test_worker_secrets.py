"""Workers' environments carry no secret of the node (reference §2.5): the admin token comes over the link."""

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


def test_no_secret_variable_in_any_worker_environment(daemon: Daemon) -> None:
    """The serve / EnvironmentFile way: every secret in the environment (reference §2.2, defect 15.5)."""
    import base64
    import os

    from tests.dbfixtures import create_pg_database, drop_pg_database

    url = create_pg_database("mp_secrets")
    # Trust authentication ignores the password, so a URL can carry one for the test.
    with_password = url.replace("postgres@", "postgres:pg-pass-0123456789@", 1)
    assert with_password != url
    secrets_given = {
        "GMP_API_TOKEN": "admin-token-in-env-0123456789",
        "GMP_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
        "GMP_METRICS_TOKEN": "metrics-token-in-env-0123456789",
        "GMP_DATABASE_URL": with_password,
    }
    try:
        node = daemon.serve(env=secrets_given)
        workers = node.worker_pids()
        assert len(workers) == 4  # api, 2 senders, reporter
        for pid in workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            for name, value in secrets_given.items():
                assert value.encode() not in environ, (pid, name)
                assert f"{name}=".encode() not in environ, (pid, name)
            assert b"pg-pass-0123456789" not in environ, pid
        # The workers still got the values over the link: the API answers the admin token,
        # the metrics token, and the database is reached.
        admin = {"X-API-Token": secrets_given["GMP_API_TOKEN"]}
        assert node.http("GET", "/status", headers=admin).status_code == 200
        metrics = {"X-API-Token": secrets_given["GMP_METRICS_TOKEN"]}
        assert node.http("GET", "/metrics", headers=metrics).status_code == 200
        assert node.http("GET", "/metrics", headers={"X-API-Token": "x" * 12}).status_code == 401
    finally:
        daemon.close()
        drop_pg_database(url)
