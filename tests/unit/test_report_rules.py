"""Unit tests of the pure sync core (reference §13, §5.5, §5.9): no sockets, no clock."""

from __future__ import annotations

import base64
import dataclasses
import json

import msgspec
import pytest

from mailproxyd.core import report as core_report
from mailproxyd.core.report import Reply, ReportState

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
INTERVAL = 300.0


def row(event_type: str, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "MSG-001",
        "account_id": "smtp1",
        "priority": 2,
        "batch_code": None,
        "event_type": event_type,
        "event_ts": T0,
        "description": None,
        "metadata": {},
    }
    base.update(kw)
    return base


# The reference §13.8 example, one row per item, as the store hands them over.
EXAMPLE_ROWS = [
    row("sent", priority=1, event_ts=1767225605.4),
    row(
        "sent",
        id="MSG-003",
        event_ts=1767225606.0,
        batch_code="spring-2026",
        metadata={
            "refused_recipients": {
                "nobody@example.org": {"code": 550, "message": "5.1.1 User unknown"}
            }
        },
    ),
    row(
        "deferred",
        id="MSG-004",
        event_ts=1767225601.0,
        metadata={"deferred_ts": 1767225661.9, "deferred_reason": "rate_limit", "retry_count": 0},
    ),
    row(
        "deferred",
        id="MSG-005",
        account_id="smtp2",
        metadata={
            "deferred_ts": 1767225668,
            "deferred_reason": "RCPT TO: all recipients refused: 451 4.3.0 Temporary failure, "
            "try again later",
            "smtp_code": 451,
            "retry_count": 1,
        },
    ),
    row(
        "deferred",
        id="MSG-006",
        account_id="smtp2",
        metadata={
            "deferred_ts": 1767225667,
            "deferred_reason": "DATA: no reply after the message data was transmitted "
            "(outcome unknown)",
            "retry_count": 1,
            "outcome_uncertain": True,
        },
    ),
    row(
        "error",
        id="MSG-002",
        event_ts=1767225607,
        description="DATA: 550 5.7.1 Message rejected",
        metadata={"smtp_code": 550, "retry_count": 0, "outcome_uncertain": False},
    ),
    row(
        "error",
        id="m4",
        account_id="nope",
        event_ts=1767225600,
        description="account not found for tenant",
    ),
    row(
        "bounce",
        priority=1,
        event_ts=1767229200,
        metadata={
            "bounce_type": "hard",
            "bounce_code": "5.1.1",
            "bounce_reason": "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected",
        },
    ),
]

EXAMPLE_BODY = """{"delivery_report": [
  {"id": "MSG-001", "account_id": "smtp1", "priority": 1, "sent_ts": 1767225605, "error_ts": null,
   "error": null, "deferred_ts": null, "event": "sent"},
  {"id": "MSG-003", "account_id": "smtp1", "priority": 2, "sent_ts": 1767225606, "error_ts": null,
   "error": null, "deferred_ts": null, "event": "sent", "batch_code": "spring-2026",
   "refused_recipients": {"nobody@example.org": {"code": 550, "message": "5.1.1 User unknown"}}},
  {"id": "MSG-004", "account_id": "smtp1", "priority": 2, "sent_ts": null, "error_ts": null,
   "error": null, "deferred_ts": 1767225661, "event": "deferred", "deferred_reason": "rate_limit",
   "retry_count": 0},
  {"id": "MSG-005", "account_id": "smtp2", "priority": 2, "sent_ts": null, "error_ts": null,
   "error": null, "deferred_ts": 1767225668, "event": "deferred",
   "deferred_reason": "RCPT TO: all recipients refused: 451 4.3.0 Temporary failure, try again later",
   "smtp_code": 451, "retry_count": 1},
  {"id": "MSG-006", "account_id": "smtp2", "priority": 2, "sent_ts": null, "error_ts": null,
   "error": null, "deferred_ts": 1767225667, "event": "deferred",
   "deferred_reason": "DATA: no reply after the message data was transmitted (outcome unknown)",
   "retry_count": 1, "outcome_uncertain": true},
  {"id": "MSG-002", "account_id": "smtp1", "priority": 2, "sent_ts": null, "error_ts": 1767225607,
   "error": "DATA: 550 5.7.1 Message rejected", "deferred_ts": null, "event": "error", "smtp_code": 550},
  {"id": "m4", "account_id": "nope", "priority": 2, "sent_ts": null, "error_ts": 1767225600,
   "error": "account not found for tenant", "deferred_ts": null, "event": "error"},
  {"id": "MSG-001", "account_id": "smtp1", "priority": 1, "sent_ts": null, "error_ts": null,
   "error": null, "deferred_ts": null, "event": "bounce", "bounce_type": "hard", "bounce_code": "5.1.1",
   "bounce_reason": "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected",
   "bounce_ts": 1767229200}]}"""


