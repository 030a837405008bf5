"""Client-data bounds: nesting depth and integer ranges (reference §4.4)."""

from __future__ import annotations

from mailproxyd.core.limits import MAX_DEPTH, MAX_INT, is_int_between, nesting_depth, too_deep


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
