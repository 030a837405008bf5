"""Rate-limit arithmetic (§9)."""

from __future__ import annotations

from mailproxyd.core.ratelimit import (
    Window,
    account_windows,
    decide,
    free_time,
    tenant_windows,
)

T0 = 1767225600.0
MINUTE = Window("limit_per_minute", 60, 3)


def test_contract_example() -> None:
    slots = [T0 + 0.2, T0 + 0.3, T0 + 0.4]
    d = decide([(MINUTE, slots)], T0 + 0.5)
    assert not d.admit and d.free_at == 1767225661 and d.blocking == ("limit_per_minute",)
    # At that time all three have left the window: three more are admitted, the fourth waits.
    later = 1767225661.0
    for admitted in range(3):
        assert decide([(MINUTE, [*slots, *[later] * admitted])], later).admit
    d = decide([(MINUTE, [*slots, later, later, later])], later)
    assert not d.admit and d.free_at == 1767225721


def test_room_left_admits() -> None:
    assert decide([(MINUTE, [T0, T0 + 1])], T0 + 2).admit
    assert decide([], T0).admit


def test_window_is_half_open() -> None:
    # A slot counts while t − W < s ≤ t: at exactly s + W it has left.
    assert free_time(MINUTE, [T0, T0, T0], T0 + 59.999) == T0 + 60
    assert free_time(MINUTE, [T0, T0, T0], T0 + 60) is None
    assert decide([(MINUTE, [T0, T0, T0])], T0 + 30).free_at == int(T0) + 60
    # Slots in the future (clock skew between nodes) do not count yet.
    assert free_time(MINUTE, [T0 + 5, T0 + 5, T0 + 5], T0) is None


def test_more_slots_than_limit_uses_the_slot_that_brings_count_below() -> None:
    # Limit lowered to 3 after 5 were counted: 3 must leave before one is free.
    slots = [T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5]
    assert free_time(MINUTE, slots, T0 + 10) == T0 + 3 + 60


def test_maximum_over_blocking_windows_rounded_up() -> None:
    hour = Window("limit_per_hour", 3600, 2)
    slots = [T0 + 0.5, T0 + 1800.25]
    now = T0 + 1800.5
    minute_slots = [T0 + 1800.25, T0 + 1800.3, T0 + 1800.4]
    d = decide([(MINUTE, minute_slots), (hour, slots)], now)
    assert not d.admit and set(d.blocking) == {"limit_per_minute", "limit_per_hour"}
    assert d.free_at == int(T0) + 3601  # 0.5 + 3600 → rounded up


def test_reject_only_for_account_windows() -> None:
    tenant = Window("tenant_hourly", 3600, 1, "tenant")
    d = decide([(tenant, [T0])], T0 + 1, limit_behavior="reject")
    assert not d.admit and not d.reject  # tenant limits always defer
    d = decide([(tenant, [T0]), (MINUTE, [T0] * 3)], T0 + 1, limit_behavior="reject")
    assert d.reject


def test_windows_from_settings() -> None:
    acc = {"limit_per_minute": 30, "limit_per_hour": 0, "limit_per_day": None}
    assert account_windows(acc) == [Window("limit_per_minute", 60, 30)]
    assert tenant_windows({"hourly": 100, "daily": 1000}) == [
        Window("tenant_hourly", 3600, 100, "tenant"),
        Window("tenant_daily", 86400, 1000, "tenant"),
    ]
    assert tenant_windows(None) == []


def test_whole_second_free_time_is_not_pushed_by_float_noise() -> None:
    slots = [1767225600.1 + 0.9] * 3  # 1767225601.0 give or take a float ulp
    assert decide([(MINUTE, slots)], 1767225602).free_at == 1767225661
