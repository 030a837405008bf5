"""What a node writes to its log (reference §18.6): journald priorities, the ready line, the
delivery-activity lines, change lines of tenants and accounts, and never a secret."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from mailproxyd import __version__
from tests.daemon import ADMIN_TOKEN, Daemon, free_port, wait_for
from tests.dbfixtures import create_pg_database, drop_pg_database
from tests.smtpservers import PASSWORD, USER, SmtpServer
from tests.tenantservers import TenantServer

SIGNING_SECRET = "sig-0123456789abcdef-secret"
SYNC_TOKEN = "sync-bearer-token-4f9e2c"
_PRIORITY = {"DEBUG": "7", "INFO": "6", "WARNING": "4", "ERROR": "3", "CRITICAL": "2"}
_JOURNAL_LINE = re.compile(r"^<([2-7])>(DEBUG|INFO|WARNING|ERROR|CRITICAL) [a-z0-9-]+\[\d+\] ")
_PLAIN_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [a-z0-9-]+\[\d+\] "
)


@pytest.fixture
def pg_url(daemon: Daemon) -> Iterator[str]:
    url = create_pg_database("mp_logs")
    try:
        yield url
    finally:
        daemon.close()
        drop_pg_database(url)


def test_a_foreground_node_under_journald_prefixes_priorities(daemon: Daemon) -> None:
    port = free_port()
    log_path = daemon.root / "journal.log"
    log = log_path.open("wb")
    st = os.fstat(log.fileno())
    env = daemon.environment(
        {
            "GMP_API_TOKEN": ADMIN_TOKEN,
            "GMP_PORT": str(port),
            "GMP_HOST": "127.0.0.1",
            "GMP_DB_PATH": str(daemon.root / "journal.db"),
            # A node starting with the scheduler inactive says so at WARNING (reference §3.2).
            "GMP_SCHEDULER_ACTIVE": "false",
            "GMP_SENDER_PROCESSES": "1",
            "GMP_LOG_LEVEL": "DEBUG",
            "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mailproxyd.cli", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_for(lambda: " ready: " in log_path.read_text(), 30, interval=0.1, what="ready")
        answer = httpx.get(f"http://127.0.0.1:{port}/status", headers={"X-API-Token": "wrong"})
        assert answer.status_code == 401
        wait_for(
            lambda: "authentication failed" in log_path.read_text(), 5, what="the failure line"
        )
        # A run-now wakes the sender: a DEBUG line of another process.
        answer = httpx.post(
            f"http://127.0.0.1:{port}/commands/run-now", headers={"X-API-Token": ADMIN_TOKEN}
        )
        assert answer.status_code == 200, answer.text
        wait_for(lambda: " sender-" in log_path.read_text(), 5, what="a line of the sender")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    lines = [line for line in log_path.read_text().splitlines() if line]
    assert lines
    for line in lines:
        match = _JOURNAL_LINE.match(line)
        assert match, line
        assert match.group(1) == _PRIORITY[match.group(2)], line
    seen = {match.group(2) for line in lines if (match := _JOURNAL_LINE.match(line))}
    assert {"DEBUG", "INFO", "WARNING"} <= seen
    # Every process of the node, not only the supervisor.
    assert any("]" in line and " api[" in line for line in lines)
    assert any(" sender-" in line for line in lines)


def test_without_journald_lines_carry_a_timestamp(daemon: Daemon) -> None:
    # JOURNAL_STREAM naming another stream (an inherited variable) changes nothing.
    node = daemon.serve(env={"JOURNAL_STREAM": "1:1", "GMP_SENDER_PROCESSES": "1"})
    node.signal(15)
    assert node.wait_exit() == 0
    lines = [line for line in node.log().splitlines() if line]
    assert lines and all(_PLAIN_LINE.match(line) for line in lines), lines


def test_full_delivery_logs_activity_and_never_a_secret(
    daemon: Daemon,
    pg_url: str,
    smtp_server: Callable[..., SmtpServer],
    smtp_ca_file: str,
    tenant_server: Callable[..., TenantServer],
) -> None:
    smtp = smtp_server("starttls", auth=True)
    sync = tenant_server()
    db_password = "db-password-93c1a7"
    scheme, rest = pg_url.split("://", 1)
    user, host = rest.split("@", 1)
    # Trust authentication ignores the password; the log must not show it anyway.
    url = f"{scheme}://{user.split(':')[0]}:{db_password}@{host}"
    node = daemon.serve(
        env={
            "GMP_DATABASE_URL": url,
            "GMP_LOG_DELIVERY_ACTIVITY": "true",
            "GMP_LOG_LEVEL": "DEBUG",
            "GMP_SENDER_PROCESSES": "1",
            "SSL_CERT_FILE": smtp_ca_file,
        }
    )
    tenant = node.http(
        "POST",
        "/tenant",
        json={
            "id": "acme",
            "name": "ACME Corp",
            "client_base_url": sync.base_url,
            "client_auth": {
                "method": "bearer",
                "token": SYNC_TOKEN,
                "signing_secret": SIGNING_SECRET,
            },
        },
    )
    assert tenant.status_code == 200, tenant.text
    tenant_key = tenant.json()["api_key"]
    account = node.http(
        "POST",
        "/account",
        json={
            "tenant_id": "acme",
            "id": "smtp1",
            "host": smtp.host,
            "port": smtp.port,
            "tls_mode": "starttls",
            "user": USER,
            "password": PASSWORD,
        },
    )
    assert account.status_code == 200, account.text
    assert (
        node.http("PUT", "/account/smtp1?tenant_id=acme", json={"password": PASSWORD}).status_code
        == 200
    )
    body = {
        "messages": [
            {
                "id": "MSG-001",
                "from": "orders@acme.example",
                "to": ["ann@example.org", "bob@example.org"],
                "subject": "Your order",
                "body": "Thanks!",
            }
        ]
    }
    # With the tenant's own key, and once with a wrong one.
    sent = node.http(
        "POST", "/commands/add-messages", json=body, headers={"X-API-Token": tenant_key}
    )
    assert sent.status_code == 200, sent.text
    bad = node.http("GET", "/status", headers={"X-API-Token": tenant_key + "x"})
    assert bad.status_code == 401
    wait_for(lambda: smtp.log.messages, 20, interval=0.1, what="the message at the server")
    wait_for(sync.reported_items, 20, interval=0.1, what="the sync call")
    wait_for(lambda: "sync tenant=acme" in node.log(), 10, interval=0.1, what="the sync line")
    node.signal(15)
    assert node.wait_exit() == 0

    text = node.log()
    for secret in (PASSWORD, tenant_key, SIGNING_SECRET, SYNC_TOKEN, ADMIN_TOKEN, db_password):
        assert secret not in text, secret
    assert re.search(
        r"INFO sender-\d\[\d+\] delivery sent tenant=acme id=MSG-001 account=smtp1 rcpts=2 "
        r"attempt=1 duration_ms=\d+$",
        text,
        re.MULTILINE,
    ), text
    assert re.search(
        r"INFO reporter\[\d+\] sync tenant=acme url=http://127\.0\.0\.1:\d+/\S* items=\d+ "
        r"status=200 ok=true queued=0 duration_ms=\d+$",
        text,
        re.MULTILINE,
    ), text
    # The ready line: version, database with the password masked, listening address.
    ready = next(line for line in text.splitlines() if " ready: " in line)
    assert f"mail-proxy {__version__} ready" in ready
    assert ":********@" in ready and host in ready
    assert f"127.0.0.1:{node.port}" in ready
    assert "CTRL + C" not in text and "Running on" not in text
    # Tenant and account changes: who and what, at INFO.
    assert re.search(
        r"INFO api\[\d+\] tenant change by api admin from 127\.0\.0\.1: addTenant tenant=acme "
        r"fields=client_auth,client_base_url,id,name$",
        text,
        re.MULTILINE,
    ), text
    assert re.search(
        r"INFO api\[\d+\] account change by api admin from 127\.0\.0\.1: updateAccount "
        r"tenant=acme account=smtp1 fields=password$",
        text,
        re.MULTILINE,
    ), text
    assert "authentication failed (unknown token)" in text


def test_log_level_changes_on_reload(daemon: Daemon) -> None:
    home_config = daemon.root / "node.toml"
    home_config.write_text('[logging]\nlevel = "WARNING"\n')
    node = daemon.serve(env={"GMP_CONFIG": str(home_config), "GMP_SENDER_PROCESSES": "1"})
    assert node.http("GET", "/status", headers={"X-API-Token": "nope"}).status_code == 401
    time.sleep(0.5)
    assert "authentication failed" not in node.log()  # an INFO line, below WARNING
    home_config.write_text('[logging]\nlevel = "INFO"\n')
    assert node.control("reload")["reloaded"] is True
    assert node.http("GET", "/status", headers={"X-API-Token": "nope"}).status_code == 401
    wait_for(lambda: "authentication failed" in node.log(), 10, interval=0.1, what="INFO again")