# --- items -----------------------------------------------------------------------------------


def test_contract_example_is_reproduced_byte_for_byte() -> None:
    body = core_report.encode_body([core_report.encode_item(r) for r in EXAMPLE_ROWS])
    # Same keys, same order, same types: compare the compact forms of both.
    expected = json.dumps(json.loads(EXAMPLE_BODY), separators=(",", ":"), ensure_ascii=False)
    assert body.decode("utf-8") == expected


def test_base_keys_always_present_with_null() -> None:
    for kind in core_report.EVENT_TYPES:
        item = core_report.encode_item(row(kind, account_id=None))
        assert list(item)[:8] == [*core_report.BASE_KEYS, "event"]
        assert item["account_id"] is None


def test_times_are_integers() -> None:
    item = core_report.encode_item(
        row("deferred", event_ts=T0 + 0.9, metadata={"deferred_ts": T0 + 60.7})
    )
    assert item["deferred_ts"] == int(T0) + 60 and isinstance(item["deferred_ts"], int)
    sent = core_report.encode_item(row("sent", event_ts=T0 + 0.9))
    assert sent["sent_ts"] == int(T0) and isinstance(sent["sent_ts"], int)


def test_sent_extras_only_when_they_apply() -> None:
    plain = core_report.encode_item(row("sent", metadata={"retry_count": 0, "smtp_code": 250}))
    assert set(plain) == {*core_report.BASE_KEYS, "event"}
    retried = core_report.encode_item(
        row(
            "sent", metadata={"retry_count": 2, "outcome_uncertain": True, "refused_recipients": {}}
        )
    )
    assert retried["retry_count"] == 2 and retried["outcome_uncertain"] is True
    assert "refused_recipients" not in retried and "smtp_code" not in retried


def test_deferred_always_has_reason_and_retry_count() -> None:
    item = core_report.encode_item(
        row("deferred", description="421 busy", metadata={"deferred_ts": T0})
    )
    assert item["retry_count"] == 0
    assert item["deferred_reason"] == "421 busy"
    assert "refused_recipients" not in core_report.encode_item(
        row("deferred", metadata={"refused_recipients": {"a@b.c": {"code": 450}}})
    )


def test_error_with_all_recipients_refused() -> None:
    refused = {"a@example.org": {"code": 550, "message": "no"}}
    item = core_report.encode_item(
        row(
            "error",
            description="RCPT TO: all recipients refused: 550 no",
            metadata={"smtp_code": 550, "refused_recipients": refused, "retry_count": 1},
        )
    )
    assert item["error"] == "RCPT TO: all recipients refused: 550 no"
    assert item["smtp_code"] == 550 and item["refused_recipients"] == refused
    assert item["retry_count"] == 1


def test_bounce_keys_always_present() -> None:
    item = core_report.encode_item(row("bounce", batch_code="b1", metadata={"bounce_type": "soft"}))
    assert item["bounce_code"] is None and item["bounce_reason"] is None
    assert item["bounce_ts"] == int(T0) and item["batch_code"] == "b1"
    assert "retry_count" not in item


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError):
        core_report.encode_item(row("opened"))


def test_event_frame_adds_tenant_id() -> None:
    frame = core_report.event_frame("acme", EXAMPLE_ROWS[0])
    assert next(iter(frame)) == "tenant_id" and frame["tenant_id"] == "acme"
    assert {k: v for k, v in frame.items() if k != "tenant_id"} == core_report.encode_item(
        EXAMPLE_ROWS[0]
    )


# --- requests --------------------------------------------------------------------------------


def test_signature_test_vector() -> None:
    body = core_report.encode_body([])
    assert body == b'{"delivery_report":[]}'
    assert core_report.sign("whsec_3f9a2c7d1e5b8a40", 1767225600, body) == (
        "t=1767225600,v1=98df553488a888ba9c1094c8561bb7b29ce9e6592000998c3fce6c62a72f579a"
    )


