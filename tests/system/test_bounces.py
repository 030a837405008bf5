"""Bounce detection end to end (reference §12, §5.6, §13.1): messages go out through the daemon, their
bounces come back into a real IMAP mailbox, and the tenant receives one ``bounce`` event per real
bounce."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests import bounce_samples as samples
from tests.daemon import Daemon, Node, wait_for
from tests.dbfixtures import create_pg_database, drop_pg_database
from tests.imapservers import ImapServer
from tests.system.smtpsink import SmtpSink
from tests.system.test_delivery_path import _tenant_with_account
from tests.tenantservers import TenantServer

FOLDER = "Bounces"


def _add(node: Node, *keys: str) -> None:
    messages = [
        {
            "id": key,
            "account_id": "smtp1",
            "from": "orders@acme.example",
            "to": ["ann@example.org"],
            "subject": "Your order",
            "body": "Thanks!",
        }
        for key in keys
    ]
    answer = node.http(
        "POST", "/commands/add-messages", json={"tenant_id": "acme", "messages": messages}
    )
    assert answer.status_code == 200 and answer.json()["queued"] == len(keys), answer.text


def _originals(sink: SmtpSink, count: int) -> dict[str, bytes]:
    """The bytes the SMTP server received, by client id (X-Genro-Mail-ID)."""
    received = wait_for(
        lambda: (r := sink.received()) and len(r) >= count and r, 30, what=f"{count} messages"
    )
    found: dict[str, bytes] = {}
    for message in received:
        for line in message.data.splitlines():
            if line.lower().startswith(b"x-genro-mail-id:"):
                found[line.split(b":", 1)[1].strip().decode()] = message.data
    return found


def _enable(node: Node, imap: ImapServer, **changes: Any) -> None:
    body = {
        "bounce_enabled": True,
        "bounce_imap_host": imap.host,
        "bounce_imap_port": imap.ssl_port,
        "bounce_imap_user": imap.user,
        "bounce_imap_password": imap.password,
        "bounce_imap_folder": FOLDER,
        "bounce_poll_interval": 10,
        "bounce_return_path": "bounces@acme.example",
        **changes,
    }
    answer = node.http("PUT", "/instance", json=body)
    assert answer.status_code == 200 and answer.json() == {"ok": True}, answer.text


def _reload(node: Node) -> None:
    answer = node.http("POST", "/instance/reload-bounce")
    assert answer.status_code == 200 and answer.json() == {"ok": True}, answer.text


def _bounce_items(sync: TenantServer) -> list[dict[str, Any]]:
    return [i for call in sync.calls for i in (call.items or []) if i.get("event") == "bounce"]


def _polls_after(imap: ImapServer, count: int, node: Node) -> None:
    """Ask for a poll now and wait until the poll session is over."""
    _reload(node)
    wait_for(lambda: len(imap.closed_sessions()) > count, 30, what="a poll of the mailbox")


def test_bounces_reach_the_tenant_once_each(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    imap_server: Callable[..., ImapServer],
    smtp_ca_file: str,
) -> None:
    imap = imap_server()
    imap.create(FOLDER)
    sync = tenant_server()
    env = {"SSL_CERT_FILE": smtp_ca_file, "GMP_SENDER_PROCESSES": "1"}
    node = daemon.serve(env=env)
    _tenant_with_account(node, smtp_sink, sync.base_url)
    _enable(node, imap)
    _add(node, "b1", "b2", "b3", "b4", "b5", "b6")
    sent = _originals(smtp_sink, 6)
    # The envelope sender is the bounce mailbox's return path (reference §7).
    assert {m.mail_from for m in smtp_sink.received()} == {"bounces@acme.example"}
    stranger = samples.original_message("<nobody-knows@elsewhere.example>", None)
    uids = {
        "postfix": imap.append(samples.postfix_dsn(sent["b1"]), FOLDER),
        "exchange": imap.append(samples.exchange_dsn(sent["b2"]), FOLDER),
        "text": imap.append(samples.text_bounce(sent["b3"]), FOLDER),
        "delayed": imap.append(samples.postfix_delayed(sent["b4"]), FOLDER),
        "reply": imap.append(samples.not_a_bounce(), FOLDER),
        "unknown": imap.append(samples.postfix_dsn(stranger, bounce_id="9A9A9A9A9A"), FOLDER),
        "twice": imap.append(samples.postfix_dsn(sent["b1"], bounce_id="5C5C5C5C5C"), FOLDER),
    }
    _reload(node)
    wait_for(lambda: len(_bounce_items(sync)) >= 4, 30, what="four bounce events at the tenant")
    items = {i["id"]: i for i in _bounce_items(sync)}
    assert len(_bounce_items(sync)) == 4 and set(items) == {"b1", "b2", "b3", "b4"}
    b1 = items["b1"]
    assert (b1["bounce_type"], b1["bounce_code"]) == ("hard", "5.1.1")
    assert b1["bounce_reason"] == "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected"
    assert b1["sent_ts"] is None and b1["error_ts"] is None and b1["account_id"] == "smtp1"
    assert isinstance(b1["bounce_ts"], int)
    assert (items["b2"]["bounce_type"], items["b2"]["bounce_code"]) == ("hard", "5.1.10")
    assert items["b2"]["bounce_reason"].startswith("smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound")
    assert (items["b3"]["bounce_type"], items["b3"]["bounce_code"]) == ("hard", "552")
    assert (items["b4"]["bounce_type"], items["b4"]["bounce_code"]) == ("soft", "4.4.1")
    record = node.http("GET", "/message/b1", params={"tenant_id": "acme"}).json()
    assert record["status"] == "sent"
    assert (record["bounce_type"], record["bounce_code"]) == ("hard", "5.1.1")
    assert record["bounce_reason"] == b1["bounce_reason"] and record["bounce_ts"] == b1["bounce_ts"]
    assert [h["event_type"] for h in record["history"]] == ["sent", "bounce"]
    log = node.log()
    assert f"bounce skipped uid={uids['reply']}: not a bounce" in log
    assert f"bounce skipped uid={uids['unknown']}: no retained message matches" in log
    assert f"bounce skipped uid={uids['twice']}: already recorded for tenant=acme id=b1" in log
    flags = imap.flags(FOLDER)
    assert len(flags) == 7 and all("\\Seen" in f for f in flags.values())  # never deleted
    instance = node.http("GET", "/instance").json()
    assert "bounce_last_error" not in instance and isinstance(instance["bounce_last_sync"], int)

    # After a restart nothing is processed twice.
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
    node = daemon.serve(env=env, database=node.env["GMP_DB_PATH"])
    _polls_after(imap, len(imap.closed_sessions()), node)
    seen = len(imap.closed_sessions())
    assert "bounce recorded" not in node.log()
    # The mailbox is recreated (new UIDVALIDITY): its new messages are processed.
    imap.recreate(FOLDER)
    imap.append(samples.exchange_dsn(sent["b5"]), FOLDER)
    _polls_after(imap, seen, node)
    wait_for(
        lambda: any(i["id"] == "b5" for i in _bounce_items(sync)), 20, what="b5's bounce event"
    )
    assert len(_bounce_items(sync)) == 5
    assert "UIDVALIDITY changed" in node.log()


def test_mailbox_trouble_is_shown_and_never_stops_the_reports(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    imap_server: Callable[..., ImapServer],
    smtp_ca_file: str,
) -> None:
    imap = imap_server()
    imap.create(FOLDER)
    sync = tenant_server()
    node = daemon.serve(
        env={
            "SSL_CERT_FILE": smtp_ca_file,
            "GMP_TEST_MODE": "true",
            "GMP_LOG_LEVEL": "DEBUG",
            "GMP_SENDER_PROCESSES": "1",
        }
    )
    _tenant_with_account(node, smtp_sink, sync.base_url)

    def cycle() -> dict[str, Any]:
        """One run-now cycle (send, report, poll once); then the instance as shown."""
        done = node.log().count("reporter finished its test-mode cycle step")
        assert node.control("run_now") == {"triggered": True}
        wait_for(
            lambda: node.log().count("reporter finished its test-mode cycle step") > done,
            30,
            what="the test-mode cycle",
        )
        return dict(node.http("GET", "/instance").json())

    def sent_reported(key: str) -> bool:
        return any(
            i["id"] == key and i["event"] == "sent"
            for call in sync.calls
            for i in (call.items or [])
        )

    _enable(node, imap, bounce_imap_password="wrong-password")
    _add(node, "t1")
    shown = cycle()
    assert shown["bounce_last_error"].startswith("IMAP login refused for 'bounces@acme.example'")
    assert isinstance(shown["bounce_last_error_ts"], int)
    assert sent_reported("t1")  # the reports went on

    _enable(node, imap)  # the right password, but the server goes down
    imap.stop()
    _add(node, "t2")
    shown = cycle()
    assert shown["bounce_last_error"].startswith("IMAP server unreachable at 127.0.0.1:")
    assert sent_reported("t2")

    imap.start()
    sent = _originals(smtp_sink, 2)
    imap.append(samples.malformed_bounce(), FOLDER)
    imap.append(samples.postfix_dsn(sent["t1"]), FOLDER)
    _add(node, "t3")
    shown = cycle()
    assert "could not be parsed: multipart boundary not found" in shown["bounce_last_error"]
    assert sent_reported("t3")
    cycle()  # reports the bounce recorded by the previous cycle's poll; the poll is clean
    wait_for(lambda: any(i["id"] == "t1" for i in _bounce_items(sync)), 10, what="t1's bounce")
    shown = node.http("GET", "/instance").json()
    assert "bounce_last_error" not in shown and "bounce_last_error_ts" not in shown
    log = node.log()
    assert "bounce poll failed: IMAP login refused" in log
    assert "bounce poll failed: IMAP server unreachable" in log
    assert "could not be parsed" in log and "bounce mailbox polled successfully again" in log
    assert "wrong-password" not in log


@pytest.mark.postgres
def test_two_nodes_poll_one_at_a_time(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    imap_server: Callable[..., ImapServer],
    smtp_ca_file: str,
) -> None:
    url = create_pg_database("mp_bounce")
    try:
        imap = imap_server()
        imap.create(FOLDER)
        sync = tenant_server()
        common = {
            "GMP_DATABASE_URL": url,
            "GMP_SENDER_PROCESSES": "1",
            "SSL_CERT_FILE": smtp_ca_file,
            "GMP_LOG_LEVEL": "DEBUG",
        }
        first = daemon.serve(env={**common, "GMP_NODE_ID": "node-a"})
        second = daemon.serve(env={**common, "GMP_NODE_ID": "node-b"})
        _tenant_with_account(first, smtp_sink, sync.base_url)
        _enable(first, imap)
        keys = [f"n{i}" for i in range(20)]
        _add(first, *keys)
        sent = _originals(smtp_sink, len(keys))
        # Bounces arrive while both nodes are asked to poll, over and over, at the same time.
        for index, key in enumerate(keys):
            imap.append(samples.postfix_dsn(sent[key], bounce_id=f"{index:010X}"), FOLDER)
            _reload(first if index % 2 else second)
            _reload(second if index % 2 else first)
        wait_for(
            lambda: len(_bounce_items(sync)) >= len(keys), 60, what="a bounce event per message"
        )
        for node in (first, second):
            _polls_after(imap, len(imap.closed_sessions()), node)
        assert sorted(i["id"] for i in _bounce_items(sync)) == sorted(keys)
        assert len(imap.closed_sessions()) >= 3
        assert imap.max_concurrent() == 1  # the server never saw two sessions at once
        polled_by = {
            node.env["GMP_NODE_ID"] for node in (first, second) if "bounce poll done" in node.log()
        }
        assert polled_by == {"node-a", "node-b"}
    finally:
        daemon.close()
        drop_pg_database(url)
