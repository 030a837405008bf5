"""Message priorities (reference §1.3, §6.6): values, labels and their parsing.

The wire accepts integers 0–3, the strings ``"0"``–``"3"`` and the labels in any letter case;
records and reports always carry the integer. Booleans are refused even though ``True == 1``
in Python, and so are floats, even integral ones: ``1.5`` and ``1.0`` are not priorities.
"""

from __future__ import annotations

from typing import Final

IMMEDIATE: Final = 0
HIGH: Final = 1
MEDIUM: Final = 2
LOW: Final = 3

#: The built-in ``GMP_DEFAULT_PRIORITY``.
DEFAULT_PRIORITY: Final = MEDIUM

LABELS: Final[tuple[str, ...]] = ("immediate", "high", "medium", "low")

# Every accepted string form, lower-cased, mapped to its value; one dict lookup per message.
_FROM_TEXT: Final[dict[str, int]] = {
    **{label: value for value, label in enumerate(LABELS)},
    **{str(value): value for value in range(len(LABELS))},
}


def parse_priority(value: object) -> int | None:
    """The integer priority for an accepted wire value, ``None`` for anything else."""
    kind = type(value)
    if kind is int:
        return value if 0 <= value <= 3 else None  # type: ignore[operator, return-value]
    if kind is str:
        return _FROM_TEXT.get(value.lower())  # type: ignore[attr-defined]
    # bool is a subclass of int, and int subclasses other than bool do not come out of JSON:
    # refusing every other type keeps `true` from meaning "high".
    return None


def priority_label(value: int) -> str:
    """The label of an integer priority (``2`` → ``"medium"``)."""
    return LABELS[value]