def test_headers_bearer_and_signature() -> None:
    body = core_report.encode_body([])
    auth = {"method": "bearer", "token": "tok-XYZ-123", "signing_secret": "whsec_3f9a2c7d1e5b8a40"}
    headers = core_report.request_headers(auth, body, now=T0 + 0.7)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("mail-proxy/")
    assert headers["Authorization"] == "Bearer tok-XYZ-123"
    assert headers["X-Mail-Proxy-Signature"].endswith(
        "98df553488a888ba9c1094c8561bb7b29ce9e6592000998c3fce6c62a72f579a"
    )


def test_headers_basic_is_utf8_and_none_has_no_authorization() -> None:
    headers = core_report.request_headers(
        {"method": "basic", "user": "jürgen", "password": "p:ß"}, b"", now=T0
    )
    raw = base64.b64decode(headers["Authorization"].removeprefix("Basic "))
    assert raw.decode("utf-8") == "jürgen:p:ß"
    assert "Authorization" not in core_report.request_headers({"method": "none"}, b"", now=T0)
    assert "X-Mail-Proxy-Signature" not in core_report.request_headers(None, b"", now=T0)


def test_sync_url() -> None:
    assert core_report.sync_url("https://a.example/", None) == "https://a.example/mail-proxy/sync"
    assert core_report.sync_url("https://a.example/base", "/s") == "https://a.example/base/s"


def test_non_ascii_items_are_utf8() -> None:
    body = core_report.encode_body(
        [core_report.encode_item(row("error", description="fehlgeschlagen – ü"))]
    )
    assert "fehlgeschlagen – ü".encode() in body
    assert msgspec.json.decode(body)["delivery_report"][0]["error"] == "fehlgeschlagen – ü"


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, {"ok": True}, "ok"),
        (204, {"ok": True, "queued": 0}, "ok"),
        (200, {"ok": False, "error": ["database locked"]}, "rejected"),
        (200, {"ok": 1}, "rejected"),
        (200, {"ok": "true"}, "rejected"),
        (200, {}, "rejected"),
        (200, None, "rejected"),
        (200, [{"ok": True}], "rejected"),
        (500, {"ok": True}, "http_error"),
        (302, None, "http_error"),
        (None, None, "network_error"),
    ],
)
def test_acknowledgement(status: int | None, body: object, outcome: str) -> None:
    assert core_report.interpret(status, body).outcome == outcome


def test_hints_only_from_acknowledging_answers_and_typed() -> None:
    ack = core_report.interpret(200, {"ok": True, "queued": 15, "next_sync_after": 1767232800})
    assert (ack.queued, ack.next_sync_after) == (15, 1767232800.0)
    nack = core_report.interpret(200, {"ok": False, "queued": 15, "next_sync_after": 1767232800})
    assert (nack.queued, nack.next_sync_after) == (0, None)
    wrong = core_report.interpret(200, {"ok": True, "queued": "5", "next_sync_after": "soon"})
    assert wrong.acknowledged and (wrong.queued, wrong.next_sync_after) == (0, None)
    assert core_report.interpret(200, {"ok": True, "queued": True}).queued == 0
    assert core_report.interpret(200, {"ok": True, "queued": -3}).queued == 0


def test_warnings_from_not_found_and_error() -> None:
    reply = core_report.interpret(200, {"ok": True, "not_found": ["m4"], "error": "disk full"})
    assert reply.acknowledged
    assert reply.warnings == ("not_found: m4", "error: disk full")
    assert core_report.interpret(200, {"ok": False, "error": ["a", "b"]}).warnings == (
        "error: a; b",
    )


def test_decode_answer() -> None:
    assert core_report.decode_answer(b'{"ok":true}') == {"ok": True}
    assert core_report.decode_answer(b"<html>oops</html>") is None


# --- scheduling (reference §13.5) ----------------------------------------------------------------------

OK = Reply("ok")
FAIL = Reply("http_error", error="HTTP 500")


def decide(state: ReportState, now: float, *, active: bool = True, events: bool = False):
    return core_report.decide(state, active=active, has_events=events, now=now, interval=INTERVAL)


def test_never_acknowledged_active_tenant_gets_a_heartbeat() -> None:
    assert decide(ReportState(), T0) == core_report.Decision(True, "heartbeat")


