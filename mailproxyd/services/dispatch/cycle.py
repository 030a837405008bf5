"""The dispatch cycle of a sender process (reference §8, §9, §10, §18.3 step 2).

Two entry points:

* ``run_dispatch_cycle(ctx, …)`` — one cycle: return expired leases, find the ready accounts
  and drain each of them in parallel (claim after claim until it has nothing ready). Returns
  how many messages it handled. Test mode runs cycles until one handles nothing (reference §8.7).
* ``sender_loop(ctx, wake, …)`` — the whole life of a sender: in normal mode every ready account
  gets its own long-lived task, so one slow account never delays another, and the loop sleeps
  until a wake-up, the poll tick or the earliest known ``deferred_ts``; in test mode it runs
  cycles on each ``run_cycle`` request. On stop it stops claiming, releases what has not
  started, gives sessions in progress the shutdown grace and closes the pool with ``QUIT``.

The per-account work is ``account`` (its transactions: ``claims``); one message's attempt is
``attempt``; writing and recording is ``record``; the shared state and stop logic is ``env``;
the SMTP seam is ``smtp``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import trio

from mailproxyd.drivers import metrics
from mailproxyd.drivers.smtp import SmtpPool
from mailproxyd.errors import DatabaseUnavailable
from mailproxyd.services.context import Doorbell, ServiceContext
from mailproxyd.services.dispatch import smtp as dispatch_smtp
from mailproxyd.services.dispatch.account import AccountRun
from mailproxyd.services.dispatch.env import DispatchEnv, FetchAttachments
from mailproxyd.store import Tx, gauges, leases, queue, ratelimit, sessions

__all__ = ["DispatchEnv", "close_dispatch_pool", "run_dispatch_cycle", "sender_loop"]

# Lease expiry and slot pruning are cheap but need not run on every wake-up.
EXPIRE_EVERY_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 60.0
# After its last claim found nothing, a drain keeps its session slots and pooled connections
# this long for the next wake-up, so a steady trickle of messages reuses one SMTP session.
LINGER_SECONDS = 2.0
# A failing loop iteration (database briefly unreachable) is retried after this long.
ERROR_PAUSE_SECONDS = 1.0


class Dispatcher:
    """The cycle and the loops of one sender, over one ``DispatchEnv``."""

    def __init__(self, env: DispatchEnv, bell: Doorbell) -> None:
        self.env = env
        self._active: set[tuple[str, str]] = set()
        # Rung by wake-ups and by drains that saw work arrive while they finished.
        self._bell = bell
        self._last_expire = -math.inf
        self._last_prune = -math.inf

    async def _serve(
        self, item: Mapping[str, Any], *, linger: float, totals: list[int] | None = None
    ) -> None:
        key = (str(item["tenant_id"]), str(item["account_id"]))
        run = AccountRun(self.env, item)
        try:
            handled = await run.serve(linger=linger)
            if totals is not None:
                totals.append(handled)
        except DatabaseUnavailable as exc:
            self.env.log.warning("database unavailable while serving %s/%s: %s", *key, exc.message)
        except Exception:
            self.env.log.exception("serving account %s/%s failed", *key)
        finally:
            self._active.discard(key)
            if self.env.kick_counts.pop(key, 0) != run.kicks_seen:
                # Work arrived while this drain was finishing; look again at once.
                self._bell.ring()
            # Popped: counts are kept for drains under way only, so they never pile up.

    async def _housekeeping(self, now: float, *, expire: bool) -> None:
        env = self.env
        if expire and now - self._last_expire >= EXPIRE_EVERY_SECONDS:
            self._last_expire = now
            prune = now - self._last_prune >= PRUNE_EVERY_SECONDS
            metrics.lease_failures(await env.db.run(_expire_tx, now=now, prune=prune))
            if prune:
                self._last_prune = now
                # Idle connections past their account's ttl are closed (reference §10.2).
                await dispatch_smtp.sweep(env.pool)

    async def cycle(self, *, expire: bool) -> int:
        """One cycle over every ready account, drained in parallel; messages handled."""
        env = self.env
        now = env.now()
        await self._housekeeping(now, expire=expire)
        ready = await env.db.run(queue.ready_accounts, now=now)
        totals: list[int] = []
        async with trio.open_nursery() as nursery:
            for item in ready:
                key = (str(item["tenant_id"]), str(item["account_id"]))
                if key in self._active:
                    continue
                self._active.add(key)
                nursery.start_soon(partial(self._serve, item, linger=0.0, totals=totals))
        return sum(totals)

    async def normal_loop(self) -> None:
        """Serve every ready account in its own task until the sender stops (reference §8.4, §8.6)."""
        env = self.env
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._housekeeping_loop)
            async with trio.open_nursery() as accounts:
                while not env.stopping():
                    try:
                        timeout = await self._dispatch_ready(accounts)
                    except DatabaseUnavailable as exc:
                        env.log.warning("database unavailable, retrying: %s", exc.message)
                        timeout = ERROR_PAUSE_SECONDS
                    await self._bell.wait(timeout)
            nursery.cancel_scope.cancel()

    async def _dispatch_ready(self, accounts: trio.Nursery) -> float:
        """Start a drain for each ready account not served yet; return the idle timeout."""
        env = self.env
        now = env.now()
        ready, next_ts = await env.db.run(_ready_tx, now=now)
        for item in ready:
            key = (str(item["tenant_id"]), str(item["account_id"]))
            if key in self._active:
                env.kick(key)  # its drain may be lingering: claim again now
            else:
                self._active.add(key)
                accounts.start_soon(partial(self._serve, item, linger=LINGER_SECONDS))
        timeout = float(env.settings().send_loop_interval)
        if next_ts is not None:
            timeout = min(timeout, max(0.0, next_ts - env.now()))
        return timeout

    async def _housekeeping_loop(self) -> None:
        """Lease expiry and pruning on their own clock, off the path of a wake-up."""
        env = self.env
        while True:
            try:
                await self._housekeeping(env.now(), expire=True)
            except DatabaseUnavailable as exc:
                env.log.warning("database unavailable, retrying: %s", exc.message)
            await trio.sleep(EXPIRE_EVERY_SECONDS)

    async def test_mode_loop(self, cycles: Doorbell, done: Callable[[], Awaitable[None]]) -> None:
        """Idle until ``run_cycle``; then claim after claim until nothing is ready (reference §8.7)."""
        env = self.env
        while not env.stopping():
            await cycles.wait(math.inf)
            if env.stopping():
                break
            while not env.stopping():
                try:
                    handled = await self.cycle(expire=False)
                except DatabaseUnavailable as exc:
                    env.log.warning("database unavailable during the cycle: %s", exc.message)
                    break
                if not handled:
                    break
            await done()


def _expire_tx(tx: Tx, *, now: float, prune: bool) -> list[dict[str, Any]]:
    """Store function: return expired leases (reference §8.3), drop lapsed session slots, prune
    slots; the messages that failed instead, with their tenant's name (for the metrics)."""
    failed: list[dict[str, Any]] = []
    leases.expire_leases(tx, now, failed)
    sessions.expire(tx, now)
    if prune:
        ratelimit.prune(tx, now)
    return gauges.with_tenant_names(tx, failed)


