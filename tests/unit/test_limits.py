"""Client-data bounds: nesting depth and integer ranges (reference §4.4)."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from mailproxyd.core.limits import (
    MAX_DEPTH,
    MAX_INT,
    is_int_between,
    json_too_deep,
    nesting_depth,
    too_deep,
)


def _nest(levels: int) -> object:
    value: object = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def test_depth_counts_objects_and_arrays() -> None:
    assert nesting_depth(1) == 0
    assert nesting_depth({}) == 1
    assert nesting_depth({"a": [1, {"b": []}]}) == 4
    assert not too_deep(_nest(MAX_DEPTH))
    assert too_deep(_nest(MAX_DEPTH + 1))


def test_depth_is_iterative_far_past_the_recursion_limit() -> None:
    assert too_deep(_nest(200_000))


def test_integer_ranges() -> None:
    assert is_int_between(MAX_INT) and not is_int_between(MAX_INT + 1)
    assert not is_int_between(-1) and is_int_between(-1, -5, 5)
    assert not is_int_between(True) and not is_int_between(1.0)


# Strings full of what the text scan must not mistake for structure: brackets, quotes and
# backslashes, escaped in every way JSON allows.
_TRICKY = st.text(alphabet=st.sampled_from('[]{}"\\/abc\n\u00e9'), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=60,
)


@given(_JSON, st.integers(min_value=0, max_value=2 * MAX_DEPTH), st.booleans())
def test_the_text_scan_agrees_with_the_walk(value: object, extra: int, ascii_only: bool) -> None:
    for _ in range(extra):
        value = [value] if extra % 2 else {"k[": value}
    for raw in (
        msgspec.json.encode(value),
        json.dumps(value, ensure_ascii=ascii_only, indent=1).encode(),
    ):
        assert json_too_deep(raw) == too_deep(value), raw


def test_the_text_scan_at_the_limit() -> None:
    assert not json_too_deep(msgspec.json.encode(_nest(MAX_DEPTH)))
    assert json_too_deep(msgspec.json.encode(_nest(MAX_DEPTH + 1)))
    # Brackets inside strings and escaped quotes count for nothing.
    deep_text = '"' + "[" * 100 + '\\"' + "{" * 100 + '"'
    assert not json_too_deep(f'{{"a": {deep_text}, "b\\\\": [1]}}'.encode())
