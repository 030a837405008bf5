"""add-messages validation (reference §6.1–§6.6, §6.9 data, reference §7 Message-ID)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from mailproxyd.core.messages import (
    MAX_RECIPIENTS,
    RESERVED_HEADERS,
    Accepted,
    Envelope,
    Rejected,
    TenantView,
    TooManyMessages,
    ValidationContext,
    foreign_tenant,
    new_message_id,
    normalise_message_id,
    validate_batch,
    validate_envelope,
    validate_item,
)
from mailproxyd.errors import ValidationFailed

TENANTS = {
    "acme": TenantView("smtp1", frozenset({"smtp1", "smtp2"}), True),
    "solo": TenantView(None, frozenset({"only"}), False),
    "many": TenantView(None, frozenset({"a", "b"}), False),
    "empty": TenantView(None, frozenset(), False),
}


def admin(**kw: Any) -> ValidationContext:
    return ValidationContext(caller_tenant=None, lookup=TENANTS.get, **kw)


def tenant_key(tenant: str = "acme", **kw: Any) -> ValidationContext:
    return ValidationContext(caller_tenant=tenant, lookup=TENANTS.get, **kw)


def good(**overrides: Any) -> dict[str, Any]:
    item = {
        "id": "MSG-001",
        "tenant_id": "acme",
        "from": "Shop <orders@acme.example>",
        "to": ["ann@example.org"],
        "subject": "Your order",
        "body": "Thanks!",
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not _DROP}


_DROP = object()


def reason(item: Any, ctx: ValidationContext | None = None) -> str:
    outcome = validate_item(item, ctx or admin())
    assert isinstance(outcome, Rejected), outcome
    return outcome.reason


def accepted(item: Any, ctx: ValidationContext | None = None) -> Accepted:
    outcome = validate_item(item, ctx or admin())
    assert isinstance(outcome, Accepted), outcome
    return outcome


# --- envelope -------------------------------------------------------------------------------


def test_envelope_ok() -> None:
    env = validate_envelope(
        {"messages": [], "default_priority": "HIGH", "tenant_id": "acme", "x": 1}, 10
    )
    assert env == Envelope([], 1, "acme")
    assert validate_envelope({"messages": [{}], "tenant_id": ""}, 10) == Envelope([{}], None, None)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, [("messages", "required")]),
        ({"messages": None}, [("messages", "required")]),
        ({"messages": {"id": 1}}, [("messages", "must be a list")]),
        ({"messages": "x"}, [("messages", "must be a list")]),
        (
            {"messages": [], "default_priority": 7},
            [("default_priority", "must be 0-3 or one of immediate, high, medium, low")],
        ),
        ({"messages": [], "tenant_id": "a b"}, [("tenant_id", "must be a tenant id")]),
        ([1], [("messages", "required")]),
    ],
)
def test_envelope_errors(body: Any, errors: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationFailed) as failed:
        validate_envelope(body, 10)
    assert failed.value.errors == errors


def test_envelope_too_many() -> None:
    validate_envelope({"messages": [{}] * 3}, 3)
    with pytest.raises(TooManyMessages) as failed:
        validate_envelope({"messages": [{}] * 4}, 3)
    assert str(failed.value) == "Cannot enqueue more than 3 messages at once"
    assert failed.value.limit == 3


# --- rules 1-26, in order -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ([1], "invalid payload"),
        ("x", "invalid payload"),
        (good(id=_DROP), "missing id"),
        (good(id=""), "missing id"),
        (good(id=None), "missing id"),
        (good(id="a\nb"), "invalid id"),
        (good(id=5), "invalid id"),
        (good(id="x" * 256), "invalid id"),
        (good(tenant_id=_DROP), "missing tenant_id"),
        (good(tenant_id="nope"), "tenant not found"),
        (good(tenant_id="bad id"), "tenant not found"),
        (good(tenant_id=7), "tenant not found"),
        (good(tenant_id="many"), "missing account_id"),
        (good(tenant_id="empty"), "missing account_id"),
        (good(account_id="smtp9"), "account not found for tenant"),
        (good(account_id=3), "account not found for tenant"),
        (good(**{"from": _DROP}), "missing from"),
        (good(**{"from": ""}), "missing from"),
        (good(**{"from": "orders@"}), "invalid address: orders@"),
        (good(**{"from": "a@b.example, c@d.example"}), "invalid address: a@b.example, c@d.example"),
        (good(**{"from": ["a@b.example"]}), 'invalid address: ["a@b.example"]'),
        (good(to=_DROP), "missing to"),
        (good(to=None), "missing to"),
        (good(to=""), "missing to"),
        (good(to=[]), "missing to"),
        (good(to=["", " "]), "missing to"),
        (good(to=" , ,"), "missing to"),
        (good(to=5), "invalid to: must be a list of addresses or a string"),
        (good(to=[0]), "invalid to: must be a list of addresses or a string"),
        (good(to=["a@b.example", 5]), "invalid to: must be a list of addresses or a string"),
        (good(cc={"a": 1}), "invalid cc: must be a list of addresses or a string"),
        (good(bcc=[None]), "invalid bcc: must be a list of addresses or a string"),
        (good(reply_to=1.5), "invalid reply_to: must be a list of addresses or a string"),
        # Types of every list are judged before any address.
        (good(to=["bob@"], cc=5), "invalid cc: must be a list of addresses or a string"),
        (good(to="bob@"), "invalid address: bob@"),
        (good(to=["ann@example.org", ""]), "invalid address: "),
        (good(to=["a@b.example, c@d.example"]), "invalid address: a@b.example, c@d.example"),
        (good(cc="ok@example.org, bad@@x"), "invalid address: bad@@x"),
        (good(bcc=["x@"]), "invalid address: x@"),
        (good(reply_to="@y"), "invalid address: @y"),
        (good(return_path="Bounce <b@acme.example>"), "invalid address: Bounce <b@acme.example>"),
        (good(return_path=5), "invalid address: 5"),
        (good(to='"x"\r\nBcc: y@z'), 'invalid address: "x"\\r\\nBcc: y@z'),
        (
            good(to=["a@example.org"] * 600, bcc=["b@example.org"] * 401),
            "too many recipients: 1001 (max 1000)",
        ),
        (good(subject=_DROP), "missing subject"),
        (good(subject=""), "missing subject"),
        (good(subject=None), "missing subject"),
        (good(subject=5), "invalid subject: must be a string"),
        (good(subject="a\r\nBcc: x@y"), "invalid header: Subject"),
        (good(subject="a\n"), "invalid header: Subject"),
        (good(body=5), "invalid body: must be a string"),
        (good(body=["x"]), "invalid body: must be a string"),
        (good(content_type="markdown"), "invalid content_type: markdown"),
        (good(content_type="text/xml"), "invalid content_type: text/xml"),
        (good(content_type=1), "invalid content_type: 1"),
        (good(headers=["X-A", "b"]), "invalid headers: must be an object"),
        (good(headers="X-A: b"), "invalid headers: must be an object"),
        (good(headers={"X-A": "ok", "Bad Name": "v"}), "invalid header: Bad Name"),
        (good(headers={"X:A": "v"}), "invalid header: X:A"),
        (good(headers={"": "v"}), "invalid header: "),
        (good(headers={"X-" + "a" * 75: "v"}), "invalid header: X-" + "a" * 75),
        (good(headers={"X-Ä": "v"}), "invalid header: X-Ä"),
        (good(headers={"X-A": "a\r\nBcc: x"}), "invalid header: X-A"),
        (good(headers={"X-A": ["v"]}), "invalid header: X-A"),
        (good(headers={"X-A": {"v": 1}}), "invalid header: X-A"),
        (good(headers={"bcc": "x@y"}), "invalid header: bcc"),
        (good(headers={"Content-Type": "text/x"}), "invalid header: Content-Type"),
        (good(message_id="no-at-sign"), "invalid message_id: no-at-sign"),
        (good(message_id="a b@c"), "invalid message_id: a b@c"),
        (good(message_id="<a@b"), "invalid message_id: <a@b"),
        (good(message_id="a@b\r\n"), "invalid message_id: a@b\\r\\n"),
        (good(message_id=12), "invalid message_id: 12"),
        (good(priority=5), "invalid priority: 5"),
        (good(priority=-1), "invalid priority: -1"),
        (good(priority=1.5), "invalid priority: 1.5"),
        (good(priority=True), "invalid priority: true"),
        (good(priority="urgent"), "invalid priority: urgent"),
        (good(deferred_ts=-1), "invalid deferred_ts: -1"),
        (good(deferred_ts="1767225600"), "invalid deferred_ts: 1767225600"),
        (good(deferred_ts=True), "invalid deferred_ts: true"),
        (good(batch_code="*"), "invalid batch_code: *"),
        (good(batch_code="a,b"), "invalid batch_code: a,b"),
        (good(batch_code=5), "invalid batch_code: 5"),
        (good(attachments={"filename": "a"}), "invalid attachments: must be a list"),
        (
            good(attachments=[{"filename": "a.txt", "storage_path": "doc=1", "content": "x"}]),
            "invalid attachment[0]: unknown field content",
        ),
        (
            good(attachments=[{"filename": "a.txt", "storage_path": "doc=1"}, 7]),
            "invalid attachment[1]: must be an object",
        ),
    ],
)
def test_rejection_reasons(item: Any, expected: str) -> None:
    assert reason(item) == expected


def test_first_failing_rule_decides() -> None:
    # Everything is wrong: the lowest-numbered rule wins, step by step.
    item = good(
        account_id="smtp9",
        **{"from": "x@"},
        to="y@",
        subject="a\nb",
        body=1,
        content_type="x",
        priority=9,
    )
    assert reason(item) == "account not found for tenant"
    item["account_id"] = "smtp1"
    assert reason(item) == "invalid address: x@"
    item["from"] = "ok@acme.example"
    assert reason(item) == "invalid address: y@"
    item["to"] = "ok@example.org"
    assert reason(item) == "invalid header: Subject"
    item["subject"] = "fine"
    assert reason(item) == "invalid body: must be a string"
    item["body"] = "fine"
    assert reason(item) == "invalid content_type: x"
    item["content_type"] = "HTML"
    assert reason(item) == "invalid priority: 9"
    item["priority"] = "low"
    assert accepted(item).priority == 3


def test_shown_value_is_cut_and_escaped() -> None:
    value = "\r\n" + "x" * 300 + "@"
    shown = reason(good(to=value)).removeprefix("invalid address: ")
    assert len(shown) == 200
    assert shown.startswith("\\r\\nxxx")


def test_address_from_field_accepts_contract_examples() -> None:
    for sender in [
        "ann@example.org",
        "Ann Smith <ann@example.org>",
        '"Smith, Ann" <ann@example.org>',
        "josé@exämple.org",
        "ops@[192.0.2.10]",
    ]:
        assert accepted(good(**{"from": sender})).message["from"] == sender


def test_recipient_limit_is_inclusive() -> None:
    ok = accepted(good(to=[f"u{i}@example.org" for i in range(MAX_RECIPIENTS)]))
    assert len(ok.message["to"]) == MAX_RECIPIENTS
    # reply_to does not count.
    assert accepted(good(to=["a@example.org"] * 1000, reply_to=["r@example.org"] * 5))


# --- tenants and accounts -------------------------------------------------------------------


def test_tenant_resolution_order() -> None:
    item = good(tenant_id=_DROP)
    assert accepted(item, admin(envelope_tenant="solo")).tenant_id == "solo"
    assert accepted(item, tenant_key("solo")).account_id == "only"
    assert accepted(good(tenant_id="acme"), admin(envelope_tenant="solo")).tenant_id == "acme"
    assert accepted(good(tenant_id=""), tenant_key("acme")).tenant_id == "acme"


def test_tenant_key_item_for_other_tenant_is_not_served() -> None:
    # The API refuses such requests up front (foreign_tenant); validation stays safe anyway.
    outcome = validate_item(good(tenant_id="solo"), tenant_key("acme"))
    assert isinstance(outcome, Rejected) and outcome.reason == "tenant not found"
    assert not outcome.recordable


def test_account_resolution() -> None:
    assert accepted(good()).account_id == "smtp1"  # the default account
    assert accepted(good(account_id="smtp2")).account_id == "smtp2"
    assert accepted(good(tenant_id="solo")).account_id == "only"  # the only account
    assert accepted(good(tenant_id="many", account_id="b")).account_id == "b"
    assert accepted(good(account_id="")).account_id == "smtp1"


def test_lookup_is_called_once_per_tenant_and_accepts_pairs() -> None:
    calls: list[str] = []

    def lookup(tenant: str) -> tuple[str | None, set[str]] | None:
        calls.append(tenant)
        return ("main", {"main"}) if tenant == "t1" else None

    ctx = ValidationContext(caller_tenant=None, lookup=lookup)
    env = Envelope(
        [good(id=f"m{i}", tenant_id="t1") for i in range(5)] + [good(tenant_id="t2")] * 2,
        None,
        None,
    )
    result = validate_batch(env, ctx)
    assert [a.account_id for a in result.accepted] == ["main"] * 5
    assert [r.reason for r in result.rejected] == ["tenant not found"] * 2
    assert calls == ["t1", "t2"]


# --- rejections: what reference §6.8/§6.9 need --------------------------------------------------------


def test_rejection_metadata() -> None:
    early = validate_item(good(tenant_id="nope", priority="high"), admin())
    assert isinstance(early, Rejected)
    assert (early.id, early.rule, early.tenant_id, early.validation_failure, early.recordable) == (
        "MSG-001",
        5,
        None,
        True,
        False,
    )
    nothing = validate_item({"id": ""}, admin())
    assert isinstance(nothing, Rejected) and nothing.id is None and nothing.rule == 2
    late = validate_item(good(account_id="nope", priority="low"), admin())
    assert isinstance(late, Rejected)
    assert (late.tenant_id, late.account_id, late.priority, late.rule) == ("acme", "nope", 3, 8)
    assert late.recordable and late.validation_failure
    bad_priority = validate_item(good(priority="urgent"), admin(default_priority=1))
    assert isinstance(bad_priority, Rejected)
    assert bad_priority.priority == 1 and bad_priority.account_id is None
    assert bad_priority.raw["priority"] == "urgent"


def test_batch_duplicates_and_order() -> None:
    items = [
        good(id="a"),
        good(id="b", to="bob@"),
        good(id="a", subject="again"),
        good(id="b"),
        good(id="a", tenant_id="solo"),  # same id, other tenant: another key
        7,
    ]
    result = validate_batch(Envelope(items, None, None), admin())
    assert [(a.index, a.id, a.tenant_id) for a in result.accepted] == [
        (0, "a", "acme"),
        (4, "a", "solo"),
    ]
    assert [(r.index, r.id, r.reason) for r in result.rejected] == [
        (1, "b", "invalid address: bob@"),
        (2, "a", "duplicate id in request"),
        (3, "b", "duplicate id in request"),
        (5, None, "invalid payload"),
    ]
    duplicate = result.rejected[1]
    assert not duplicate.validation_failure and not duplicate.recordable


def test_foreign_tenant() -> None:
    body = {"tenant_id": "acme", "messages": [good(tenant_id=None), good(tenant_id="acme"), 5]}
    assert foreign_tenant(body, "acme") is None
    assert foreign_tenant(body, None) is None
    assert foreign_tenant({"messages": [good(), good(tenant_id="beta")]}, "acme") == "beta"
    assert foreign_tenant({"tenant_id": "beta", "messages": []}, "acme") == "beta"
    assert foreign_tenant({"messages": [good(tenant_id=5)]}, "acme") == "5"
    assert foreign_tenant({"messages": "x"}, "acme") is None
    assert foreign_tenant([1], "acme") is None


# --- normalisation --------------------------------------------------------------------------


def test_normalised_item() -> None:
    item = good(
        to="Ann <ann@example.org>, bob@example.org",
        cc=["  carl@example.org "],
        bcc="dan@example.org",
        reply_to="replies@acme.example",
        return_path="<bounce@acme.example>",
        content_type="Text/HTML",
        headers={"X-Campaign": "spring", "X-Num": 3, "X-Flag": False, "X-Skip": None},
        priority="0",
        deferred_ts=1767225600.9,
        batch_code="spring-2026",
        message_id="abc@acme.example",
        unknown_key="ignored",
    )
    result = accepted(item)
    assert result.message == {
        "id": "MSG-001",
        "tenant_id": "acme",
        "account_id": "smtp1",
        "from": "Shop <orders@acme.example>",
        "to": ["Ann <ann@example.org>", "bob@example.org"],
        "cc": ["carl@example.org"],
        "bcc": ["dan@example.org"],
        "reply_to": ["replies@acme.example"],
        "return_path": "bounce@acme.example",
        "subject": "Your order",
        "body": "Thanks!",
        "content_type": "html",
        "priority": 0,
        "headers": {"X-Campaign": "spring", "X-Num": 3, "X-Flag": False},
        "message_id": "<abc@acme.example>",
        "deferred_ts": 1767225600,
        "batch_code": "spring-2026",
    }
    assert (result.priority, result.deferred_ts, result.batch_code) == (
        0,
        1767225600,
        "spring-2026",
    )
    assert result.message_id == "<abc@acme.example>" and not result.message_id_generated
    assert not result.smtputf8


def test_defaults() -> None:
    result = accepted(good(body=_DROP, batch_code="", deferred_ts=None, headers={}))
    assert result.message["body"] == ""
    assert result.message["content_type"] == "plain"
    assert result.message["priority"] == 2
    assert "batch_code" not in result.message and result.batch_code is None
    assert "headers" not in result.message and "message_id" not in result.message
    assert accepted(good(), admin(default_priority=0)).priority == 0
    assert accepted(good(priority="Immediate"), admin(default_priority=3)).priority == 0


def test_generated_message_id() -> None:
    result = accepted(good(**{"from": "Zoë <z@exämple.org>"}))
    assert result.message_id_generated
    local, _, domain = result.message_id[1:-1].partition("@")
    assert result.message_id[0] == "<" and result.message_id[-1] == ">"
    assert domain == "xn--exmple-cua.org"
    assert uuid.UUID(local).version == 4 and uuid.UUID(local).hex == local
    assert len({new_message_id("x.example") for _ in range(5000)}) == 5000


def test_message_id_normalisation() -> None:
    assert normalise_message_id("a@b") == "<a@b>"
    assert normalise_message_id("<a@b>") == "<a@b>"
    assert normalise_message_id("<a.b+c@[1.2.3.4]>") == "<a.b+c@[1.2.3.4]>"
    for bad in ["", "<>", "a", "@b", "a@", "<a@b", "a@b>", "a b@c", "a@b\t", "<<a@b>>"]:
        assert normalise_message_id(bad) is None, bad


def test_smtputf8_flag() -> None:
    assert accepted(good(to=["josé@example.org"])).smtputf8
    assert accepted(good(**{"from": "josé@exämple.org"})).smtputf8
    assert not accepted(good(to=["ann@exämple.org"])).smtputf8  # IDNA covers the domain


def test_reserved_headers() -> None:
    assert {
        "bcc",
        "x-genro-mail-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    } == RESERVED_HEADERS
    # Other standard names may be overridden (reference §7).
    assert accepted(good(headers={"Subject": "override", "Reply-To": "x@y.example"}))


def test_attachments_are_normalised() -> None:
    ctx = admin(attachment_fs_roots=("/srv/files/",))
    result = accepted(
        good(
            attachments=[
                {"filename": "a.txt", "storage_path": "base64:aGVsbG8"},
                {"filename": "b.pdf", "storage_path": "https://cdn.example/b.pdf"},
                {
                    "filename": "c.pdf",
                    "storage_path": "/srv/files/c.pdf",
                    "mime_type": "application/pdf",
                },
                {"filename": "d.pdf", "storage_path": "doc_id=42", "fetch_mode": None},
                {"filename": "e.bin", "storage_path": "aGk=", "fetch_mode": "base64"},
            ]
        ),
        ctx,
    )
    assert result.message["attachments"] == [
        {"filename": "a.txt", "storage_path": "aGVsbG8", "fetch_mode": "base64", "size": 5},
        {
            "filename": "b.pdf",
            "storage_path": "https://cdn.example/b.pdf",
            "fetch_mode": "http_url",
        },
        {
            "filename": "c.pdf",
            "storage_path": "/srv/files/c.pdf",
            "fetch_mode": "filesystem",
            "mime_type": "application/pdf",
        },
        {"filename": "d.pdf", "storage_path": "doc_id=42", "fetch_mode": "endpoint"},
        {"filename": "e.bin", "storage_path": "aGk=", "fetch_mode": "base64", "size": 2},
    ]
    assert "attachments" not in accepted(good(attachments=[])).message


def test_attachment_context_rules() -> None:
    fs = {"filename": "c.pdf", "storage_path": "/srv/files/c.pdf"}
    assert (
        reason(good(attachments=[fs]))
        == "invalid attachment[0]: filesystem attachments are disabled"
    )
    ctx = admin(attachment_fs_roots=("/srv/other",))
    assert (
        reason(good(attachments=[fs]), ctx)
        == "invalid attachment[0]: path not allowed: /srv/files/c.pdf"
    )
    endpoint = {"filename": "d.pdf", "storage_path": "doc_id=42"}
    assert accepted(good(attachments=[endpoint]))  # acme has a client_base_url
    assert (
        reason(good(tenant_id="solo", attachments=[endpoint]))
        == "invalid attachment[0]: endpoint attachments need the tenant's client_base_url"
    )
    big = {
        "filename": "big.bin",
        "storage_path": "base64:" + "A" * (4 * (1024 * 1024 // 3 + 2)),
    }  # 1 MiB + 5 bytes
    assert (
        reason(good(attachments=[big]), admin(attachment_max_mb=1))
        == "invalid attachment[0]: larger than 1 MB"
    )
    assert accepted(good(attachments=[big]), admin(attachment_max_mb=2))


# --- speed ----------------------------------------------------------------------------------


def test_validation_speed() -> None:
    items = [
        good(id=f"MSG-{i}", tenant_id=_DROP, to=[f"ann{i}@example.org", f"bob{i}@example.net"])
        for i in range(20_000)
    ]
    env = Envelope(items, None, "acme")
    started = time.process_time()
    result = validate_batch(env, admin(envelope_tenant="acme"))
    elapsed = time.process_time() - started
    assert len(result.accepted) == len(items)
    print(
        f"\nvalidate_batch: {elapsed / len(items) * 1e6:.1f} µs of CPU per typical message "
        f"({len(items) / elapsed:,.0f} messages/s)"
    )
