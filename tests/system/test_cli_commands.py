"""The operator's command line (reference §15.3–§15.4) as a new user runs it, on a fresh HOME.

Real processes throughout: the daemonised node, a real SMTP server, a real tenant sync
endpoint, and every command run as ``mail-proxy …`` with no terminal attached.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from mailproxyd import instance
from tests.daemon import Daemon, wait_for
from tests.system.smtpsink import SmtpSink

LETTER = (
    b"From: Shop <orders@acme.example>\r\n"
    b"To: Ann <ann@example.org>\r\n"
    b"Subject: Your order\r\n"
    b"Message-ID: <order-1@acme.example>\r\n"
    b"\r\n"
    b"Thanks for your order.\r\n"
)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def _json(daemon: Daemon, *args: str) -> Any:
    return json.loads(_ok(daemon.cli(*args, "--json")))


def test_the_new_user_path(daemon: Daemon, smtp_sink: SmtpSink, tenant_server: Any) -> None:
    sync = tenant_server()
    started = _ok(daemon.cli("start", "shop"))
    url = re.search(r"at (http://127\.0\.0\.1:\d+)$", started, re.M)
    assert url, started
    assert re.search(r"^Log: \S+/shop/logs/mail-proxy\.log", started, re.M), started
    token = _ok(daemon.cli("shop", "token")).strip()

    added = _ok(
        daemon.cli(
            "shop", "tenants", "add", "acme", "--base-url", sync.base_url,
            "--auth-method", "bearer", "--auth-token", "tok-acme-123",
        )
    )  # fmt: skip
    assert added.splitlines()[0] == "Tenant 'acme' created"
    assert re.search(r"^API key \(shown once\): [A-Za-z0-9_-]{43}$", added, re.M), added
    account = _ok(
        daemon.cli(
            "shop", "acme", "accounts", "add", "smtp1", "--host", "127.0.0.1",
            "--port", str(smtp_sink.port), "--tls-mode", "none",
        )
    )  # fmt: skip
    assert account.strip() == "Account 'smtp1' created for tenant 'acme'"

    letter = daemon.root / "letter.eml"
    letter.write_bytes(LETTER)
    sent = _ok(daemon.cli("shop", "acme", "send", str(letter)))
    message_id = re.search(r"^(eml-[0-9a-f]{16}): queued$", sent, re.M)
    assert message_id, sent
    mid = message_id.group(1)

    # The running node picks the CLI's change up from the database and delivers it.
    wait_for(lambda: smtp_sink.received(), 10, what="the message at the SMTP sink")
    assert smtp_sink.received()[0].rcpt_tos == ["ann@example.org"]
    assert b"Subject: Your order" in smtp_sink.received()[0].data

    def listed_sent() -> bool:
        out = _ok(daemon.cli("shop", "acme", "messages", "list"))
        return any(line.split()[:2] == [mid, "sent"] for line in out.splitlines())

    wait_for(listed_sent, 10, interval=0.3, what="messages list showing it sent")
    stats = _json(daemon, "shop", "stats")
    assert stats["ok"] is True and stats["messages"]["sent"] == 1
    assert (stats["tenants"], stats["accounts"]) == (1, 1)

    # The same file again is the same message: already sent, nothing queued, exit 1.
    again = daemon.cli("shop", "acme", "send", str(letter))
    assert again.returncode == 1, again
    assert f"{mid}: rejected: already sent" in again.stdout
    assert len(smtp_sink.received()) == 1

    # Every listing and show prints the API's own body (reference §15.1).
    api = httpx.Client(base_url=url.group(1), headers={"X-API-Token": token}, timeout=10)
    pairs = [
        (("shop", "tenants", "list"), "/tenants"),
        (("shop", "tenants", "show", "acme"), "/tenant/acme"),
        (("shop", "acme", "accounts", "list"), "/accounts?tenant_id=acme"),
        (("shop", "acme", "accounts", "show", "smtp1"), "/account/smtp1?tenant_id=acme"),
        (("shop", "acme", "messages", "list", "--limit", "100"), "/messages?tenant_id=acme"),
        (("shop", "acme", "messages", "show", mid), f"/message/{mid}?tenant_id=acme"),
        (("shop", "stats"), "/stats"),
        (("shop", "bounce", "show"), "/instance"),
    ]
    for args, path in pairs:
        assert _json(daemon, *args) == api.get(path).json(), args
    log_page = _json(daemon, "shop", "command-log", "list", "--limit", "100")
    assert log_page == api.get("/command-log?limit=100").json()
    assert {"addTenant", "addAccount", "addMessages"} <= {
        c["endpoint"] for c in log_page["commands"]
    }

    # The last five lines of the node's log file.
    log_file = daemon.home / "shop" / "logs" / "mail-proxy.log"
    for _ in range(
        6
    ):  # failed authentications are logged (reference §4.2): enough lines for a tail
        assert (
            httpx.get(url.group(1) + "/status", headers={"X-API-Token": "wrong"}).status_code == 401
        )
    wait_for(lambda: len(log_file.read_text().splitlines()) >= 8, 10, what="log lines")
    tail = _ok(daemon.cli("shop", "logs", "-n", "5")).splitlines()
    assert len(tail) == 5
    lines = log_file.read_text().splitlines()
    assert any(lines[i : i + 5] == tail for i in range(len(lines) - 4)), tail


def test_watch_prints_a_line_for_a_message_sent_meanwhile(
    daemon: Daemon, smtp_sink: SmtpSink
) -> None:
    _ok(daemon.cli("start", "w"))
    _ok(daemon.cli("w", "tenants", "add", "acme"))
    _ok(
        daemon.cli(
            "w", "acme", "accounts", "add", "smtp1", "--host", "127.0.0.1",
            "--port", str(smtp_sink.port), "--tls-mode", "none",
        )
    )  # fmt: skip
    watchers = [
        subprocess.Popen(
            [sys.executable, "-m", "mailproxyd.cli", "w", "watch", *extra],
            env=daemon.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Interrupted below with SIGINT: a suite started where SIGINT is ignored (a
            # background job of a shell) would pass the ignore on, and watch would keep it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        for extra in ([], ["acme", "--json"])
    ]
    seen: list[list[str]] = [[], []]
    readers = [
        threading.Thread(target=lambda w=w, out=out: out.extend(w.stdout), daemon=True)
        for w, out in zip(watchers, seen, strict=True)
    ]
    for reader in readers:
        reader.start()
    letter = daemon.root / "hello.eml"
    letter.write_bytes(LETTER)
    try:
        # The stream is live only (no replay): send until both watchers, connecting
        # meanwhile, have reported a message sent after they connected.
        for n in range(10):
            _ok(daemon.cli("w", "acme", "send", str(letter), "--id", f"W-{n}"))
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline and not all(
                any(f"W-{n}" in line for line in out) for out in seen
            ):
                time.sleep(0.1)
            if all(any(f"W-{n}" in line for line in out) for out in seen):
                break
    finally:
        for w in watchers:
            w.send_signal(signal.SIGINT)
        outputs = [(w.wait(timeout=15), w.stderr.read()) for w in watchers]  # type: ignore[union-attr]
        for reader in readers:
            reader.join(timeout=5)
    plain, as_json = "".join(seen[0]), "".join(seen[1])
    plain_err, json_err = outputs[0][1], outputs[1][1]
    assert outputs[0][0] == 0, plain_err
    assert "Traceback" not in plain_err + json_err
    line = re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d acme (W-\d+) sent account=smtp1$", plain, re.M
    )
    assert line, (plain, plain_err)
    frames = [json.loads(x) for x in as_json.splitlines() if x.strip()]
    assert any(f["event"] == "sent" and f["tenant_id"] == "acme" for f in frames), as_json
    assert all(set(f) >= {"id", "account_id", "priority", "sent_ts", "error_ts"} for f in frames)


def _instance(daemon: Daemon, name: str) -> None:
    instance.create_instance(name, environ={"MAIL_PROXY_HOME": str(daemon.home)}, now=time.time())


MISSING = "(required when not running interactively)"


USAGE_CASES: list[tuple[list[str], str | None]] = [
    (["shop", "tenants", "add"], f"missing ID {MISSING}"),
        (["shop", "tenants", "add", "b", "--auth-method", "bearer"], f"missing --auth-token {MISSING}"),
        (
            ["shop", "tenants", "add", "b", "--auth-method", "basic", "--auth-user", "u"],
            f"missing --auth-password {MISSING}",
        ),
        (["shop", "tenants", "show"], f"missing ID {MISSING}"),
        (["shop", "tenants", "update"], f"missing ID {MISSING}"),
        (["shop", "tenants", "delete", "acme"], f"missing --force {MISSING}"),
        (["shop", "acme", "accounts", "add"], f"missing ID {MISSING}"),
        (["shop", "acme", "accounts", "add", "smtp1"], f"missing --host {MISSING}"),
        (["shop", "acme", "accounts", "show"], f"missing ID {MISSING}"),
        (["shop", "acme", "accounts", "delete", "smtp1"], f"missing --force {MISSING}"),
        (["shop", "acme", "messages", "show"], f"missing ID {MISSING}"),
        (["shop", "acme", "messages", "delete"], f"missing ID {MISSING}"),
        (["shop", "acme", "messages", "delete", "m1"], f"missing --force {MISSING}"),
        (["shop", "acme", "send"], f"missing FILE {MISSING}"),
        (["shop", "command-log", "purge"], f"missing --before {MISSING}"),
        (["shop", "command-log", "list", "--since"], None),
        (["shop", "tenants", "list", "--bogus"], None),
        (["shop", "acme", "accounts", "lst"], None),
        (["shop", "acme", "accounts", "add", "x", "--host", "h", "--port", "abc"], None),
        (["shop", "acme", "accounts", "add", "x", "--host", "h", "--tls-mode", "tls"], None),
        (["shop", "acme", "accounts", "add", "x", "--host", "h", "--port", "99999"],
         "port: must be an integer between 1 and 65535"),
        (["shop", "acme", "messages", "list", "--status", "lost"], None),
        (["lst"], "unknown command or instance 'lst' (did you mean 'list'?)"),
        (["stauts", "demo"], "unknown command or instance 'stauts' (did you mean 'status'?)"),
        (["zzzzzz"], "unknown command or instance 'zzzzzz'"),
]  # fmt: skip


def test_usage_errors_exit_2_with_one_line(daemon: Daemon) -> None:
    _instance(daemon, "shop")
    _ok(daemon.cli("shop", "tenants", "add", "acme"))
    for args, expected in USAGE_CASES:
        result = daemon.cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        if expected is not None:
            assert lines[0] == f"error: {expected}", args
        assert result.stdout == "", args


def test_missing_things_exit_1_and_stopped_daemon_exits_3(daemon: Daemon) -> None:
    _instance(daemon, "shop")
    # Data commands work on a node that never ran.
    _ok(daemon.cli("shop", "tenants", "add", "acme"))
    assert _json(daemon, "shop", "tenants", "list")["tenants"][0]["id"] == "acme"
    for args, line in [
        (["nosuch", "info"], "error: instance 'nosuch' does not exist"),
        (["nosuch", "acme", "accounts", "list"], "error: instance 'nosuch' does not exist"),
        (["shop", "tenants", "show", "zz"], "error: Tenant 'zz' not found"),
        (["shop", "zz", "accounts", "list"], "error: Tenant 'zz' not found"),
        (["shop", "acme", "accounts", "show", "a9"], "error: Account 'a9' not found for tenant 'acme'"),
        (["shop", "acme", "messages", "show", "m9"], "error: Message 'm9' not found for tenant 'acme'"),
    ]:  # fmt: skip
        result = daemon.cli(*args)
        assert (result.returncode, result.stderr.strip()) == (1, line), args
    for args in (
        ["shop", "run-now"],
        ["shop", "acme", "run-now"],
        ["shop", "watch"],
        ["shop", "connect"],
    ):
        result = daemon.cli(*args)
        assert result.returncode == 3, (args, result.stderr)
        assert result.stderr.strip() == "error: the instance is not running"


def test_data_commands_of_a_stopped_instance(daemon: Daemon, tmp_path: Path) -> None:
    _instance(daemon, "shop")
    key = _ok(
        daemon.cli("shop", "tenants", "add", "acme", "--name", "ACME", "--rate-limit-hourly", "50")
    )
    assert "API key (shown once)" in key
    _ok(daemon.cli("shop", "tenants", "update", "acme", "--rate-limit-daily", "900", "--inactive"))
    shown = _json(daemon, "shop", "tenants", "show", "acme")
    assert shown["rate_limits"] == {"hourly": 50, "daily": 900} and shown["active"] is False
    _ok(daemon.cli("shop", "acme", "accounts", "add", "a1", "--host", "smtp.example", "--default"))
    acc = _json(daemon, "shop", "acme", "accounts", "show", "a1")
    assert (acc["port"], acc["tls_mode"], acc["is_default"], acc["password_set"]) == (
        587, "starttls", True, False,
    )  # fmt: skip
    _ok(daemon.cli("shop", "acme", "accounts", "update", "a1", "--limit-minute", "30"))
    assert _json(daemon, "shop", "acme", "accounts", "show", "a1")["limit_per_minute"] == 30

    suspended = _json(daemon, "shop", "acme", "suspend", "--batch", "spring")
    assert suspended["suspended_batches"] == ["spring"]
    assert _ok(daemon.cli("shop", "suspend")).startswith("scheduler: suspended")
    assert _json(daemon, "shop", "info")["scheduler_active"] is False
    assert _ok(daemon.cli("shop", "activate")).strip() == "scheduler: active"

    assert "has an API key" in _ok(daemon.cli("shop", "acme", "api-key"))
    fresh = _ok(daemon.cli("shop", "acme", "api-key", "--regenerate")).strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", fresh)
    _ok(daemon.cli("shop", "acme", "api-key", "--revoke"))
    assert "has no API key" in _ok(daemon.cli("shop", "acme", "api-key"))

    info = _json(daemon, "shop", "acme", "info")
    assert info["id"] == "acme" and info["accounts"] == 1
    assert info["messages"] == {"pending": 0, "deferred": 0, "sending": 0, "sent": 0, "error": 0}

    config = _json(daemon, "shop", "config", "show")["settings"]
    port = next(r for r in config if r["setting"] == "GMP_PORT")
    assert port["source"] == "file"
    token_row = next(r for r in config if r["setting"] == "GMP_API_TOKEN")
    assert token_row["value"] == "********"

    out = tmp_path / "log.json"
    _ok(daemon.cli("shop", "command-log", "export", "-o", str(out)))
    exported = json.loads(out.read_text())["commands"]
    assert [c["endpoint"] for c in exported][:2] == ["addTenant", "updateTenant"]
    assert "900" not in json.dumps(exported[0])
    purged = _ok(
        daemon.cli(
            "shop", "command-log", "purge", "--before", str(int(time.time()) + 10), "--force"
        )
    )
    assert purged.strip() == f"removed: {len(exported)}"

    deleted = _ok(daemon.cli("shop", "tenants", "delete", "acme", "--force"))
    assert deleted.strip() == "Tenant 'acme' deleted"
    assert _json(daemon, "shop", "tenants", "list") == {"ok": True, "tenants": []}
    logs = _ok(daemon.cli("shop", "logs"))
    assert "journalctl -u mail-proxy@shop" in logs
