"""Bounds on what a client may send: JSON nesting depth and integer ranges (reference §4.4).

Every integer a client sends (body field, query parameter, control-socket parameter, the numbers
inside a cursor) has a range: the one its field gives, else 0 to 2^53 − 1. Beyond 2^53 − 1 a
number no longer survives a JSON double, and SQLite's INTEGER ends at 2^63 − 1, so such a value
could be neither stored nor read back faithfully.

Bodies and control-socket lines nested more than :data:`MAX_DEPTH` levels are refused at
decoding. The check is iterative, so it holds for any input the JSON parser accepted; every
recursive walk over client data after it is bounded by this depth.
"""

from __future__ import annotations

from typing import Any, Final

#: The largest integer any client value may hold (2^53 − 1, JSON's exact-integer limit).
MAX_INT: Final = 2**53 - 1

#: The deepest nesting of objects and arrays a request may have; ``{"a": 1}`` is 1 level.
MAX_DEPTH: Final = 32

DEPTH_PROBLEM: Final = f"nested more than {MAX_DEPTH} levels deep"


def nesting_depth(value: Any, stop_after: int = MAX_DEPTH) -> int:
    """Levels of objects and arrays in ``value`` (0 for a scalar), counted iteratively.

    Counting stops as soon as ``stop_after`` is passed: the result is then ``stop_after + 1``.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > stop_after:
                return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def too_deep(value: Any) -> bool:
    """True when ``value`` is nested more than :data:`MAX_DEPTH` levels."""
    return nesting_depth(value) > MAX_DEPTH


def could_be_deep(raw: bytes | str) -> bool:
    """A cheap pre-check: False when ``raw`` has too few brackets to be nested too deeply."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > MAX_DEPTH
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


# ``[`` and ``{`` become ``(``, ``]`` and ``}`` become ``)``; all but them and ``"`` are deleted.
_BRACKETS: Final = bytes.maketrans(b"[{]}", b"(())")
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'[]{}"')


def json_too_deep(raw: bytes) -> bool:
    """:func:`too_deep` of the value the valid JSON text ``raw`` decodes to, from its text.

    No walk over the decoded value: the escaped backslashes and quotes are dropped, then
    every byte but the brackets and quotes, then the strings (every other piece between
    quotes). What is left is a balanced sequence of brackets whose height is the nesting
    depth. Each ``replace("()", "")`` takes one level off every part of it, so the text is
    nested more than :data:`MAX_DEPTH` levels exactly when :data:`MAX_DEPTH` rounds do not
    empty it. A few C-level passes over the bytes, several times cheaper than the walk.
    Meant for text the JSON decoder has already accepted.
    """
    if not could_be_deep(raw):
        return False
    text = raw
    if b"\\\\" in text:
        text = text.replace(b"\\\\", b"")
    if b'\\"' in text:
        text = text.replace(b'\\"', b"")
    structure = text.translate(_BRACKETS, _NOT_STRUCTURE)
    brackets = b"".join(structure.split(b'"')[::2])
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def range_text(minimum: int, maximum: int) -> str:
    """The reference §4.4 problem text of an integer out of range."""
    return f"must be an integer between {minimum} and {maximum}"


def is_int_between(value: Any, minimum: int = 0, maximum: int = MAX_INT) -> bool:
    """True for an int (not a bool) within ``[minimum, maximum]``."""
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum
