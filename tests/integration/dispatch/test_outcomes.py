"""Every reference §10.3 outcome end to end through the dispatch cycle (reference §10.3–§10.5, §13.1).

A real SMTP server answers as each message's addresses script it (``scripted_smtp``); the
cycle runs in-process against a real database on each backend. For each case the test checks
what the reference makes observable: the record's status, text, ``smtp_code``, ``retry_count``,
``refused_recipients`` and ``outcome_uncertain``, and the event with its metadata.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mailproxyd.services.dispatch.cycle import run_dispatch_cycle
from mailproxyd.store import accounts
from tests.helpers import free_port
from tests.integration.dispatch.conftest import Harness
from tests.integration.dispatch.scripted_smtp import ScriptedController

UNKNOWN = "5.1.1 User unknown"
TEMPFAIL = "4.3.0 Temporary failure, try again later"


@dataclasses.dataclass
class Row:
    """One expected outcome: the message's fields and what must be recorded."""

    name: str
    fields: dict[str, Any]
    status: str
    event: str
    text: str | None = None
    smtp_code: int | None = None
    retry_count: int = 0
    refused: dict[str, Any] | None = None
    uncertain: bool = False
    delivered: bool = False


ROWS = [
    Row("accepted", {}, "sent", "sent", delivered=True),
    Row(
        "partial refusal",
        {"to": ["ann@example.org", "rcpt550@example.org"]},
        "sent",
        "sent",
        refused={"rcpt550@example.org": {"code": 550, "message": UNKNOWN}},
        delivered=True,
    ),
    Row(
        "all refused 5xx",
        {"to": ["rcpt550@example.org"]},
        "error",
        "error",
        text=f"RCPT TO: all recipients refused: 550 {UNKNOWN}",
        smtp_code=550,
        refused={"rcpt550@example.org": {"code": 550, "message": UNKNOWN}},
    ),
    Row(
        "all refused, one 4xx",
        {"to": ["rcpt550@example.org", "rcpt451@example.org"]},
        "deferred",
        "deferred",
        text=f"RCPT TO: all recipients refused: 451 {TEMPFAIL}",
        smtp_code=451,
        retry_count=1,
    ),
    Row(
        "MAIL FROM 4xx",
        {"from": "mail451@acme.example"},
        "deferred",
        "deferred",
        text=f"MAIL FROM: 451 {TEMPFAIL}",
        smtp_code=451,
        retry_count=1,
    ),
    Row(
        "MAIL FROM 5xx",
        {"from": "mail550@acme.example"},
        "error",
        "error",
        text=f"MAIL FROM: 550 {UNKNOWN}",
        smtp_code=550,
    ),
    Row(
        "data 4xx",
        {"to": ["data451@example.org"]},
        "deferred",
        "deferred",
        text=f"DATA: 451 {TEMPFAIL}",
        smtp_code=451,
        retry_count=1,
    ),
    Row(
        "data 421",
        {"to": ["data421@example.org"]},
        "deferred",
        "deferred",
        text="DATA: 421 scripted reply",
        smtp_code=421,
        retry_count=1,
    ),
    Row(
        "data 5xx",
        {"to": ["data554@example.org"]},
        "error",
        "error",
        text="DATA: 554 5.7.1 Message rejected",
        smtp_code=554,
    ),
    Row(
        "no reply after the data",
        {"to": ["drop@example.org"]},
        "deferred",
        "deferred",
        text="DATA: no reply after the message data was transmitted (outcome unknown)",
        retry_count=1,
        uncertain=True,
        delivered=True,
    ),
    Row(
        "build failure",
        {"subject": None},
        "error",
        "error",
        text="message build failed: missing subject",
    ),
]


def _payload_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _item_without(fields: dict[str, Any]) -> list[str]:
    return [k for k, v in fields.items() if v is None]


