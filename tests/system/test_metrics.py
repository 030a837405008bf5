"""``/metrics`` of a real node (reference §14): counts of two sender processes and the reporter
added up, database gauges, route-template labels, and counts that survive a killed sender."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import ADMIN_TOKEN, Daemon, Node, wait_for
from tests.smtpservers import Script, SmtpServer
from tests.tenantservers import TenantServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

TEMPORARY = "later@example.org"
PERMANENT = "nobody@example.org"


def scrape(node: Node, **headers: str) -> httpx.Response:
    return httpx.get(node.url + "/metrics", headers=headers, timeout=10)


def samples(node: Node) -> Samples:
    answer = scrape(node)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    out: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def account(tenant_id: str, tenant_name: str, account_id: str) -> dict[str, str]:
    return {
        "tenant_id": tenant_id,
        "tenant_name": tenant_name,
        "account_id": account_id,
        "account_name": account_id,
    }


def add(node: Node, tenant_id: str, account_id: str, message_id: str, to: str) -> None:
    body = {
        "tenant_id": tenant_id,
        "messages": [
            {
                "id": message_id,
                "account_id": account_id,
                "from": "shop@example.com",
                "to": [to],
                "subject": "Your order",
                "body": "Thanks!",
            }
        ],
    }
    answer = node.http("POST", "/commands/add-messages", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["queued"] == 1, answer.text


def setup(node: Node, smtp: SmtpServer, sync: TenantServer) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/tenant", {"id": "acme", "name": "ACME Corp", "client_base_url": sync.base_url}),
        ("/tenant", {"id": "beta", "client_base_url": sync.base_url}),
        ("/account", {"tenant_id": "acme", "id": "smtp1", **smtp.account()}),
        ("/account", {"tenant_id": "acme", "id": "idle", **smtp.account()}),
        (
            "/account",
            {
                "tenant_id": "beta",
                "id": "limited",
                "limit_per_hour": 2,
                "limit_behavior": "defer",
                **smtp.account(),
            },
        ),
    ]
    for path, body in calls:
        body.pop("ttl", None)
        body.pop("tls_verify", None)
        answer = node.http("POST", path, json=body)
        assert answer.status_code == 200, answer.text


COUNTERS = ("gmp_sent_total", "gmp_errors_total", "gmp_deferred_total", "gmp_rate_limited_total")


def test_counters_gauges_and_restarts_of_a_two_sender_node(
    daemon: Daemon,
    smtp_server: Callable[..., SmtpServer],
    tenant_server: Callable[..., TenantServer],
) -> None:
    smtp = smtp_server(
        script=Script(rcpt={TEMPORARY: "451 4.3.0 Try again later", PERMANENT: "550 5.1.1 No"})
    )
    sync = tenant_server()
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "2", "GMP_RETRY_DELAYS": "3600"})

    # Before anything happens: every series of every account exists, at zero; no _created.
    setup(node, smtp, sync)

    def zero_series() -> Samples | None:
        s = samples(node)
        idle = account("acme", "ACME Corp", "idle")
        return s if value(s, "gmp_sent_total", **idle) is not None else None

    first = wait_for(zero_series, 10, interval=0.2, what="zero series of the new accounts")
    for name in COUNTERS:
        assert value(first, name, **account("acme", "ACME Corp", "smtp1")) == 0
        assert value(first, name, **account("beta", "beta", "limited")) == 0
    assert not [key for key in first if key[0].endswith("_created")]

    for n in range(1, 5):
        add(node, "acme", "smtp1", f"ok-{n}", "ann@example.org")
    add(node, "acme", "smtp1", "temp", TEMPORARY)
    add(node, "acme", "smtp1", "perm", PERMANENT)
    for n in range(1, 4):
        add(node, "beta", "limited", f"b-{n}", "bob@example.org")

    def settled() -> Samples | None:
        s = samples(node)
        done = (
            value(s, "gmp_sent_total", **account("acme", "ACME Corp", "smtp1")) == 4
            and value(s, "gmp_sent_total", **account("beta", "beta", "limited")) == 2
            and value(s, "gmp_deferred_total", **account("beta", "beta", "limited")) == 1
            and value(s, "gmp_deferred_total", **account("acme", "ACME Corp", "smtp1")) == 1
            and value(s, "gmp_errors_total", **account("acme", "ACME Corp", "smtp1")) == 1
            and value(s, "gmp_pending_messages") == 2
        )
        return s if done else None

    found = wait_for(settled, 30, interval=0.2, what="every outcome in /metrics")
    acme, beta, idle = (
        account("acme", "ACME Corp", "smtp1"),
        account("beta", "beta", "limited"),
        account("acme", "ACME Corp", "idle"),
    )
    expected = {
        "gmp_sent_total": (4, 2, 0),
        "gmp_errors_total": (1, 0, 0),
        "gmp_deferred_total": (1, 1, 0),
        "gmp_rate_limited_total": (0, 1, 0),
    }
    for name, counts in expected.items():
        assert (
            value(found, name, **acme),
            value(found, name, **beta),
            value(found, name, **idle),
        ) == counts, name
    # Every SMTP attempt is timed, whatever its outcome; the rate-limited one made none.
    count = "gmp_send_duration_seconds_count"
    assert value(found, count, tenant_id="acme", account_id="smtp1") == 6
    assert value(found, count, tenant_id="beta", account_id="limited") == 2
    assert value(found, count, tenant_id="acme", account_id="idle") == 0
    bucket = "gmp_send_duration_seconds_bucket"
    assert value(found, bucket, tenant_id="acme", account_id="smtp1", le="+Inf") == 6
    assert value(found, bucket, tenant_id="acme", account_id="smtp1", le="120.0") == 6
    # Both deferrals wait an hour: nothing is ready, so the queue has no age.
    assert value(found, "gmp_queue_age_seconds") == 0

    # The reporter's sync calls, by outcome, and their durations.
    def synced() -> Samples | None:
        s = samples(node)
        return s if (value(s, "gmp_sync_total", tenant_id="acme", outcome="ok") or 0) >= 1 else None

    found = wait_for(synced, 20, interval=0.2, what="a sync call in /metrics")
    for tenant in ("acme", "beta"):
        calls = sum(
            value(found, "gmp_sync_total", tenant_id=tenant, outcome=o) or 0
            for o in ("ok", "rejected", "http_error", "network_error")
        )
        assert calls >= 1
        assert value(found, "gmp_sync_duration_seconds_count", tenant_id=tenant) == calls
        assert value(found, "gmp_unreported_events", tenant_id=tenant) is not None

    # API requests by route template.
    assert node.http("GET", "/tenant/acme").status_code == 200
    assert node.http("GET", "/no/such/route").status_code == 404
    found = samples(node)
    http = "gmp_http_requests_total"
    assert value(found, http, route="/commands/add-messages", status="200") == 9
    assert (value(found, http, route="/tenant/{id}", status="200") or 0) >= 1
    assert (value(found, http, route="unmatched", status="404") or 0) >= 1
    assert not [k for k in found if k[0] == http and "acme" in dict(k[1])["route"]]

    # A ready message that cannot leave (its tenant is suspended) ages the queue.
    answer = node.http("POST", "/commands/suspend", json={"tenant_id": "beta"})
    assert answer.status_code == 200, answer.text
    add(node, "beta", "limited", "held", "bob@example.org")
    held_at = time.time()

    def aged() -> Samples | None:
        s = samples(node)
        age = value(s, "gmp_queue_age_seconds") or 0
        return s if value(s, "gmp_pending_messages") == 3 and age >= 1 else None

    found = wait_for(aged, 15, interval=0.2, what="the held message in the gauges")
    assert value(found, "gmp_queue_age_seconds") <= time.time() - held_at + 1  # type: ignore[operator]

    # A sender killed and restarted: no counter ever goes backwards, and counting goes on.
    before = samples(node)
    sender_pid = next(int(w["pid"]) for w in node.workers() if w.get("kind") == "sender")
    os.kill(sender_pid, signal.SIGKILL)

    def restarted() -> bool:
        senders = [w for w in node.workers() if w.get("kind") == "sender"]
        pids = [w.get("pid") for w in senders if w.get("state") == "running"]
        return len(pids) == 2 and sender_pid not in pids

    previous = before
    deadline = time.monotonic() + 30
    back = False
    while time.monotonic() < deadline and not back:
        current = samples(node)
        for key, old in previous.items():
            if key[0].endswith(("_total", "_count", "_bucket", "_sum")) and key in current:
                assert current[key] >= old, (key, old, current[key])
        previous = current
        back = restarted()
        time.sleep(0.2)
    assert back, node.workers()
    add(node, "acme", "smtp1", "ok-5", "ann@example.org")
    wait_for(
        lambda: value(samples(node), "gmp_sent_total", **acme) == 5,
        20,
        interval=0.2,
        what="the fifth message counted after the restart",
    )
    after = samples(node)
    for key, old in before.items():
        if key[0] in COUNTERS and key in after:
            assert after[key] >= old, key


def test_metrics_token(daemon: Daemon) -> None:
    node = daemon.serve(
        env={"GMP_METRICS_TOKEN": "metrics-secret-123", "GMP_SENDER_PROCESSES": "1"}
    )
    assert scrape(node).status_code == 401
    assert scrape(node, **{"X-API-Token": "wrong"}).status_code == 401
    assert scrape(node, **{"X-API-Token": "metrics-secret-123"}).status_code == 200
    assert scrape(node, Authorization="Bearer metrics-secret-123").status_code == 200
    assert scrape(node, **{"X-API-Token": ADMIN_TOKEN}).status_code == 200
    # The metrics token opens nothing else.
    other = httpx.get(node.url + "/status", headers={"X-API-Token": "metrics-secret-123"})
    assert other.status_code == 401
    # Refusals are logged with where they came from, never with the token (reference §4.2).
    wait_for(
        lambda: "authentication failed (metrics token): remote=127.0.0.1" in node.log(),
        5,
        interval=0.1,
        what="the refusal line",
    )
    assert "metrics-secret-123" not in node.log() and "wrong" not in node.log()
