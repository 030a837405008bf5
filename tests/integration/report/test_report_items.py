"""Report items as a tenant receives them, from events recorded through the real queue."""

from __future__ import annotations

import base64
import json
import logging
import re

from mailproxyd.services.report import run_report_cycle
from tests.tenantservers import not_ok, ok, status, verify_signature

T0 = 1767225600.0
SECRET = "whsec_3f9a2c7d1e5b8a40"
REFUSED = {"nobody@example.org": {"code": 550, "message": "5.1.1 User unknown"}}


async def test_each_kind_produces_the_contract_items(
    report_env, tenant_server, sync_client
) -> None:
    srv = tenant_server()
    auth = {"method": "bearer", "token": "tok-XYZ-123", "signing_secret": SECRET}
    report_env.add_tenant("acme", srv.base_url, auth)
    report_env.record("acme", [{"id": "MSG-001", "priority": 1}], now=T0 + 5)
    report_env.record(
        "acme",
        [{"id": "MSG-003", "batch_code": "spring-2026", "kw": {"refused_recipients": REFUSED}}],
        now=T0 + 6,
    )
    report_env.record(
        "acme",
        [{"id": "MSG-004", "outcome": "deferred",
          "kw": {"deferred_ts": T0 + 61, "reason": "rate_limit", "count_retry": False}}],
        now=T0 + 1,
    )  # fmt: skip
    reason = "RCPT TO: all recipients refused: 451 4.3.0 Temporary failure, try again later"
    report_env.record(
        "acme",
        [{"id": "MSG-005", "account_id": "smtp2", "outcome": "deferred",
          "kw": {"deferred_ts": T0 + 68, "reason": reason, "smtp_code": 451}}],
        now=T0 + 8,
    )  # fmt: skip
    report_env.record(
        "acme",
        [{"id": "MSG-002", "outcome": "error",
          "kw": {"error": "DATA: 550 5.7.1 Message rejected", "smtp_code": 550}}],
        now=T0 + 7,
    )  # fmt: skip
    report_env.reject(
        "acme", [{"id": "m4", "reason": "account not found for tenant", "account_id": "nope",
                  "priority": 2}], now=T0,
    )  # fmt: skip

    stats = await run_report_cycle(report_env.ctx(sync_client), test_mode=True)
    assert stats.calls == 1 and stats.items_acknowledged == 6

    (call,) = srv.calls
    expected = [
        {"id": "MSG-001", "account_id": "smtp1", "priority": 1, "sent_ts": 1767225605,
         "error_ts": None, "error": None, "deferred_ts": None, "event": "sent"},
        {"id": "MSG-003", "account_id": "smtp1", "priority": 2, "sent_ts": 1767225606,
         "error_ts": None, "error": None, "deferred_ts": None, "event": "sent",
         "batch_code": "spring-2026", "refused_recipients": REFUSED},
        {"id": "MSG-004", "account_id": "smtp1", "priority": 2, "sent_ts": None, "error_ts": None,
         "error": None, "deferred_ts": 1767225661, "event": "deferred",
         "deferred_reason": "rate_limit", "retry_count": 0},
        {"id": "MSG-005", "account_id": "smtp2", "priority": 2, "sent_ts": None, "error_ts": None,
         "error": None, "deferred_ts": 1767225668, "event": "deferred",
         "deferred_reason": reason, "smtp_code": 451, "retry_count": 1},
        {"id": "MSG-002", "account_id": "smtp1", "priority": 2, "sent_ts": None,
         "error_ts": 1767225607, "error": "DATA: 550 5.7.1 Message rejected",
         "deferred_ts": None, "event": "error", "smtp_code": 550},
        {"id": "m4", "account_id": "nope", "priority": 2, "sent_ts": None, "error_ts": 1767225600,
         "error": "account not found for tenant", "deferred_ts": None, "event": "error"},
    ]  # fmt: skip
    # Byte for byte: same keys in the same order, same JSON types (ints stay ints).
    assert call.body == json.dumps({"delivery_report": expected}, separators=(",", ":")).encode()
    assert call.header("Authorization") == "Bearer tok-XYZ-123"
    assert call.header("Content-Type") == "application/json"
    assert call.header("User-Agent") == "mail-proxy/1.0.0"
    verify_signature(SECRET, call.header("X-Mail-Proxy-Signature"), call.body)
    assert report_env.unreported("acme") == 0


