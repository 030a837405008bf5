"""Rate-limit arithmetic (reference §9)."""

from __future__ import annotations

import pytest

from mailproxyd.core.ratelimit import (
    Counted,
    Decision,
    Window,
    account_windows,
    counted,
    decide,
    free_time,
    free_time_of_oldest,
    latest,
    slots_to_leave,
    tenant_windows,
    whole_second,
    window_start,
)

T0 = 1767225600.0
MINUTE = Window("limit_per_minute", 60, 3)


def _decide(
    windows: list[tuple[Window, list[float]]], now: float, limit_behavior: str = "defer"
) -> Decision:
    """``decide`` on every slot of each window, counted at ``now`` as the store counts them."""
    return decide([counted(w, slots, now) for w, slots in windows], limit_behavior=limit_behavior)


def test_contract_example() -> None:
    slots = [T0 + 0.2, T0 + 0.3, T0 + 0.4]
    d = _decide([(MINUTE, slots)], T0 + 0.5)
    assert not d.admit and d.free_at == 1767225661 and d.blocking == ("limit_per_minute",)
    # At that time all three have left the window: three more are admitted, the fourth waits.
    later = 1767225661.0
    for admitted in range(3):
        assert _decide([(MINUTE, [*slots, *[later] * admitted])], later).admit
    d = _decide([(MINUTE, [*slots, later, later, later])], later)
    assert not d.admit and d.free_at == 1767225721


def test_room_left_admits() -> None:
    assert _decide([(MINUTE, [T0, T0 + 1])], T0 + 2).admit
    assert _decide([], T0).admit


def test_window_is_half_open() -> None:
    # A slot counts while t − W < s ≤ t: at exactly s + W it has left.
    assert free_time(MINUTE, [T0, T0, T0], T0 + 59.999) == T0 + 60
    assert free_time(MINUTE, [T0, T0, T0], T0 + 60) is None
    assert _decide([(MINUTE, [T0, T0, T0])], T0 + 30).free_at == int(T0) + 60


def test_slots_stamped_after_now_count() -> None:
    # Admissions made by a process whose clock reads later (or that read its clock after this
    # one did) already happened: ignoring them would overshoot the limit.
    assert free_time(MINUTE, [T0 + 5, T0 + 5, T0 + 5], T0) == T0 + 65
    assert not _decide([(MINUTE, [T0, T0 + 1, T0 + 5])], T0 + 0.5).admit


def test_more_slots_than_limit_uses_the_slot_that_brings_count_below() -> None:
    # Limit lowered to 3 after 5 were counted: 3 must leave before one is free.
    slots = [T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5]
    assert free_time(MINUTE, slots, T0 + 10) == T0 + 3 + 60


def test_maximum_over_blocking_windows_rounded_up() -> None:
    hour = Window("limit_per_hour", 3600, 2)
    slots = [T0 + 0.5, T0 + 1800.25]
    now = T0 + 1800.5
    minute_slots = [T0 + 1800.25, T0 + 1800.3, T0 + 1800.4]
    d = _decide([(MINUTE, minute_slots), (hour, slots)], now)
    assert not d.admit and set(d.blocking) == {"limit_per_minute", "limit_per_hour"}
    assert d.free_at == int(T0) + 3601  # 0.5 + 3600 → rounded up


def test_reject_only_for_account_windows() -> None:
    tenant = Window("tenant_hourly", 3600, 1, "tenant")
    d = _decide([(tenant, [T0])], T0 + 1, limit_behavior="reject")
    assert not d.admit and not d.reject  # tenant limits always defer
    d = _decide([(tenant, [T0]), (MINUTE, [T0] * 3)], T0 + 1, limit_behavior="reject")
    assert d.reject


def test_windows_from_settings() -> None:
    acc = {"limit_per_minute": 30, "limit_per_hour": 0, "limit_per_day": -1}
    assert account_windows(acc) == [Window("limit_per_minute", 60, 30)]
    assert tenant_windows({"hourly": 100, "daily": 1000}) == [
        Window("tenant_hourly", 3600, 100, "tenant"),
        Window("tenant_daily", 86400, 1000, "tenant"),
    ]
    assert tenant_windows(None) == []


def test_whole_second_free_time_is_not_pushed_by_float_noise() -> None:
    slots = [1767225600.1 + 0.9] * 3  # 1767225601.0 give or take a float ulp
    assert _decide([(MINUTE, slots)], 1767225602).free_at == 1767225661


def test_free_time_from_the_count_and_the_oldest_slots() -> None:
    # What the store uses: it counts in SQL and fetches only the slots that must leave.
    assert free_time_of_oldest(MINUTE, 0, []) is None
    assert free_time_of_oldest(MINUTE, 2, [10.0, 11.0]) is None
    assert free_time_of_oldest(MINUTE, 3, [10.2]) == pytest.approx(70.2)
    # Limit lowered to 2 with 4 counted slots: the third-oldest must leave first.
    two = Window("limit_per_minute", 60, 2)
    assert free_time_of_oldest(two, 4, [1.0, 2.0, 3.0]) == 63.0
    assert slots_to_leave(two, 4) == 3 and slots_to_leave(two, 1) == 0
    with pytest.raises(ValueError):
        free_time_of_oldest(two, 4, [1.0])
    assert window_start(MINUTE, T0) == T0 - 60


def test_free_time_agrees_with_the_count_form() -> None:
    slots = sorted([T0 + 0.1 * i for i in range(12)] + [T0 - 61, T0 - 59.95])
    now = T0 + 2
    for limit in range(1, 16):
        window = Window("limit_per_minute", 60, limit)
        counted = [s for s in slots if s > window_start(window, now)]
        assert free_time(window, slots, now) == free_time_of_oldest(window, len(counted), counted)


def test_decide_needs_only_the_count_and_the_oldest_slots() -> None:
    # The store's form: 5 counted, limit 3, so the 3rd-oldest must leave.
    d = decide([Counted(MINUTE, 5, [T0 + 1, T0 + 2, T0 + 3.5])])
    assert not d.admit and d.free_at == int(T0) + 64 and d.blocking == ("limit_per_minute",)
    assert decide([Counted(MINUTE, 2)]).admit
    assert counted(MINUTE, [T0 + 5, T0 - 61, T0 + 1], T0) == Counted(MINUTE, 2, [T0 + 1, T0 + 5])


def test_latest_and_whole_second() -> None:
    assert latest([None, 5.0, 3.0]) == 5.0 and latest([None]) is None and latest([]) is None
    assert whole_second(T0 + 0.000_000_1) == int(T0) and whole_second(T0 + 0.2) == int(T0) + 1
