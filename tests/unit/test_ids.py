"""Identifier rules of reference §0."""

from __future__ import annotations

import pytest

from mailproxyd.core.ids import (
    BATCH_CODE_PROBLEM,
    IDENTIFIER_PROBLEM,
    check_batch_code,
    check_identifier,
    is_batch_code,
    is_identifier,
    is_instance_name,
    is_message_id,
)
from mailproxyd.errors import ValidationFailed


@pytest.mark.parametrize("value", ["a", "acme", "smtp-1", "A.b_c-d", "0", "x" * 64, "9lives"])
def test_identifiers_accepted(value: str) -> None:
    assert is_identifier(value)


@pytest.mark.parametrize(
    "value",
    ["", "-a", "_a", ".a", "x" * 65, "a b", "a/b", "ä", "a\n", "a:b", 5, None, ["a"], "a\u0660"],
)
def test_identifiers_rejected(value: object) -> None:
    assert not is_identifier(value)


@pytest.mark.parametrize("value", ["m", "MSG-001", "with space", "ünïcode", "x" * 255, "<a@b>"])
def test_message_ids_accepted(value: str) -> None:
    assert is_message_id(value)


@pytest.mark.parametrize(
    "value", ["", "x" * 256, "a\tb", "a\rb", "a\nb", "a\x00", "a\x7f", 5, None]
)
def test_message_ids_rejected(value: object) -> None:
    assert not is_message_id(value)


@pytest.mark.parametrize("value", ["spring-2026", "a", "x" * 64, "with space", "**", "é"])
def test_batch_codes_accepted(value: str) -> None:
    assert is_batch_code(value)


@pytest.mark.parametrize("value", ["", "*", "a,b", "x" * 65, "a\tb", "a\x7f", 3, None])
def test_batch_codes_rejected(value: object) -> None:
    assert not is_batch_code(value)


def test_instance_names() -> None:
    assert is_instance_name("prod")
    assert not is_instance_name("start")
    assert not is_instance_name("version")
    assert not is_instance_name("-x")


def test_check_identifier_messages() -> None:
    assert check_identifier("id", "smtp1") == "smtp1"
    with pytest.raises(ValidationFailed) as missing:
        check_identifier("id", None)
    assert missing.value.errors == [("id", "required")]
    with pytest.raises(ValidationFailed) as bad:
        check_identifier("tenant_id", "a b")
    assert bad.value.errors == [("tenant_id", IDENTIFIER_PROBLEM)]
    assert str(bad.value) == f"tenant_id: {IDENTIFIER_PROBLEM}"


def test_check_batch_code_messages() -> None:
    assert check_batch_code("batch_code", "spring") == "spring"
    with pytest.raises(ValidationFailed) as bad:
        check_batch_code("batch_code", "*")
    assert bad.value.errors == [("batch_code", BATCH_CODE_PROBLEM)]