async def test_basic_auth_and_no_signature(report_env, tenant_server, sync_client) -> None:
    srv = tenant_server()
    report_env.add_tenant("b", srv.base_url, {"method": "basic", "user": "ünï", "password": "pw"})
    report_env.record_sent("b", ["x1"])
    await run_report_cycle(report_env.ctx(sync_client), test_mode=True)
    (call,) = srv.calls
    raw = base64.b64decode(call.header("Authorization").removeprefix("Basic "))
    assert raw.decode("utf-8") == "ünï:pw"
    assert call.header("X-Mail-Proxy-Signature") is None
    assert [item["id"] for item in call.items] == ["x1"]


async def test_tenant_without_url_is_not_called(report_env, tenant_server, sync_client) -> None:
    srv = tenant_server()
    report_env.add_tenant("nourl", None)
    report_env.add_tenant("url", srv.base_url)
    report_env.record_sent("nourl", ["a"])
    stats = await run_report_cycle(report_env.ctx(sync_client), test_mode=True)
    assert stats.calls == 1 and len(srv.calls) == 1  # only the heartbeat of "url"
    assert report_env.unreported("nourl") == 0  # acknowledged when recorded (reference §13.6)


async def test_one_log_line_per_call_and_warnings(
    report_env, tenant_server, sync_client, caplog
) -> None:
    srv = tenant_server(ok(queued=0, not_found=["x1"]))
    report_env.add_tenant("acme", srv.base_url)
    report_env.record_sent("acme", ["x1", "x2"])
    caplog.set_level(logging.INFO, logger="mailproxyd.report")
    await run_report_cycle(report_env.ctx(sync_client, log_delivery_activity=True))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 1
    assert re.fullmatch(
        rf"sync tenant=acme url={re.escape(srv.sync_url)} items=2 status=200 ok=true queued=0 "
        r"duration_ms=\d+",
        lines[0],
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.getMessage() for w in warnings] == ["sync tenant=acme answered not_found: x1"]


async def test_no_log_line_without_delivery_activity(
    report_env, tenant_server, sync_client, caplog
) -> None:
    srv = tenant_server()
    report_env.add_tenant("acme", srv.base_url)
    caplog.set_level(logging.INFO, logger="mailproxyd.report")
    await run_report_cycle(report_env.ctx(sync_client))
    assert len(srv.calls) == 1
    assert not [r for r in caplog.records if r.levelno == logging.INFO]


async def test_metrics_hook_sees_each_outcome(
    report_env, tenant_server, closed_port_url, sync_client
) -> None:
    answers = {"a": ok(), "b": not_ok(), "c": status(503)}
    for tenant_id, answer in answers.items():
        report_env.add_tenant(tenant_id, tenant_server(answer).base_url)
    report_env.add_tenant("d", closed_port_url)
    seen: dict[str, str] = {}
    ctx = report_env.ctx(sync_client)
    assert ctx.reporting is not None
    ctx.reporting.observe = lambda tenant_id, outcome, duration: seen.__setitem__(
        tenant_id, outcome
    )
    await run_report_cycle(ctx)
    assert seen == {"a": "ok", "b": "rejected", "c": "http_error", "d": "network_error"}


async def test_a_tenant_answer_cannot_forge_a_log_line(
    report_env, tenant_server, sync_client, caplog
) -> None:
    """reference §18.6: outside text is logged with control characters escaped (defect 15.8)."""
    forged = "x\n2026-01-01T00:00:00.000Z ERROR supervisor[1] forged\x1b[2J"
    srv = tenant_server(ok(queued=0, not_found=[forged], error=forged))
    report_env.add_tenant("acme", srv.base_url)
    report_env.record_sent("acme", ["x1"])
    caplog.set_level(logging.INFO, logger="mailproxyd.report")
    await run_report_cycle(report_env.ctx(sync_client))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    for line in warnings:
        assert "\n" not in line and "\x1b" not in line, line
        assert "x\\n2026-01-01T00:00:00.000Z ERROR supervisor[1] forged\\x1b[2J" in line
