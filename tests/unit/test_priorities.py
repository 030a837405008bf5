"""Priority values and labels (reference §1.3, §6.6)."""

from __future__ import annotations

import pytest

from mailproxyd.core.priorities import DEFAULT_PRIORITY, LABELS, parse_priority, priority_label


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (3, 3),
        ("0", 0),
        ("3", 3),
        ("immediate", 0),
        ("HIGH", 1),
        ("Medium", 2),
        ("low", 3),
    ],
)
def test_accepted(value: object, expected: int) -> None:
    assert parse_priority(value) == expected


@pytest.mark.parametrize(
    "value", [5, -1, 4, 1.5, 1.0, True, False, "urgent", "", " 1", "4", None, [1], {"p": 1}]
)
def test_rejected(value: object) -> None:
    assert parse_priority(value) is None


def test_labels() -> None:
    assert DEFAULT_PRIORITY == 2
    assert [priority_label(v) for v in range(4)] == list(LABELS)
