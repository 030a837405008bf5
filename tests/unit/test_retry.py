"""Retry ladder (reference §10.4)."""

from __future__ import annotations

import random

import pytest

from mailproxyd.core.retry import exhausted_text, next_attempt

DELAYS = (60, 300, 900, 3600, 7200)
NOW = 1767225600.0


@pytest.mark.parametrize(
    ("retry_count", "u", "expected"),
    [
        (0, 0.0, 60),
        (0, -0.1, 54),
        (0, 0.1, 66),
        (1, 0.0, 300),
        (2, -0.1, 810),
        (3, 0.1, 3960),
        (4, 0.05, 7560),
        (4, 0.5, 7920),  # u is clamped to the jitter
    ],
)
def test_ladder_step_and_jitter(retry_count: int, u: float, expected: int) -> None:
    d = next_attempt(
        now=NOW,
        retry_count=retry_count,
        max_retries=5,
        delays=DELAYS,
        jitter=0.1,
        error_text="x",
        u=u,
    )
    assert d.retry and d.retry_count == retry_count + 1
    assert d.deferred_ts == NOW + expected


def test_last_delay_repeats_beyond_the_ladder() -> None:
    d = next_attempt(
        now=NOW, retry_count=8, max_retries=10, delays=(60, 120), jitter=0, error_text="x"
    )
    assert d.deferred_ts == NOW + 120 and d.retry_count == 9


def test_exhausted() -> None:
    text = "RCPT TO: all recipients refused: 451 4.2.1 Mailbox busy"
    d = next_attempt(
        now=NOW, retry_count=5, max_retries=5, delays=DELAYS, jitter=0.1, error_text=text
    )
    assert not d.retry and d.deferred_ts is None and d.retry_count == 5
    assert (
        d.error_text
        == "Max retries (5) exceeded: RCPT TO: all recipients refused: 451 4.2.1 Mailbox busy"
    )
    assert exhausted_text(5, text) == d.error_text


def test_zero_retries_makes_first_failure_final() -> None:
    d = next_attempt(
        now=NOW, retry_count=0, max_retries=0, delays=DELAYS, jitter=0.1, error_text="t"
    )
    assert not d.retry and d.error_text == "Max retries (0) exceeded: t"


def test_defaults_give_six_attempts_within_the_contract_bounds() -> None:
    rng = random.Random(7)
    bounds = [(54, 66), (270, 330), (810, 990), (3240, 3960), (6480, 7920)]
    for _ in range(200):
        count, attempts, now = 0, 1, NOW
        while True:
            d = next_attempt(
                now=now,
                retry_count=count,
                max_retries=5,
                delays=DELAYS,
                jitter=0.1,
                error_text="t",
                rng=rng,
            )
            if not d.retry:
                break
            assert d.deferred_ts is not None
            lo, hi = bounds[count]
            assert lo <= d.deferred_ts - now <= hi
            count, now, attempts = d.retry_count, d.deferred_ts, attempts + 1
        assert attempts == 6
