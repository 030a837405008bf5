"""The CLI and the REPL at a terminal (reference §15.1, §16): prompts with defaults, hidden passwords."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailproxyd import instance
from tests.daemon import Daemon, wait_for
from tests.ptyrun import PtyProcess
from tests.system.smtpsink import SmtpSink


@pytest.fixture
def terminal(daemon: Daemon) -> Iterator[Any]:
    opened: list[PtyProcess] = []

    def run(*args: str) -> PtyProcess:
        proc = PtyProcess([sys.executable, "-m", "mailproxyd.cli", *args], daemon.environment())
        opened.append(proc)
        return proc

    yield run
    for proc in opened:
        proc.close()


def _answer(term: PtyProcess, prompt: str, value: str) -> None:
    term.expect(prompt)
    term.send(value)


def test_tenants_add_and_accounts_add_prompt_at_a_terminal(daemon: Daemon, terminal: Any) -> None:
    instance.create_instance("shop", environ={"MAIL_PROXY_HOME": str(daemon.home)}, now=time.time())
    term = terminal("shop", "tenants", "add")
    _answer(term, "Tenant ID: ", "acme")
    _answer(term, "Name [acme]: ", "")
    _answer(term, "Base URL: ", "https://app.acme.example")
    _answer(term, "Sync path [/mail-proxy/sync]: ", "")
    _answer(term, "Attachment path [/mail-proxy/attachments]: ", "/files")
    _answer(term, "Auth method (none/bearer/basic) [none]: ", "basic")
    _answer(term, "Auth user: ", "mailer")
    _answer(term, "Auth password: ", "hidden-tenant-pw")
    term.expect("Tenant 'acme' created")
    assert term.wait() == 0, term.transcript
    assert "hidden-tenant-pw" not in term.transcript  # not echoed
    shown = json.loads(daemon.cli("shop", "tenants", "show", "acme", "--json").stdout)
    assert shown["name"] == "acme" and shown["client_attachment_path"] == "/files"
    assert shown["client_sync_path"] == "/mail-proxy/sync"
    assert shown["client_auth"] == {"method": "basic", "user": "mailer", "password_set": True}

    term = terminal("shop", "acme", "accounts", "add")
    _answer(term, "Account ID: ", "smtp1")
    _answer(term, "Host: ", "smtp.acme.example")
    _answer(term, "Port [587]: ", "")
    _answer(term, "User: ", "mailer@acme.example")
    _answer(term, "Password: ", "hidden-smtp-pw")
    _answer(term, "TLS mode (none/opportunistic/starttls/implicit) [starttls]: ", "")
    _answer(term, "Limit per minute (0 = unlimited) [0]: ", "30")
    _answer(term, "Limit per hour (0 = unlimited) [0]: ", "")
    _answer(term, "Limit per day (0 = unlimited) [0]: ", "")
    _answer(term, "Behaviour over a limit (defer/reject) [defer]: ", "reject")
    term.expect("Account 'smtp1' created for tenant 'acme'")
    assert term.wait() == 0, term.transcript
    assert "hidden-smtp-pw" not in term.transcript
    account = json.loads(daemon.cli("shop", "acme", "accounts", "show", "smtp1", "--json").stdout)
    assert (account["port"], account["tls_mode"], account["password_set"]) == (
        587,
        "starttls",
        True,
    )
    assert (account["limit_per_minute"], account["limit_behavior"]) == (30, "reject")
    assert "limit_per_hour" not in account  # 0 = unlimited

    # At a terminal a delete asks first; "n" keeps the tenant.
    term = terminal("shop", "tenants", "delete", "acme")
    _answer(term, "[y/N] ", "n")
    assert term.wait() == 1
    assert daemon.cli("shop", "tenants", "show", "acme").returncode == 0


def test_connect_repl(daemon: Daemon, terminal: Any, smtp_sink: SmtpSink) -> None:
    assert daemon.cli("start", "shop").returncode == 0
    assert daemon.cli("shop", "tenants", "add", "acme").returncode == 0
    added = daemon.cli(
        "shop", "acme", "accounts", "add", "smtp1", "--host", "127.0.0.1",
        "--port", str(smtp_sink.port), "--tls-mode", "none",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    letter = daemon.root / "a.eml"
    letter.write_bytes(b"From: a@acme.example\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    assert daemon.cli("shop", "acme", "send", str(letter), "--id", "R-1").returncode == 0
    wait_for(lambda: smtp_sink.received(), 15, what="delivery")

    term = terminal("shop", "connect")
    term.expect("mail-proxy[shop]>>> ")
    term.send("proxy.status()['scheduler_active'], proxy.status()['ok']")
    term.expect("(True, True)")
    term.expect("mail-proxy[shop]>>> ")

    def sent_ids() -> bool:
        term.send("[m['id'] for m in proxy.use('acme').messages.sent()]")
        term.expect("mail-proxy[shop/acme]>>> ")
        return "['R-1']" in term.transcript

    wait_for(sent_ids, 15, interval=0.5, what="proxy.messages.sent()")
    term.send("proxy.use(None).accounts.list()")
    term.expect("ProxyError: no tenant selected: call proxy.use(tenant_id) or pass tenant_id")
    term.expect("mail-proxy[shop]>>> ")
    term.send("new_tenant()")
    _answer(term, "Tenant ID: ", "beta")
    _answer(term, "Name [beta]: ", "Beta Ltd")
    _answer(term, "Base URL: ", "")
    _answer(term, "Sync path [/mail-proxy/sync]: ", "")
    _answer(term, "Attachment path [/mail-proxy/attachments]: ", "")
    _answer(term, "Auth method (none/bearer/basic) [none]: ", "bearer")
    _answer(term, "Auth token: ", "tok-beta-secret")
    term.expect("Tenant 'beta' created successfully!")
    term.expect("API key (shown once): ")
    term.expect("mail-proxy[shop]>>> ")
    term.send("proxy.tenants.get('nosuch')")
    term.expect("ProxyError: 404 tenant_not_found: Tenant 'nosuch' not found")
    term.expect("mail-proxy[shop]>>> ")
    term.send("exit()")
    assert term.wait() == 0, term.transcript
    assert "tok-beta-secret" not in term.transcript
    beta = json.loads(daemon.cli("shop", "tenants", "show", "beta", "--json").stdout)
    assert beta["name"] == "Beta Ltd" and beta["client_auth"]["token_set"] is True