def _only_event(harness: Harness, message_id: str) -> dict[str, Any]:
    found = [e for e in harness.events() if e["id"] == message_id]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_outcome_row(harness: Harness, smtp: ScriptedController, pool: Any, row: Row) -> None:
    harness.enqueue("acme", ["m1"], **_payload_fields(row.fields), drop=_item_without(row.fields))
    assert await run_dispatch_cycle(harness, pool=pool) == 1

    record = harness.record("acme", "m1")
    assert record["status"] == row.status
    assert record["retry_count"] == row.retry_count
    assert record["smtp_code"] == row.smtp_code
    assert record["refused_recipients"] == row.refused
    assert record["outcome_uncertain"] is (True if row.uncertain else None)
    event = _only_event(harness, "m1")
    assert event["event_type"] == row.event
    meta = event["metadata"]
    if row.event == "deferred":
        assert record["deferred_reason"] == row.text
        assert meta["deferred_reason"] == row.text
        assert meta["retry_count"] == row.retry_count
        # jitter 0: the first retry comes exactly 60 s after the failure (reference §10.4)
        assert meta["deferred_ts"] == pytest.approx(event["event_ts"] + 60, abs=1e-6)
        assert record["deferred_ts"] == meta["deferred_ts"]
    elif row.event == "error":
        assert record["error"] == row.text
        assert event["description"] == row.text
    else:
        assert record["sent_ts"] == pytest.approx(event["event_ts"])
    assert meta.get("smtp_code") == (row.smtp_code if row.event != "sent" else None)
    assert meta.get("refused_recipients") == (row.refused if row.event != "deferred" else None)
    assert meta.get("outcome_uncertain") is (True if row.uncertain else None)
    assert ("m1" in smtp.scripted.ids()) is row.delivered


async def test_connection_refused_is_temporary(harness: Harness, pool: Any) -> None:
    port = free_port()
    harness.account("acme", "main", port=port)
    harness.enqueue("acme", ["m1"])
    await run_dispatch_cycle(harness, pool=pool)
    record = harness.record("acme", "m1")
    assert record["status"] == "deferred"
    assert record["deferred_reason"] == f"connect: connection refused (127.0.0.1:{port})"
    assert record["retry_count"] == 1
    assert record["smtp_code"] is None


async def test_retries_exhausted(harness: Harness, pool: Any) -> None:
    harness.settings = dataclasses.replace(harness.settings, max_retries=0)
    harness.enqueue("acme", ["m1"], to=["data451@example.org"])
    await run_dispatch_cycle(harness, pool=pool)
    record = harness.record("acme", "m1")
    assert record["status"] == "error"
    assert record["error"] == f"Max retries (0) exceeded: DATA: 451 {TEMPFAIL}"
    assert record["smtp_code"] == 451
    event = _only_event(harness, "m1")
    assert event["event_type"] == "error"
    assert event["metadata"]["smtp_code"] == 451


