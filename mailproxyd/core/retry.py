"""The retry ladder (reference §10.4).

After a temporary (or uncertain) failure a message either waits for its next attempt —
``deferred_ts = now + round(d × (1 + u))`` with ``d`` the ladder step for the new retry count and
``u`` uniform in ``[−jitter, +jitter]`` — or, when ``retry_count`` has reached ``max_retries``,
fails with ``Max retries (<N>) exceeded: <last error text>``. Randomness is an argument, so the
arithmetic is tested exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RetryDecision", "exhausted_text", "next_attempt"]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Either ``retry`` (with the new ``retry_count`` and ``deferred_ts``) or a final error."""

    retry: bool
    retry_count: int
    deferred_ts: float | None = None
    error_text: str | None = None


def exhausted_text(max_retries: int, last_error: str) -> str:
    """The final error text once the retries are used up."""
    return f"Max retries ({max_retries}) exceeded: {last_error}"


def next_attempt(
    *,
    now: float,
    retry_count: int,
    max_retries: int,
    delays: Sequence[int],
    jitter: float,
    error_text: str,
    u: float | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide what follows a temporary failure of a message that has ``retry_count`` retries.

    ``u`` fixes the jitter draw (clamped to ``[−jitter, +jitter]``); otherwise it is drawn from
    ``rng`` (default: the module's generator). ``deferred_ts`` is ``now`` plus whole seconds.
    """
    if retry_count >= max_retries:
        return RetryDecision(False, retry_count, error_text=exhausted_text(max_retries, error_text))
    if not delays:
        raise ValueError("the retry ladder needs at least one delay")
    new_count = retry_count + 1
    delay = delays[min(new_count - 1, len(delays) - 1)]
    if u is None:
        u = (rng or random).uniform(-jitter, jitter)
    else:
        u = max(-jitter, min(jitter, u))
    return RetryDecision(True, new_count, deferred_ts=now + round(delay * (1 + u)))
