"""``mail-proxy NAME token [--regenerate]`` against a running daemonised instance (reference §15.3, §3.4)."""

from __future__ import annotations

import re

import httpx

from tests.daemon import Daemon


def test_token_prints_and_regenerates_for_a_running_node(daemon: Daemon) -> None:
    started = daemon.cli("start", "tok")
    assert started.returncode == 0, started.stderr
    base = re.search(r"at (http://127\.0\.0\.1:\d+)$", started.stdout, re.M)
    assert base, started.stdout
    shown = daemon.cli("tok", "token")
    assert shown.returncode == 0 and re.fullmatch(r"[A-Za-z0-9_-]{43}\n", shown.stdout)
    old_token = shown.stdout.strip()
    assert (
        httpx.get(base.group(1) + "/status", headers={"X-API-Token": old_token}).status_code == 200
    )

    fresh = daemon.cli("tok", "token", "--regenerate")
    assert fresh.returncode == 0, fresh.stderr
    new_token = fresh.stdout.strip()
    assert new_token != old_token and len(new_token) == 43
    assert daemon.cli("tok", "token").stdout.strip() == new_token

    # The running node switched at once: the old token stops working, the new one works.
    def status(token: str) -> int:
        return httpx.get(base.group(1) + "/status", headers={"X-API-Token": token}).status_code

    assert (status(old_token), status(new_token)) == (401, 200)
    assert daemon.cli("stop", "tok").returncode == 0
    missing = daemon.cli("nope", "token")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")