async def test_uncertain_flag_sticks_to_later_events(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    """After an uncertain attempt every later event and the record say so (reference §10.3)."""
    harness.enqueue("acme", ["m1"], to=["drop@example.org"])
    start = harness.now()
    await run_dispatch_cycle(harness, pool=pool)
    assert harness.record("acme", "m1")["outcome_uncertain"] is True

    smtp.scripted.accept_all = True
    harness.now = lambda: start + 61  # the retry is due 60 s after the failure
    assert await run_dispatch_cycle(harness, pool=pool) == 1
    record = harness.record("acme", "m1")
    assert record["status"] == "sent"
    assert record["outcome_uncertain"] is True
    assert record["retry_count"] == 1
    events = [e for e in harness.events() if e["id"] == "m1"]
    assert [e["event_type"] for e in events] == ["deferred", "sent"]
    assert events[1]["metadata"] == {"retry_count": 1, "outcome_uncertain": True}
    # Both attempts carried the same Message-ID, so the receiver can drop the duplicate.
    ids = {r.message["Message-ID"] for r in smtp.scripted.received}
    assert len(smtp.scripted.received) == 2 and len(ids) == 1


@pytest.mark.parametrize(
    ("fields", "slot_kept"),
    [
        ({"to": ["drop@example.org"]}, True),  # uncertain: the data reached the server
        ({"to": ["data451@example.org"]}, True),  # refused after the data
        ({"from": "mail451@acme.example"}, False),  # failed before the data
        ({"to": ["rcpt550@example.org"]}, False),
    ],
    ids=["uncertain", "data-4xx", "mail-4xx", "rcpt-5xx"],
)
async def test_rate_slot_kept_or_released(
    harness: Harness, pool: Any, fields: dict[str, Any], slot_kept: bool
) -> None:
    """A failed attempt gives its slot back only if the data was not transmitted (reference §9)."""
    harness.account("acme", "main", limit_per_minute=1)
    harness.enqueue("acme", ["m1"], **fields)
    await run_dispatch_cycle(harness, pool=pool)
    harness.enqueue("acme", ["m2"])
    await run_dispatch_cycle(harness, pool=pool)
    m2 = harness.record("acme", "m2")
    if slot_kept:
        assert m2["status"] == "deferred" and m2["deferred_reason"] == "rate_limit"
    else:
        assert m2["status"] == "sent"


async def test_account_deleted_during_the_attempt(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    """A temporary failure of an attempt that outlived its account fails it (reference §5.4)."""
    import trio

    harness.enqueue("acme", ["m1"], to=["slow400@example.org", "data451@example.org"])

    async def delete_soon() -> None:
        await trio.sleep(0.15)
        with harness.database.transaction() as tx:
            accounts.delete(tx, "acme", "main", harness.now())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(delete_soon)
        await run_dispatch_cycle(harness, pool=pool)
    record = harness.record("acme", "m1")
    assert record["status"] == "error"
    assert record["error"] == "account deleted"
    assert [e["event_type"] for e in harness.events() if e["id"] == "m1"] == ["error"]


async def test_rate_limit_reject_and_tenant_limits_always_defer(
    harness: Harness, pool: Any
) -> None:
    """``limit_behavior: reject`` fails with ``rate_limit_exceeded`` (no smtp_code); a tenant
    limit defers even then (reference §9)."""
    harness.account("acme", "main", limit_per_minute=1, limit_behavior="reject")
    harness.enqueue("acme", ["a1", "a2"])
    await run_dispatch_cycle(harness, pool=pool)
    rejected = harness.record("acme", "a2")
    assert harness.record("acme", "a1")["status"] == "sent"
    assert rejected["status"] == "error"
    assert rejected["error"] == "rate_limit_exceeded"
    assert rejected["smtp_code"] is None

    harness.tenant("beta", rate_limits={"hourly": 1})
    harness.account("beta", "main", limit_behavior="reject")
    harness.enqueue("beta", ["b1", "b2"])
    await run_dispatch_cycle(harness, pool=pool)
    assert harness.record("beta", "b1")["status"] == "sent"
    deferred = harness.record("beta", "b2")
    assert deferred["status"] == "deferred"
    assert deferred["deferred_reason"] == "rate_limit"
    assert deferred["retry_count"] == 0
    sent_ts = harness.record("beta", "b1")["sent_ts"]
    assert sent_ts + 3600 - 1 <= deferred["deferred_ts"] <= sent_ts + 3600 + 1


async def test_base64_attachment_is_delivered(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    harness.enqueue(
        "acme",
        ["att"],
        attachments=[{"filename": "note.txt", "storage_path": "base64:aGVsbG8gd29ybGQ="}],
    )
    await run_dispatch_cycle(harness, pool=pool)
    assert harness.record("acme", "att")["status"] == "sent"
    message = smtp.scripted.received[0].message
    parts = list(message.iter_attachments())
    assert [p.get_filename() for p in parts] == ["note.txt"]
    assert parts[0].get_content() in ("hello world", b"hello world")


@pytest.mark.parametrize(
    ("max_retries", "to", "text"),
    [
        (2, "data451@example.org", f"DATA: 451 {TEMPFAIL}"),
        (
            1,
            "drop@example.org",
            "DATA: no reply after the message data was transmitted (outcome unknown)",
        ),
    ],
    ids=["data-451", "uncertain"],
)
async def test_the_final_failure_is_not_counted_as_a_retry(
    harness: Harness, pool: Any, max_retries: int, to: str, text: str
) -> None:
    """retry_count stays at GMP_MAX_RETRIES when the ladder ends (reference §10.4): record, event, item."""
    from mailproxyd.core.report import encode_item

    harness.settings = dataclasses.replace(
        harness.settings, max_retries=max_retries, retry_delays=(1, 1)
    )
    harness.enqueue("acme", ["m1"], to=[to])
    start = harness.now()
    for attempt in range(max_retries + 1):
        harness.now = lambda at=start + 10 * attempt: at
        assert await run_dispatch_cycle(harness, pool=pool) == 1
    record = harness.record("acme", "m1")
    assert record["status"] == "error"
    assert record["error"] == f"Max retries ({max_retries}) exceeded: {text}"
    assert record["retry_count"] == max_retries
    events = [e for e in harness.events() if e["id"] == "m1"]
    assert [e["event_type"] for e in events] == ["deferred"] * max_retries + ["error"]
    assert events[-1]["metadata"]["retry_count"] == max_retries
    assert encode_item(events[-1])["retry_count"] == max_retries