def test_heartbeat_after_interval_only() -> None:
    state = ReportState(last_sync_ts=T0)
    assert decide(state, T0 + 299.9) == core_report.Decision(False, next_check=T0 + 300)
    assert decide(state, T0 + 300) == core_report.Decision(True, "heartbeat")


def test_inactive_tenant_gets_no_heartbeat_but_its_events() -> None:
    assert decide(ReportState(), T0, active=False) == core_report.Decision(False)
    assert decide(ReportState(last_sync_ts=T0), T0 + 900, active=False).call is False
    assert decide(ReportState(), T0, active=False, events=True) == core_report.Decision(
        True, "events"
    )


def test_events_call_at_once() -> None:
    assert decide(ReportState(last_sync_ts=T0), T0 + 1, events=True) == core_report.Decision(
        True, "events"
    )


def test_backoff_doubles_to_300_and_gates_every_reason() -> None:
    state = ReportState(last_sync_ts=T0)
    now = T0
    gaps = []
    for _ in range(12):
        state = core_report.after_call(state, FAIL, reason="events", now=now)
        assert state.backoff_until is not None
        gaps.append(state.backoff_until - now)
        assert decide(state, state.backoff_until - 0.01, events=True) == core_report.Decision(
            False, next_check=state.backoff_until
        )
        now = state.backoff_until
        assert decide(state, now, events=True).call
    assert gaps == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert state.consecutive_failures == 12 and state.last_error == "HTTP 500"
    assert state.last_sync_ts == T0  # only acknowledged calls count


def test_first_acknowledged_call_resets_backoff() -> None:
    state = ReportState(consecutive_failures=5, backoff_until=T0, last_error="HTTP 500")
    state = core_report.after_call(state, OK, reason="events", now=T0 + 1)
    assert (state.consecutive_failures, state.backoff_until, state.last_error) == (0, None, None)
    assert state.last_sync_ts == T0 + 1
    state = core_report.after_call(state, FAIL, reason="events", now=T0 + 2)
    assert state.backoff_until == T0 + 3


def test_dnd_set_by_future_next_sync_after_and_cleared_otherwise() -> None:
    state = core_report.after_call(
        ReportState(), Reply("ok", next_sync_after=T0 + 3600), reason="heartbeat", now=T0
    )
    assert state.dnd_until == T0 + 3600 and state.in_dnd(T0 + 10)
    # A non-acknowledging answer leaves DND as it was.
    assert core_report.after_call(state, FAIL, reason="events", now=T0 + 5).dnd_until == T0 + 3600
    # Past time, null or absent clears it.
    assert (
        core_report.after_call(
            state, Reply("ok", next_sync_after=T0 - 1), reason="events", now=T0
        ).dnd_until
        is None
    )
    assert core_report.after_call(state, OK, reason="events", now=T0).dnd_until is None


def test_dnd_suppresses_heartbeats_and_queued_but_not_events() -> None:
    state = ReportState(last_sync_ts=T0, dnd_until=T0 + 3600, queued_wanted=True)
    assert decide(state, T0 + 600) == core_report.Decision(False, next_check=T0 + 3600)
    assert decide(state, T0 + 600, events=True) == core_report.Decision(True, "events")
    assert decide(state, T0 + 3600) == core_report.Decision(True, "heartbeat")
    no_queue = ReportState(last_sync_ts=T0 + 3500, dnd_until=T0 + 3600)
    assert decide(no_queue, T0 + 3550) == core_report.Decision(False, next_check=T0 + 3800)
    never = ReportState(dnd_until=T0 + 60)
    assert decide(never, T0) == core_report.Decision(False, next_check=T0 + 60)
    assert decide(never, T0 + 60) == core_report.Decision(True, "heartbeat")


def test_queued_calls_capped_at_20_consecutive() -> None:
    state = core_report.after_call(ReportState(), Reply("ok", queued=5), reason="events", now=T0)
    made = 0
    now = T0
    while (d := decide(state, now)).call:
        assert d.reason == "queued"
        state = core_report.after_call(state, Reply("ok", queued=5), reason="queued", now=now)
        made += 1
        assert made <= 25
    assert made == 20 and state.queued_calls == 20
    assert decide(state, now) == core_report.Decision(False, next_check=now + INTERVAL)
    # Events still go out; a call made for another reason resets the count.
    assert decide(state, now, events=True).reason == "events"
    state = core_report.after_call(state, Reply("ok", queued=5), reason="events", now=now)
    assert state.queued_calls == 0 and decide(state, now) == core_report.Decision(True, "queued")


