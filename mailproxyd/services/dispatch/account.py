"""Serving one account: sessions, claims, admission in claim order, parallel sends (reference §8.2–§8.4, §9).

``AccountRun.serve`` drains one account: it holds up to ``max_concurrent`` session slots
(counted in the database across processes and nodes), claims a batch, admits its messages in
claim order through the rate limiter, and shares the batch out over its SMTP sessions: each
session sends a run of admitted messages in one trip to a worker thread (``run_attempts``)
and writes their outcomes together while it goes on with the next run. It claims again at
once while anything is ready. A slow server, a full rate limit
or a stall on this account only ever occupies this account's task.

When the drain ends it closes the account's idle pooled connections before it gives its slots
back, so another process cannot open sessions while ours are still open. (The SMTP pool needs
a per-account close for that; without one, idle connections live until their ``ttl`` — see
``dispatch_smtp.close_account``.)

What happens to admitted messages (build, send, classify) is ``attempt``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from mailproxyd.drivers import metrics
from mailproxyd.services.dispatch.attempt import run_attempts
from mailproxyd.services.dispatch.claims import (
    Admission,
    Claim,
    admit_tx,
    claim_tx,
    max_concurrent_of,
    release_tx,
    renew_tx,
)

if TYPE_CHECKING:
    from mailproxyd.services.dispatch.env import DispatchEnv
    from mailproxyd.services.dispatch.record import Completion

# Messages one session sends per trip to its worker thread (and records together) at most:
# larger runs save hops, smaller ones record sooner and spread a batch over the sessions.
MAX_SESSION_RUN = 25
# QUIT on idle connections is a courtesy; never let a dead server hold up giving slots back.
CLOSE_TIMEOUT_SECONDS = 5.0


class AccountRun:
    """The state of one account's drain: held session slots and the unfinished messages."""

    def __init__(self, env: DispatchEnv, item: Mapping[str, Any]) -> None:
        self.env = env
        self.tenant_id = str(item["tenant_id"])
        self.account_id = str(item["account_id"])
        self.key = (self.tenant_id, self.account_id)
        self.tenant_limits: Mapping[str, Any] = item.get("tenant_rate_limits") or {}
        self.slots: list[int] = []
        # Claimed messages whose outcome is not recorded yet: their leases are renewed.
        self.unfinished: dict[int, Mapping[str, Any]] = {}
        self.handled = 0
        # ``env.kick_counts`` of this account when it last claimed: a later kick means work
        # may have arrived that this drain did not see.
        self.kicks_seen = 0
        self._recorders: trio.Nursery | None = None

    async def serve(self, *, linger: float = 0.0) -> int:
        """Claim and send until nothing of this account is ready (or the sender stops)."""
        env = self.env
        try:
            # Outcomes are written while the next batch is claimed and sent; every write has
            # ended before the unfinished messages and the slots are given back below.
            async with trio.open_nursery() as recorders:
                self._recorders = recorders
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._renew_leases)
                    try:
                        await self._drain(linger)
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                # Connections first, slots after: another process may open a session as soon
                # as a slot is free, and the count must never exceed ``max_concurrent``.
                with trio.move_on_after(CLOSE_TIMEOUT_SECONDS):
                    await env.close_idle(self.tenant_id, self.account_id)
                await self._give_back()
        return self.handled

    async def _drain(self, linger: float) -> None:
        env = self.env
        while not env.stopping():
            claim = await self._claim()
            if claim.account is None:
                # Deleted between "ready" and the claim: nothing left to send here.
                return
            if not claim.rows:
                if env.kick_counts.get(self.key, 0) != self.kicks_seen:
                    # Kicked while the claim ran: the work may have been committed after the
                    # claim's snapshot. Claim again now, not after the linger.
                    continue
                if linger > 0 and not claim.busy and await env.kicked(self.key, linger):
                    continue
                return
            await self._run_batch(claim)

    async def _claim(self) -> Claim:
        env = self.env
        settings = env.settings()
        self.kicks_seen = env.kick_counts.get(self.key, 0)
        with trio.CancelScope(shield=True):
            claim: Claim = await env.committer.call(
                claim_tx,
                locking=True,
                tenant_id=self.tenant_id,
                account_id=self.account_id,
                owner=env.owner,
                now=env.now(),
                lease_seconds=float(settings.claim_lease_seconds),
                held_slots=len(self.slots),
                default_batch=int(settings.batch_size_per_account),
                tenant_limits=self.tenant_limits,
                processes=int(settings.sender_processes),
            )
        # Counted once committed (reference §14: any cause after enqueue).
        metrics.lease_failures(claim.lease_failures)
        self.slots.extend(claim.new_slots)
        for row in claim.rows:
            self.unfinished[int(row["pk"])] = row
        if env.stopping() and claim.rows:
            # A stop arrived during the claim: these never started (reference §18.3). Deferrals and
            # rejections the claim already recorded stand; admitted slots are given back.
            done = [a for a in claim.admissions if a.completion is not None]
            await env.recorded([a.completion for a in done if a.completion], [a.held for a in done])
            await self._give_back(
                rate_slots=[a.slot_id for a in claim.admissions if a.slot_id is not None]
            )
            claim.rows = []
        return claim

    async def _run_batch(self, claim: Claim) -> None:
        assert claim.account is not None
        sessions_now = max(1, min(len(self.slots), max_concurrent_of(claim.account)))
        # Claim order; the verdict is known for those admitted within the claim.
        waiting: deque[tuple[Mapping[str, Any], Admission | None]] = deque(
            (row, claim.admissions[i] if i < len(claim.admissions) else None)
            for i, row in enumerate(claim.rows)
        )
        # Each session takes its share of the batch a run at a time: one trip to a thread and
        # one SMTP session carry the whole run, and their outcomes are written together.
        run = max(1, min(MAX_SESSION_RUN, math.ceil(len(waiting) / sessions_now)))
        if len(claim.admissions) < len(claim.rows):
            # Limits apply: admission goes message by message as sessions free up, so one
            # message per session at a time, as admitted.
            run = 1
        async with trio.open_nursery() as sends:
            for _ in range(min(sessions_now, len(waiting))):
                sends.start_soon(self._session, claim, waiting, run)
        if waiting:
            # Stopping: the rest never started; hand them back at once, no event (reference §18.3).
            await self._give_back(
                [int(row["pk"]) for row, _ in waiting],
                rate_slots=[v.slot_id for _, v in waiting if v and v.slot_id is not None],
            )
            waiting.clear()

    async def _session(
        self,
        claim: Claim,
        waiting: deque[tuple[Mapping[str, Any], Admission | None]],
        run: int,
    ) -> None:
        """One SMTP session's share of the batch: admitted runs in claim order (reference §8.2)."""
        env = self.env
        assert claim.account is not None
        while waiting and not env.stopping():
            group: list[tuple[Mapping[str, Any], Admission]] = []
            while waiting and len(group) < run:
                row, verdict = waiting[0]
                if verdict is None:
                    break
                waiting.popleft()
                group.append((row, verdict))
            if not group:
                # Not admitted yet (the account or tenant has limits): the next message alone,
                # admitted now, so the limiter sees sends in claim order as sessions free up.
                row, _ = waiting.popleft()
                with trio.CancelScope(shield=True):
                    fresh: list[Admission] = await env.committer.call(
                        admit_tx,
                        locking=True,
                        rows=[row],
                        account=claim.account,
                        tenant_limits=self.tenant_limits,
                        owner=env.owner,
                        now=env.now(),
                    )
                group = [(row, fresh[0])]
            admitted: list[tuple[Mapping[str, Any], int]] = []
            for row, verdict in group:
                if verdict.slot_id is not None:
                    admitted.append((row, verdict.slot_id))
                    continue
                self._finished(row)
                if verdict.completion is not None:
                    await env.recorded([verdict.completion], [verdict.held])
            if admitted:
                await self._attempts(claim, admitted)

    async def _attempts(
        self,
        claim: Claim,
        admitted: Sequence[tuple[Mapping[str, Any], int]],
    ) -> None:
        """Send a run over one session; its outcomes are written while the session goes on."""
        assert claim.account is not None
        try:
            completions = await run_attempts(
                self.env, claim.account, admitted, bounce_return_path=claim.bounce_return_path
            )
        except BaseException:
            for row, _ in admitted:
                self._finished(row)
            raise
        done = [
            (row, c) for (row, _), c in zip(admitted, completions, strict=True) if c is not None
        ]
        if done:
            assert self._recorders is not None
            self._recorders.start_soon(self._record, done)
        untried = [
            (row, slot) for (row, slot), c in zip(admitted, completions, strict=True) if c is None
        ]
        if untried:
            # The sender began to stop before these were attempted: back, no event (reference §18.3).
            await self._give_back(
                [int(row["pk"]) for row, _ in untried], rate_slots=[slot for _, slot in untried]
            )

    async def _record(self, done: Sequence[tuple[Mapping[str, Any], Completion]]) -> None:
        try:
            # Shielded: these messages went out; their outcomes must be written.
            with trio.CancelScope(shield=True):
                await self.env.record_many([completion for _, completion in done])
        finally:
            for row, _ in done:
                self._finished(row)

    def _finished(self, row: Mapping[str, Any]) -> None:
        self.unfinished.pop(int(row["pk"]), None)
        self.handled += 1

    async def _give_back(
        self, pks: Sequence[int] | None = None, *, rate_slots: Sequence[int] = ()
    ) -> None:
        """Release not-started messages (all unfinished when ``pks`` is None) and, at the end
        of the drain, the session slots."""
        env = self.env
        chosen = list(self.unfinished) if pks is None else list(pks)
        slots = self.slots if pks is None else []
        if not chosen and not slots and not rate_slots:
            return
        with trio.CancelScope(shield=True):
            failed = await env.db.run(
                release_tx,
                owner=env.owner,
                pks=chosen,
                slots=slots,
                rate_slots=list(rate_slots),
                now=env.now(),
            )
        metrics.lease_failures(failed)  # counted once committed (reference §14)
        for pk in chosen:
            self.unfinished.pop(pk, None)
        if pks is None:
            self.slots = []

    async def _renew_leases(self) -> None:
        env = self.env
        while True:
            lease = float(env.settings().claim_lease_seconds)
            await trio.sleep(lease / 3)
            if not self.unfinished and not self.slots:
                continue
            with trio.CancelScope(shield=True):
                await env.db.run(
                    renew_tx,
                    owner=env.owner,
                    pks=list(self.unfinished),
                    slots=list(self.slots),
                    lease_until=env.now() + lease,
                )
