"""How rejection reasons show offending values (reference §6.4)."""

from __future__ import annotations

from mailproxyd.core.reasons import (
    invalid_attachment,
    invalid_field_value,
    invalid_header,
    show_value,
    too_many_recipients,
)


def test_show_value() -> None:
    assert show_value("bob@") == "bob@"
    assert show_value(5) == "5"
    assert show_value(1.5) == "1.5"
    assert show_value(True) == "true"
    assert show_value(None) == "null"
    assert show_value(["a", 1]) == '["a",1]'
    assert show_value("a\r\nb") == "a\\r\\nb"
    assert show_value("x" * 500) == "x" * 200
    assert show_value("é" * 300) == "é" * 200
    assert show_value(object()).startswith("<object")


def test_templates() -> None:
    assert invalid_field_value("priority", "urgent") == "invalid priority: urgent"
    assert invalid_header("X-A\n") == "invalid header: X-A\\n"
    assert too_many_recipients(1001, 1000) == "too many recipients: 1001 (max 1000)"
    assert (
        invalid_attachment(0, "unknown field content")
        == "invalid attachment[0]: unknown field content"
    )