def _ready_tx(tx: Tx, *, now: float) -> tuple[list[dict[str, Any]], float | None]:
    """Store function: the ready accounts and the earliest future ``deferred_ts``."""
    return queue.ready_accounts(tx, now), queue.next_ready_ts(tx, now)


# ---------------------------------------------------------------------- public entry points

# The pool of each context driven through ``run_dispatch_cycle`` without an explicit pool
# (one per sender process), so connections are reused from one cycle to the next.
_pools: weakref.WeakKeyDictionary[ServiceContext, SmtpPool] = weakref.WeakKeyDictionary()


def _env_for(
    ctx: ServiceContext,
    owner: str | None,
    pool: SmtpPool,
    now_fn: Callable[[], float] | None,
    stop: trio.Event | None,
    attachments: FetchAttachments | None = None,
) -> DispatchEnv:
    env = DispatchEnv(
        ctx,
        owner=owner or ctx.owner,
        pool=pool,
        now_fn=now_fn or ctx.now,
        stop=stop if stop is not None else ctx.stopping,
        hard_deadline=lambda: ctx.stop_deadline,
    )
    env.fetch_attachments = attachments
    return env


async def run_dispatch_cycle(
    ctx: ServiceContext,
    *,
    owner: str | None = None,
    pool: SmtpPool | None = None,
    now_fn: Callable[[], float] | None = None,
    stop: trio.Event | None = None,
    attachments: FetchAttachments | None = None,
) -> int:
    """Run one dispatch cycle for ``ctx``'s sender; return the number of messages handled.

    ``owner`` defaults to ``ctx.owner``, ``now_fn`` to ``ctx.now``, ``stop`` to
    ``ctx.stopping``. Without a ``pool`` the process-wide pool of this context is used (created
    on first use; ``sender_loop`` closes the one it creates itself). Lease expiry runs except in
    test mode (reference §8.7).
    """
    if pool is None:
        pool = _pools.get(ctx)
        if pool is None:
            pool = _pools[ctx] = dispatch_smtp.make_pool(ctx.settings)
    env = _env_for(ctx, owner, pool, now_fn, stop, attachments)
    dispatcher = Dispatcher(env, ctx.wake)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(env.watch_stop)
        handled = await dispatcher.cycle(expire=not bool(ctx.settings.test_mode))
        nursery.cancel_scope.cancel()
    return handled


async def close_dispatch_pool(ctx: ServiceContext) -> None:
    """Close (``QUIT``) the pool ``run_dispatch_cycle`` made for ``ctx``, if it made one.

    For a caller that drives ``run_dispatch_cycle`` itself: call it once at exit (reference §18.3 step 4).
    """
    pool = _pools.pop(ctx, None)
    if pool is not None:
        with trio.CancelScope(shield=True), trio.move_on_after(5.0):
            await dispatch_smtp.close_pool(pool)


async def sender_loop(
    ctx: ServiceContext,
    wake: Doorbell | None = None,
    *,
    owner: str | None = None,
    pool: SmtpPool | None = None,
    now_fn: Callable[[], float] | None = None,
    stop: trio.Event | None = None,
    attachments: FetchAttachments | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The sender's life: serve until ``stop`` (default ``ctx.stopping``), then wind down.

    ``wake`` (default ``ctx.wake``) is rung by wake-ups; in test mode ``ctx.cycles`` is rung by
    run-now and ``ctx.cycle_done()`` is awaited after each cycle. A pool created here is closed
    with ``QUIT`` at the end; a pool passed in belongs to the caller.
    """
    own_pool = pool is None
    if pool is None:
        pool = dispatch_smtp.make_pool(ctx.settings)
    env = _env_for(ctx, owner, pool, now_fn, stop, attachments)
    dispatcher = Dispatcher(env, wake if wake is not None else ctx.wake)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(env.watch_stop)
            task_status.started()
            if ctx.settings.test_mode:
                await dispatcher.test_mode_loop(ctx.cycles, ctx.cycle_done)
            else:
                await dispatcher.normal_loop()
            nursery.cancel_scope.cancel()
    finally:
        if own_pool:
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                await dispatch_smtp.close_pool(pool)
