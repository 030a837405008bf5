"""The sync HTTP driver against real tenant servers: answers, timeouts, refusals, reuse."""

from __future__ import annotations

import time

import pytest
import trio

from mailproxyd.core import report as core_report
from mailproxyd.drivers.http import ReportClient, refused_address
from tests.tenantservers import non_json, not_ok, ok, slow, status, verify_signature

BODY = core_report.encode_body([])


async def test_acknowledged_answer_with_hints(tenant_server) -> None:
    srv = tenant_server(ok(queued=3, next_sync_after=1767232800, not_found=["m4"]))
    headers = core_report.request_headers(
        {"method": "bearer", "token": "tok", "signing_secret": "s" * 16}, BODY, now=time.time()
    )
    async with ReportClient() as client:
        answer = await client.post_report(srv.sync_url, BODY, headers, timeout=5)
    assert answer.status == 200 and answer.outcome == "ok"
    assert answer.reply.queued == 3 and answer.reply.next_sync_after == 1767232800
    assert answer.reply.warnings == ("not_found: m4",)
    (call,) = srv.calls
    assert call.path == "/mail-proxy/sync" and call.body == BODY and call.items == []
    assert call.header("Authorization") == "Bearer tok"
    assert call.header("Content-Type") == "application/json"
    assert (
        abs(verify_signature("s" * 16, call.header("X-Mail-Proxy-Signature"), BODY) - time.time())
        < 5
    )


@pytest.mark.parametrize(
    ("reply", "outcome", "code"),
    [
        (not_ok(), "rejected", 200),
        (non_json(), "rejected", 200),
        (status(500), "http_error", 500),
        (status(301), "http_error", 301),
    ],
)
async def test_non_acknowledging_answers(tenant_server, reply, outcome, code) -> None:
    srv = tenant_server(reply)
    async with ReportClient() as client:
        answer = await client.post_report(srv.sync_url, BODY, {}, timeout=5)
    assert (answer.status, answer.outcome) == (code, outcome)
    assert not answer.reply.acknowledged and answer.reply.error


async def test_connection_refused_is_a_network_error(closed_port_url) -> None:
    async with ReportClient() as client:
        answer = await client.post_report(closed_port_url + "/mail-proxy/sync", BODY, {}, timeout=5)
    assert answer.status is None and answer.outcome == "network_error"
    assert answer.reply.error and "connection failed" in answer.reply.error


async def test_whole_exchange_timeout(tenant_server) -> None:
    srv = tenant_server(slow(10))
    async with ReportClient() as client:
        started = trio.current_time()
        answer = await client.post_report(srv.sync_url, BODY, {}, timeout=0.5)
        elapsed = trio.current_time() - started
    assert answer.outcome == "network_error" and answer.reply.error == "timeout after 0.5 s"
    assert 0.45 <= elapsed < 2 and 0.45 <= answer.duration < 2


async def test_connections_are_reused_per_tenant(tenant_server) -> None:
    a, b = tenant_server(), tenant_server()
    async with ReportClient() as client:
        for _ in range(3):
            for srv in (a, b):
                assert (await client.post_report(srv.sync_url, BODY, {}, timeout=5)).outcome == "ok"
    for srv in (a, b):
        assert len({call.peer for call in srv.calls}) == 1, "one keep-alive connection per tenant"


async def test_link_local_targets_are_refused(tenant_server) -> None:
    srv = tenant_server()
    async with ReportClient() as client:
        answer = await client.post_report("http://169.254.169.254/latest", BODY, {}, timeout=5)
        assert answer.outcome == "network_error" and "refused address" in (answer.reply.error or "")
        answer = await client.post_report("http://[fe80::1]:80/x", BODY, {}, timeout=5)
        assert answer.outcome == "network_error"
        # Loopback (and private) tenants are allowed for sync calls.
        assert (await client.post_report(srv.sync_url, BODY, {}, timeout=5)).outcome == "ok"
    assert len(srv.calls) == 1


def test_refused_address_ranges() -> None:
    for address in (
        "169.254.169.254",
        "fe80::1%eth0",
        "::ffff:169.254.1.1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "fd00:ec2::254",
    ):
        assert refused_address(address), address
    for address in (
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.0.1",
        "fd12::1",
        "100.64.0.1",
        "93.184.216.34",
    ):
        assert not refused_address(address), address


async def test_unresolvable_host_and_bad_scheme_are_network_errors() -> None:
    async with ReportClient() as client:
        answer = await client.post_report("http://no-such-host.invalid/s", BODY, {}, timeout=3)
        assert answer.outcome == "network_error" and answer.status is None
        answer = await client.post_report("ftp://127.0.0.1/s", BODY, {}, timeout=3)
        assert answer.outcome == "network_error"


async def test_the_address_check_keeps_no_memory_per_host(closed_port_url: str) -> None:
    """Nothing grows with the number of tenants (defect 15.9): addresses are checked per
    connection by the connector, and the client holds one httpx transport per trust level."""
    async with ReportClient() as client:
        for n in range(20):
            await client.post_report(f"{closed_port_url}/s{n}", BODY, {}, timeout=3)
            await client.post_report(f"{closed_port_url}/s{n}", BODY, {}, timeout=3, trusted=False)
        assert len(client._transports) == 2
