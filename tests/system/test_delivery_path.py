"""Wake-ups and test mode seen end to end: HTTP in, SMTP out, report back (reference §8.6, §8.7)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.daemon import Daemon, Node, pid_running, wait_for
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import TenantServer


def _tenant_with_account(node: Node, sink: SmtpSink, sync_base: str) -> None:
    tenant = node.http(
        "POST",
        "/tenant",
        json={"id": "acme", "name": "Acme", "client_base_url": sync_base},
    )
    assert tenant.status_code == 200, tenant.text
    account = node.http(
        "POST",
        "/account",
        json={
            "id": "smtp1",
            "tenant_id": "acme",
            "host": "127.0.0.1",
            "port": sink.port,
            "tls_mode": "none",
            "is_default": True,
        },
    )
    assert account.status_code == 200, account.text


def _add(node: Node, message_id: str) -> float:
    body = {
        "tenant_id": "acme",
        "messages": [
            {
                "id": message_id,
                "account_id": "smtp1",
                "from": "orders@acme.example",
                "to": ["ann@example.org"],
                "subject": "Your order",
                "body": "Thanks!",
            }
        ],
    }
    answer = node.http("POST", "/commands/add-messages", json=body)
    accepted = time.time()
    assert answer.status_code == 200, answer.text
    assert answer.json()["queued"] == 1, answer.text
    return accepted


def test_a_new_message_is_sent_at_once_despite_a_long_poll_interval(
    daemon: Daemon, smtp_sink: SmtpSink, tenant_server: Callable[..., TenantServer]
) -> None:
    sync = tenant_server()
    node = daemon.serve(env={"GMP_SEND_LOOP_INTERVAL": "5", "GMP_SENDER_PROCESSES": "1"})
    _tenant_with_account(node, smtp_sink, sync.base_url)
    # Let every sender settle into its idle wait (5 s poll) before the message arrives.
    wait_for(lambda: node.control("workers")["workers"], 5)
    accepted = _add(node, "wake-1")
    received = wait_for(smtp_sink.received, 5, what="the message at the SMTP server")
    # Claimed, built and transmitted well within a second: the enqueue woke a sender.
    assert received[0].at - accepted < 1.0
    assert received[0].rcpt_tos == ["ann@example.org"]


def test_test_mode_sends_only_on_run_now_then_reports(
    daemon: Daemon, smtp_sink: SmtpSink, tenant_server: Callable[..., TenantServer]
) -> None:
    sync = tenant_server()
    node = daemon.serve(env={"GMP_TEST_MODE": "true", "GMP_LOG_LEVEL": "DEBUG"})
    _tenant_with_account(node, smtp_sink, sync.base_url)
    _add(node, "tm-1")
    # Nothing happens on its own: watch for a while (longer than a poll tick) with a deadline.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert smtp_sink.received() == [] and sync.calls == []
        time.sleep(0.05)
    assert node.control("run_now") == {"triggered": True}
    wait_for(smtp_sink.received, 10, what="the message after run-now")
    calls = sync.wait_for_calls(1, timeout=10)
    items = [item for call in calls for item in (call.items or [])]
    assert [(i["id"], i.get("event")) for i in items] == [("tm-1", "sent")]
    wait_for(
        lambda: "reporter finished its test-mode cycle step" in node.log(),
        10,
        what="the report cycle to finish",
    )
    log = node.log()
    # The report cycle began only after both senders had finished their step (reference §8.7).
    steps = [
        line.split("] ", 1)[1]
        for line in log.splitlines()
        if "test-mode cycle step" in line or "senders done" in line
    ]
    assert sorted(steps[:2]) == [
        "sender-0 finished its test-mode cycle step",
        "sender-1 finished its test-mode cycle step",
    ]
    assert steps[2:] == [
        "test-mode cycle: senders done, starting the report cycle",
        "reporter finished its test-mode cycle step",
    ]
    # One run-now = one cycle: nothing further is sent or reported without another.
    assert len(smtp_sink.received()) == 1


def test_a_second_sigterm_during_shutdown_kills_the_workers(
    daemon: Daemon, smtp_sink: SmtpSink, tenant_server: Callable[..., TenantServer]
) -> None:
    sync = tenant_server()
    smtp_sink.delay = 30.0  # the SMTP transaction hangs in DATA: shutdown waits for it
    node = daemon.serve(env={"GMP_SHUTDOWN_GRACE_SECONDS": "60", "GMP_SENDER_PROCESSES": "1"})
    _tenant_with_account(node, smtp_sink, sync.base_url)
    pids = node.worker_pids()
    _add(node, "slow-1")
    wait_for(lambda: smtp_sink.in_data, 10, what="the SMTP transaction to be under way")
    node.signal(signal.SIGTERM)
    node.notify.wait("STOPPING=1", 10)
    # The graceful shutdown now waits up to 60 s for the transaction; a second signal ends it.
    assert node.process.poll() is None
    node.signal(signal.SIGTERM)
    assert node.wait_exit(10) == 1
    wait_for(lambda: not [p for p in pids if pid_running(p)], 5, what="the workers to be gone")
