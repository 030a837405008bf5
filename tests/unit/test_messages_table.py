"""The message item is validated from its field table (issue 22: one source for validation and OpenAPI).

``core/models/message.MESSAGE_FIELDS`` also generates the OpenAPI description of an item, so a
bound changed in the table must change what enqueue accepts: each test replaces one field of
the table (monkeypatch) and shows the validator follows it, with the reference's reason.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from mailproxyd.core import messages
from mailproxyd.core import reasons as R
from mailproxyd.core.limits import MAX_INT
from mailproxyd.core.messages import Accepted, Rejected, TenantView, ValidationContext
from mailproxyd.core.models import message as message_model
from mailproxyd.core.models.fields import Field

TENANTS = {"acme": TenantView("smtp1", frozenset({"smtp1", "smtp-long-name"}), True)}


def _ctx() -> ValidationContext:
    return ValidationContext(caller_tenant=None, lookup=TENANTS.get)


def _item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "MSG-001",
        "tenant_id": "acme",
        "from": "Shop <orders@acme.example>",
        "to": ["ann@example.org"],
        "subject": "Your order",
        "body": "Thanks!",
    }
    item.update(overrides)
    return item


def _outcome(**overrides: Any) -> Accepted | Rejected:
    return messages.validate_item(_item(**overrides), _ctx())


def _reason(**overrides: Any) -> tuple[str, int]:
    outcome = _outcome(**overrides)
    assert isinstance(outcome, Rejected), outcome
    return outcome.reason, outcome.rule


def _ok(**overrides: Any) -> Accepted:
    outcome = _outcome(**overrides)
    assert isinstance(outcome, Accepted), outcome
    return outcome


def _replace(monkeypatch: pytest.MonkeyPatch, name: str, field: Field) -> None:
    fields = tuple(field if f.name == name else f for f in message_model.MESSAGE_FIELDS)
    assert fields != message_model.MESSAGE_FIELDS
    monkeypatch.setattr(message_model, "MESSAGE_FIELDS", fields)


def _field(name: str) -> Field:
    return next(f for f in message_model.MESSAGE_FIELDS if f.name == name)


def test_deferred_ts_maximum_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _field("deferred_ts").maximum == MAX_INT
    assert _ok(deferred_ts=5000).deferred_ts == 5000
    _replace(monkeypatch, "deferred_ts", dataclasses.replace(_field("deferred_ts"), maximum=4000))
    assert _ok(deferred_ts=4000).deferred_ts == 4000
    assert _reason(deferred_ts=4001) == ("invalid deferred_ts: 4001", 24)
    monkeypatch.undo()
    assert _ok(deferred_ts=4001).deferred_ts == 4001


def test_deferred_ts_minimum_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _replace(monkeypatch, "deferred_ts", dataclasses.replace(_field("deferred_ts"), minimum=100))
    assert _reason(deferred_ts=99.5) == ("invalid deferred_ts: 99.5", 24)
    assert _ok(deferred_ts=100).deferred_ts == 100


def test_id_length_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ok(id="x" * 255).id == "x" * 255
    _replace(monkeypatch, "id", dataclasses.replace(_field("id"), max_length=8))
    assert _ok(id="12345678").id == "12345678"
    outcome = _outcome(id="123456789")
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.rule, outcome.id) == (R.INVALID_ID, 3, None)


def test_batch_code_length_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _replace(monkeypatch, "batch_code", dataclasses.replace(_field("batch_code"), max_length=4))
    assert _ok(batch_code="abcd").batch_code == "abcd"
    assert _reason(batch_code="abcde") == ("invalid batch_code: abcde", 25)
    assert _reason(batch_code="*") == ("invalid batch_code: *", 25)  # the code's rule stays


def test_content_type_choices_follow_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ok(content_type="Text/HTML").message["content_type"] == "html"
    field = dataclasses.replace(_field("content_type"), enum=("plain", "text/plain"))
    _replace(monkeypatch, "content_type", field)
    assert _ok(content_type="TEXT/plain").message["content_type"] == "plain"
    assert _reason(content_type="html") == ("invalid content_type: html", 19)


def test_subject_pattern_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reason(subject="a\nb") == (R.INVALID_SUBJECT_HEADER, 17)
    _replace(monkeypatch, "subject", dataclasses.replace(_field("subject"), pattern=r"^[a-z ]*$"))
    assert _reason(subject="Your order") == (R.INVALID_SUBJECT_HEADER, 17)
    assert _ok(subject="your order").message["subject"] == "your order"


def test_account_id_length_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ok(account_id="smtp-long-name").account_id == "smtp-long-name"
    _replace(monkeypatch, "account_id", dataclasses.replace(_field("account_id"), max_length=5))
    assert _ok(account_id="smtp1").account_id == "smtp1"
    assert _reason(account_id="smtp-long-name") == (R.ACCOUNT_NOT_FOUND, 8)


def test_recipient_total_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    to = _field("to")
    assert to.variants is not None
    array = next(v for v in to.variants if v.kind == "array")
    assert array.max_length == message_model.MAX_RECIPIENTS
    variants = tuple(dataclasses.replace(v, max_length=2) if v is array else v for v in to.variants)
    smaller = dataclasses.replace(to, variants=variants)
    _replace(monkeypatch, "to", smaller)
    _ok(to=["a@example.org"], cc=["b@example.org"])
    assert _reason(to=["a@example.org", "b@example.org"], bcc="c@example.org") == (
        "too many recipients: 3 (max 2)",
        14,
    )


def test_header_rules_follow_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    headers = _field("headers")
    assert headers.keys is not None
    _ok(headers={"X-Campaign": "spring"})
    shorter = dataclasses.replace(headers, keys=dataclasses.replace(headers.keys, max_length=5))
    _replace(monkeypatch, "headers", shorter)
    _ok(headers={"X-Cam": "spring"})
    assert _reason(headers={"X-Campaign": "spring"}) == ("invalid header: X-Campaign", 21)


def test_message_id_pattern_is_the_validators() -> None:
    """The table's Message-ID pattern is exactly what enqueue accepts (bracket pairs included)."""
    pattern = re.compile(_field("message_id").pattern or "")
    for value in ("a@b", "<a@b>", "<a@b", "a@b>", "a@b@c", "<>", "a b@c", "@b", "a@"):
        outcome = _outcome(message_id=value)
        assert isinstance(outcome, Accepted) == (pattern.fullmatch(value) is not None), value
