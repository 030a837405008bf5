"""The dispatch cycle's seam to the SMTP driver (reference §10, §18.3).

The cycle needs of SMTP: a pool per sender process, one classified attempt per message that
can be cut off at the shutdown deadline, closing idle connections after their ``ttl`` and
closing everything with ``QUIT`` at shutdown. ``drivers.smtp.SmtpPool`` provides the blocking
attempt; this module runs it in a worker thread that a cancelled caller may leave behind
(``abandon_on_cancel``), so a stalled server cannot hold a stopping sender past its deadline.
An abandoned attempt finishes on its own in the thread; the pool closes its connection if the
pool was closed meanwhile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from mailproxyd.core.mime import Built
from mailproxyd.core.smtp_outcome import Outcome
from mailproxyd.drivers.smtp import AttemptResult, SmtpAccount, SmtpPool


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """A classified attempt and what the delivery log line needs."""

    outcome: Outcome
    duration_ms: int
    accepted_recipients: int


def make_pool(settings: Any) -> SmtpPool:
    """The SMTP connection pool of one sender process (``GMP_SMTP_TIMEOUT``, reference §10.2)."""
    return SmtpPool(
        timeout=float(settings.smtp_timeout),
        allow_private=bool(settings.allow_private_networks),
    )


def pool_key(account: Mapping[str, Any]) -> tuple[str, str]:
    """Connections are pooled per account: ``(tenant_id, id)`` (reference §1.1: never shared)."""
    return (str(account["tenant_id"]), str(account["id"]))


async def deliver(pool: SmtpPool, account: Mapping[str, Any], built: Built) -> Delivery:
    """Send ``built`` through ``account``'s pooled connections; the reference §10.3 outcome."""
    smtp_account = SmtpAccount.from_mapping(account, allow_private=pool.allow_private)
    result = await trio.to_thread.run_sync(
        pool.send_blocking,
        pool_key(account),
        smtp_account,
        built,
        limiter=pool.limiter,
        abandon_on_cancel=True,
    )
    return Delivery(result.outcome, result.duration_ms, result.accepted_recipients)


async def deliver_many(
    pool: SmtpPool,
    account: Mapping[str, Any],
    builts: Sequence[Built],
    results: list[Delivery],
    go_on: Callable[[], bool],
) -> None:
    """Send ``builts`` in order over one of ``account``'s sessions, in one trip to a thread.

    ``results`` receives one ``Delivery`` per attempt that ended; ``go_on()`` is asked before
    each message (False: the rest are not attempted). When the caller is cancelled the
    thread is left behind; ``results`` then holds the attempts that had ended by then, and
    ``go_on`` must answer False from then on, so the thread starts no further message.
    """
    raw: list[AttemptResult] = []
    try:
        await trio.to_thread.run_sync(
            pool.send_many_blocking,
            pool_key(account),
            SmtpAccount.from_mapping(account),
            builts,
            raw,
            go_on,
            limiter=pool.limiter,
            abandon_on_cancel=True,
        )
    finally:
        results.extend(Delivery(r.outcome, r.duration_ms, r.accepted_recipients) for r in list(raw))


async def sweep(pool: SmtpPool) -> int:
    """Close idle connections older than their account's ``ttl`` (reference §10.2)."""
    return await pool.sweep()


async def close_account(pool: SmtpPool, tenant_id: str, account_id: str) -> None:
    """Close the account's idle connections (its session slots are being given back).

    Uses the pool's per-account close when it offers one; otherwise idle connections stay
    until their ``ttl`` (see the ``max_concurrent`` note in ``account``).
    """
    close = getattr(pool, "close_idle", None)
    if close is not None:
        await close((tenant_id, account_id))


async def close_pool(pool: SmtpPool) -> None:
    """Close every pooled connection with ``QUIT`` (shutdown, reference §18.3 step 4)."""
    await pool.aclose()
