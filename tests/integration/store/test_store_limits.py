"""Rate-limit slots (reference §9) and session slots (reference §8.4); the window arithmetic itself is tested in
``tests/unit/test_ratelimit.py``."""

from __future__ import annotations

import pytest

from mailproxyd.store import Database, ratelimit, sessions

from .conftest import NOW, setup_tenant


def test_minute_limit_example_of_the_contract(acme: Database) -> None:
    with acme.transaction() as tx:
        granted = [
            ratelimit.reserve(tx, "acme", "main", None, t, per_minute=3)
            for t in (NOW + 0.2, NOW + 0.3, NOW + 0.4)
        ]
        assert all(r.granted and r.slot_id for r in granted)
        blocked = ratelimit.reserve(tx, "acme", "main", None, NOW + 0.5, per_minute=3)
        assert not blocked.granted and blocked.blocking == ["account_minute"]
        assert blocked.free_at == pytest.approx(NOW + 60.2)
        # The window is (t − 60, t]: at exactly slot + 60 the oldest slot has left.
        assert ratelimit.reserve(tx, "acme", "main", None, NOW + 60.2, per_minute=3).granted
        assert not ratelimit.reserve(tx, "acme", "main", None, NOW + 60.25, per_minute=3).granted


def test_slots_stamped_after_now_still_count(acme: Database) -> None:
    # A process whose clock reads earlier (another node, or a time read before the lock was
    # taken) must see admissions already made, or it would overshoot.
    with acme.transaction() as tx:
        for _ in range(3):
            assert ratelimit.reserve(tx, "acme", "main", None, NOW + 5, per_minute=3).granted
        blocked = ratelimit.reserve(tx, "acme", "main", None, NOW, per_minute=3)
        assert not blocked.granted and blocked.free_at == NOW + 65


def test_several_windows_and_tenant_limits(database: Database) -> None:
    setup_tenant(database, "acme", ("a", "b"))
    with database.transaction() as tx:
        for i in range(2):
            assert ratelimit.reserve(
                tx, "acme", "a", None, NOW + i, per_hour=2, tenant_hourly=3
            ).granted
        blocked = ratelimit.reserve(
            tx, "acme", "a", None, NOW + 10, per_minute=5, per_hour=2, tenant_hourly=3
        )
        assert blocked.blocking == ["account_hour"] and blocked.free_at == NOW + 3600
        assert ratelimit.reserve(tx, "acme", "b", None, NOW + 20, tenant_hourly=3).granted
        # Tenant-wide: account b is blocked by what a and b used together.
        blocked = ratelimit.reserve(
            tx, "acme", "b", None, NOW + 30, per_day=10, tenant_hourly=3, tenant_daily=3
        )
        assert blocked.blocking == ["tenant_hour", "tenant_day"]
        assert blocked.free_at == NOW + 86400  # the latest of the blocking windows
        # Unlimited (0 / None) accounts are never blocked.
        assert ratelimit.reserve(tx, "acme", "a", None, NOW + 40, per_minute=0).granted


def test_unlimited_slots_in_one_statement_still_count_for_a_later_limit(acme: Database) -> None:
    with acme.transaction() as tx:
        slots = ratelimit.reserve_unlimited(tx, "acme", "main", [30, 10, 20], NOW)
        assert len(set(slots)) == 3
        # A limit set afterwards sees these three sends (reference §9: every admission is counted).
        blocked = ratelimit.reserve(tx, "acme", "main", 40, NOW + 1, per_minute=3)
        assert not blocked.granted and blocked.free_at == NOW + 60
        # The ids follow the order of the pks: releasing the one of pk 10 frees one place.
        ratelimit.release(tx, slots[1])
        assert ratelimit.reserve(tx, "acme", "main", 40, NOW + 1, per_minute=3).granted
        pks = {
            row["slot_id"]: row["message_pk"]
            for row in tx.raw("SELECT slot_id, message_pk FROM rate_slots")
        }
        assert pks[slots[0]] == 30 and pks[slots[2]] == 20 and slots[1] not in pks
        assert ratelimit.reserve_unlimited(tx, "acme", "main", [], NOW) == []


def test_release_and_prune(acme: Database) -> None:
    with acme.transaction() as tx:
        slot = ratelimit.reserve(tx, "acme", "main", 1, NOW, per_minute=1)
        assert slot.granted and slot.slot_id is not None
        assert not ratelimit.reserve(tx, "acme", "main", 2, NOW + 1, per_minute=1).granted
        ratelimit.release(tx, slot.slot_id)
        assert ratelimit.reserve(tx, "acme", "main", 2, NOW + 1, per_minute=1).granted
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