def test_queued_count_survives_a_call_that_got_no_answer() -> None:
    state = ReportState(last_sync_ts=T0, queued_wanted=True, queued_calls=20)
    timeout = Reply("network_error", error="timeout after 10 s")
    assert core_report.after_call(state, timeout, reason="events", now=T0).queued_calls == 20
    assert core_report.after_call(state, FAIL, reason="events", now=T0).queued_calls == 0


def test_queued_stops_when_tenant_has_nothing_more() -> None:
    state = core_report.after_call(ReportState(), Reply("ok", queued=1), reason="heartbeat", now=T0)
    state = core_report.after_call(state, Reply("ok", queued=0), reason="queued", now=T0)
    assert not state.queued_wanted and decide(state, T0).call is False


def test_failed_queued_call_counts_and_keeps_the_wish() -> None:
    state = ReportState(last_sync_ts=T0, queued_wanted=True, queued_calls=3)
    state = core_report.after_call(state, FAIL, reason="queued", now=T0)
    assert state.queued_wanted and state.queued_calls == 4
    assert decide(state, T0 + 1) == core_report.Decision(True, "queued")


def test_run_now_clears_dnd_and_backoff_and_makes_heartbeat_due() -> None:
    state = ReportState(
        last_sync_ts=T0, dnd_until=T0 + 3600, consecutive_failures=4, backoff_until=T0 + 8
    )
    assert decide(state, T0 + 1).call is False
    # What store.report.run_now writes: DND and back-off cleared, heartbeat due, failures kept.
    state = dataclasses.replace(state, dnd_until=None, backoff_until=None, heartbeat_due=True)
    assert (state.dnd_until, state.backoff_until, state.consecutive_failures) == (None, None, 4)
    assert decide(state, T0 + 1) == core_report.Decision(True, "run_now")
    assert core_report.heartbeat_due(state, active=True, now=T0 + 1, interval=INTERVAL)
    # Still due after a failure (once the back-off has passed), cleared by an acknowledgement.
    failed = core_report.after_call(state, FAIL, reason="run_now", now=T0 + 1)
    assert failed.backoff_until == T0 + 17  # the fifth failure in a row: 16 s
    assert decide(failed, T0 + 17) == core_report.Decision(True, "run_now")
    acked = core_report.after_call(failed, OK, reason="run_now", now=T0 + 17)
    assert not acked.heartbeat_due and decide(acked, T0 + 18).call is False


def test_backoff_seconds() -> None:
    assert [core_report.backoff_seconds(n) for n in (0, 1, 2, 9, 10, 1000)] == [
        0,
        1,
        2,
        256,
        300,
        300,
    ]


# --- sync status (reference §5.5) ----------------------------------------------------------------------


def test_status_rows() -> None:
    views = [
        core_report.TenantReportView(
            "acme",
            "ACME Corp",
            True,
            "https://app.acme.example",
            0,
            ReportState(last_sync_ts=T0 + 6),
        ),
        core_report.TenantReportView(
            "beta",
            None,
            True,
            "https://beta.example",
            41,
            ReportState(
                last_sync_ts=T0 - 5600,
                dnd_until=T0 + 3600,
                consecutive_failures=3,
                backoff_until=T0 + 14,
                last_error="HTTP 502",
            ),
        ),
        core_report.TenantReportView("gamma", None, True, None, 2),
    ]
    doc = core_report.status_document(views, now=T0 + 6, interval=300)
    assert doc == {
        "ok": True,
        "sync_interval_seconds": 300,
        "tenants": [
            {"id": "acme", "name": "ACME Corp", "active": True,
             "client_base_url": "https://app.acme.example", "last_sync_ts": 1767225606,
             "next_sync_due": False, "in_dnd": False, "consecutive_failures": 0,
             "unreported_events": 0},
            {"id": "beta", "active": True, "client_base_url": "https://beta.example",
             "last_sync_ts": 1767220000, "next_sync_due": False, "in_dnd": True,
             "dnd_until": 1767229200, "consecutive_failures": 3, "backoff_until": 1767225614,
             "last_error": "HTTP 502", "unreported_events": 41},
            {"id": "gamma", "active": True, "next_sync_due": False, "in_dnd": False,
             "consecutive_failures": 0, "unreported_events": 2},
        ],
    }  # fmt: skip
