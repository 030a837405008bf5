"""Rate-limit slots (reference §9) and session slots (reference §8.4); the window arithmetic itself is tested in
``tests/unit/test_ratelimit.py``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mailproxyd.core import ratelimit as core_ratelimit
from mailproxyd.core.ratelimit import Counted, Decision
from mailproxyd.store import Database, ratelimit, sessions

from .conftest import NOW, rate_windows, setup_tenant


def test_minute_limit_example_of_the_contract(acme: Database) -> None:
    with acme.transaction() as tx:
        granted = [
            ratelimit.reserve(tx, "acme", "main", None, t, rate_windows(limit_per_minute=3))
            for t in (NOW + 0.2, NOW + 0.3, NOW + 0.4)
        ]
        assert all(r.granted and r.slot_id for r in granted)
        blocked = ratelimit.reserve(
            tx, "acme", "main", None, NOW + 0.5, rate_windows(limit_per_minute=3)
        )
        assert not blocked.granted and blocked.blocking == ("limit_per_minute",)
        assert blocked.free_at == NOW + 61  # 60.2 rounded up to the whole second (reference §9)
        # The window is (t − 60, t]: at exactly slot + 60 the oldest slot has left.
        assert ratelimit.reserve(
            tx, "acme", "main", None, NOW + 60.2, rate_windows(limit_per_minute=3)
        ).granted
        assert not ratelimit.reserve(
            tx, "acme", "main", None, NOW + 60.25, rate_windows(limit_per_minute=3)
        ).granted


def test_slots_stamped_after_now_still_count(acme: Database) -> None:
    # A process whose clock reads earlier (another node, or a time read before the lock was
    # taken) must see admissions already made, or it would overshoot.
    with acme.transaction() as tx:
        for _ in range(3):
            assert ratelimit.reserve(
                tx, "acme", "main", None, NOW + 5, rate_windows(limit_per_minute=3)
            ).granted
        blocked = ratelimit.reserve(tx, "acme", "main", None, NOW, rate_windows(limit_per_minute=3))
        assert not blocked.granted and blocked.free_at == NOW + 65


def test_several_windows_and_tenant_limits(database: Database) -> None:
    setup_tenant(database, "acme", ("a", "b"))
    with database.transaction() as tx:
        for i in range(2):
            assert ratelimit.reserve(
                tx, "acme", "a", None, NOW + i, rate_windows(limit_per_hour=2, hourly=3)
            ).granted
        blocked = ratelimit.reserve(
            tx,
            "acme",
            "a",
            None,
            NOW + 10,
            rate_windows(limit_per_minute=5, limit_per_hour=2, hourly=3),
        )
        assert blocked.blocking == ("limit_per_hour",) and blocked.free_at == NOW + 3600
        assert ratelimit.reserve(tx, "acme", "b", None, NOW + 20, rate_windows(hourly=3)).granted
        # Tenant-wide: account b is blocked by what a and b used together.
        blocked = ratelimit.reserve(
            tx, "acme", "b", None, NOW + 30, rate_windows(limit_per_day=10, hourly=3, daily=3)
        )
        assert blocked.blocking == ("tenant_hourly", "tenant_daily")
        assert blocked.free_at == NOW + 86400  # the latest of the blocking windows
        # Unlimited (0 / None) accounts are never blocked.
        assert ratelimit.reserve(
            tx, "acme", "a", None, NOW + 40, rate_windows(limit_per_minute=0)
        ).granted


def test_unlimited_slots_in_one_statement_still_count_for_a_later_limit(acme: Database) -> None:
    with acme.transaction() as tx:
        slots = ratelimit.reserve_unlimited(tx, "acme", "main", [30, 10, 20], NOW)
        assert len(set(slots)) == 3
        # A limit set afterwards sees these three sends (reference §9: every admission is counted).
        blocked = ratelimit.reserve(
            tx, "acme", "main", 40, NOW + 1, rate_windows(limit_per_minute=3)
        )
        assert not blocked.granted and blocked.free_at == NOW + 60
        # The ids follow the order of the pks: releasing the one of pk 10 frees one place.
        ratelimit.release(tx, slots[1])
        assert ratelimit.reserve(
            tx, "acme", "main", 40, NOW + 1, rate_windows(limit_per_minute=3)
        ).granted
        pks = {
            row["slot_id"]: row["message_pk"]
            for row in tx.raw("SELECT slot_id, message_pk FROM rate_slots")
        }
        assert pks[slots[0]] == 30 and pks[slots[2]] == 20 and slots[1] not in pks
        assert ratelimit.reserve_unlimited(tx, "acme", "main", [], NOW) == []


def test_release_and_prune(acme: Database) -> None:
    with acme.transaction() as tx:
        slot = ratelimit.reserve(tx, "acme", "main", 1, NOW, rate_windows(limit_per_minute=1))
        assert slot.granted and slot.slot_id is not None
        assert not ratelimit.reserve(
            tx, "acme", "main", 2, NOW + 1, rate_windows(limit_per_minute=1)
        ).granted
        ratelimit.release(tx, slot.slot_id)
        assert ratelimit.reserve(
            tx, "acme", "main", 2, NOW + 1, rate_windows(limit_per_minute=1)
        ).granted
        assert ratelimit.prune(tx, NOW + 86400) == 0
        assert ratelimit.prune(tx, NOW + 1 + 86400) == 1


def test_session_slots(acme: Database) -> None:
    with acme.transaction() as tx:
        first = sessions.acquire(tx, "acme", "main", "node/s0", 2, NOW, NOW + 30)
        second = sessions.acquire(tx, "acme", "main", "node/s1", 2, NOW, NOW + 30)
        assert first is not None and second is not None
        assert sessions.acquire(tx, "acme", "main", "node/s2", 2, NOW, NOW + 30) is None
        sessions.release(tx, first)
        third = sessions.acquire(tx, "acme", "main", "node/s2", 2, NOW, NOW + 30)
        assert third is not None
        assert sessions.renew(tx, second, "node/s1", NOW + 100)
        assert not sessions.renew(tx, second, "someone", NOW + 100)
        # At NOW + 31 the slot of s2 has lapsed; s1's renewed one still counts.
        assert sessions.acquire(tx, "acme", "main", "x/s", 2, NOW + 31, NOW + 60) is not None
        assert sessions.acquire(tx, "acme", "main", "y/s", 2, NOW + 31, NOW + 60) is None
        assert sessions.release_owner(tx, "node") == 1
        assert sessions.expire(tx, NOW + 61) == 1


def test_admission_follows_the_pure_rule(acme: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # Production admits through core.ratelimit.decide: a double with other arithmetic (twice
    # the limit, then a fixed free time and rejection) changes what the store grants.
    calls: list[list[Counted]] = []

    def double(windows: Sequence[Counted], *, limit_behavior: str = "defer") -> Decision:
        calls.append(list(windows))
        if all(held.count < 2 * held.window.limit for held in windows):
            return Decision(True)
        return Decision(False, int(NOW) + 12345, ("double",), limit_behavior == "reject")

    monkeypatch.setattr(core_ratelimit, "decide", double)
    windows = rate_windows(limit_per_minute=3)
    with acme.transaction() as tx:
        granted = [
            ratelimit.reserve(tx, "acme", "main", None, NOW + i, windows).granted for i in range(6)
        ]
        assert granted == [True] * 6  # the real rule would have stopped at 3
        blocked = ratelimit.reserve(
            tx, "acme", "main", None, NOW + 7, windows, limit_behavior="reject"
        )
    assert not blocked.granted and blocked.free_at == int(NOW) + 12345
    assert blocked.blocking == ("double",) and blocked.reject
    assert [held.count for held in calls[-1]] == [6] and calls[-1][0].window == windows[0]
