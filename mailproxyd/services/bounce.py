"""The bounce poll (reference §12): read the bounce mailbox, record matched bounces as events.

:func:`poll_once` is one poll, used by both modes: when ``bounce_enabled`` is set and a poll is
due by the shared schedule (or forced), it takes the poller lease in the database — one poller
at a time over every process and node — opens the mailbox (``drivers.imap``), reads the UIDs
above the stored cursor in batches, parses each message (pure, ``core.bounces``), records the
matched bounces and moves the cursor in one transaction per batch (``store.bounces``), then flags
the batch ``\\Seen``. A UIDVALIDITY change resets the cursor. The poll ends by releasing the lease
and scheduling the next one: the interval, or a back-off after a failed poll (at most 10 × the
interval). Its failure — login refused, server unreachable, a message that could not be
parsed — is stored for ``GET /instance`` and logged once per change of state.

:func:`bounce_loop` runs :func:`poll_once` in normal mode, in the reporter process, next to the
delivery reports; nothing that goes wrong here ever reaches them. Test mode calls
:func:`poll_once` once per run-now cycle (reference §8.7 step 3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from mailproxyd.core.bounces import (
    Bounce,
    Malformed,
    NotBounce,
    Parsed,
    parse_bounce,
    poll_delay,
    printable,
)
from mailproxyd.drivers.imap import (
    FETCH_BATCH,
    AsyncMailbox,
    ImapError,
    MailboxConfig,
    open_mailbox,
)
from mailproxyd.services.context import Doorbell, ServiceContext
from mailproxyd.store import bounces as store_bounces
from mailproxyd.store import meta

log = logging.getLogger("mailproxyd.bounce")
# The flufl.bounce detectors log every detector they try, and tracebacks of their own slips
# (which core.bounces already absorbs): not for our log.
logging.getLogger("flufl.bounce").disabled = True

# How long one poll may hold the lease without renewing it (every batch renews it).
LEASE_SECONDS = 300.0
# How often an idle loop looks at the settings and the shared schedule.
RECHECK_SECONDS = 5.0
# After an unexpected failure (say, the database briefly away) the loop tries again this soon.
TROUBLE_RETRY_SECONDS = 10.0
INCOMPLETE = "bounce mailbox settings incomplete (host, user and password are required)"


@dataclass
class PollResult:
    """What one call of :func:`poll_once` did."""

    polled: bool = False  # this poller held the lease and tried the mailbox
    enabled: bool = False
    error: str | None = None
    read: int = 0
    recorded: int = 0
    skipped: int = 0
    malformed: int = 0
    next_poll_ts: float | None = None  # when a poll is due next (shared schedule)
    outcomes: list[tuple[int, str]] = field(default_factory=list)  # (uid, outcome)


class _LeaseLost(Exception):
    pass


def _config(instance: dict[str, Any], timeout: float) -> MailboxConfig | None:
    host = instance.get("bounce_imap_host")
    user = instance.get("bounce_imap_user")
    password = instance.get("bounce_imap_password")
    if not (host and user and password):
        return None
    return MailboxConfig(
        host=str(host),
        port=int(instance.get("bounce_imap_port") or 993),
        user=str(user),
        password=str(password),
        folder=str(instance.get("bounce_imap_folder") or "INBOX"),
        ssl=bool(instance.get("bounce_imap_ssl", True)),
        timeout=timeout,
    )


async def poll_once(
    ctx: ServiceContext, *, now_fn: Callable[[], float] = time.time, force: bool = False
) -> PollResult:
    """One poll of the bounce mailbox, if enabled and due (or ``force``) and the lease is free."""
    result = PollResult()
    instance = await ctx.db.run(meta.get_instance_for_bounce, write=False)
    state = await ctx.db.run(store_bounces.get_state, write=False)
    result.next_poll_ts = state["next_poll_ts"]
    if not instance.get("bounce_enabled"):
        return result
    result.enabled = True
    interval = float(instance.get("bounce_poll_interval") or 60)
    now = now_fn()
    if not force and state["next_poll_ts"] is not None and state["next_poll_ts"] > now:
        return result
    locked = await ctx.db.run(
        store_bounces.try_lock, ctx.owner, until=now + LEASE_SECONDS, now=now, force=force
    )
    if not locked:
        return result
    result.polled = True
    # Read again under the lease: another poller may have moved the cursor meanwhile.
    state = await ctx.db.run(store_bounces.get_state, write=False)
    succeeded = False
    outcome_known = False
    try:
        config = _config(instance, ctx.bounce.timeout)
        if config is None:
            raise ImapError(INCOMPLETE)
        mailbox = await open_mailbox(
            config, cafile=ctx.bounce.cafile, ssl_context_factory=ctx.bounce.ssl_context_factory
        )
        try:
            await _read(ctx, mailbox, state, result, now_fn)
        finally:
            await mailbox.aclose()
        succeeded = outcome_known = True
    except ImapError as exc:
        result.error = exc.message
        outcome_known = True
    except _LeaseLost:
        log.warning("bounce poll stopped: another poller took over the mailbox")
    finally:
        with trio.CancelScope(shield=True):
            if outcome_known:
                await _finish(ctx, result, state, interval, succeeded, now_fn)
            else:
                # Cancelled (the reporter stops), or the database failed: no verdict on the
                # mailbox; only the lease is given back.
                await ctx.db.run(store_bounces.release, ctx.owner)
    return result


async def _finish(
    ctx: ServiceContext,
    result: PollResult,
    state: dict[str, Any],
    interval: float,
    succeeded: bool,
    now_fn: Callable[[], float],
) -> None:
    now = now_fn()
    failures = 0 if succeeded else int(state["consecutive_failures"]) + 1
    delay = poll_delay(interval, failures)
    result.next_poll_ts = now + delay
    before = await ctx.db.run(
        store_bounces.finish,
        ctx.owner,
        now=now,
        next_poll_ts=result.next_poll_ts,
        succeeded=succeeded,
        error=result.error,
    )
    if before is None:
        return
    # Logged once per change of state (the stored state is shared by every node).
    if not succeeded:
        text = printable(result.error)
        if result.error != before["last_error"] or before["consecutive_failures"] == 0:
            log.warning("bounce poll failed: %s (next try in %d s)", text, round(delay))
        else:
            log.debug("bounce poll failed again: %s", text)
    else:
        log.debug(
            "bounce poll done: %d read, %d recorded, %d skipped, %d malformed",
            result.read,
            result.recorded,
            result.skipped,
            result.malformed,
        )
        if before["consecutive_failures"] > 0:
            log.info("bounce mailbox polled successfully again")


async def _read(
    ctx: ServiceContext,
    mailbox: AsyncMailbox,
    state: dict[str, Any],
    result: PollResult,
    now_fn: Callable[[], float],
) -> None:
    uidvalidity = mailbox.uidvalidity
    last_uid = int(state["last_uid"])
    if state["uidvalidity"] is not None and int(state["uidvalidity"]) != uidvalidity:
        log.info(
            "bounce mailbox UIDVALIDITY changed (%s -> %s): reading it from the start",
            state["uidvalidity"],
            uidvalidity,
        )
        last_uid = 0
    elif state["uidvalidity"] is None:
        last_uid = 0
    uids = await mailbox.uids_after(last_uid)
    for start in range(0, len(uids), FETCH_BATCH):
        chunk = uids[start : start + FETCH_BATCH]
        raws = await mailbox.fetch(chunk)
        parsed = await trio.to_thread.run_sync(_parse_all, chunk, raws)
        now = now_fn()
        bounces = [(uid, p) for uid, p in parsed if isinstance(p, Bounce)]
        applied = await ctx.db.run(
            store_bounces.apply_batch,
            ctx.owner,
            uidvalidity=uidvalidity,
            last_uid=chunk[-1],
            bounces=bounces,
            now=now,
            lease_until=now + LEASE_SECONDS,
        )
        if applied is None:
            raise _LeaseLost
        present = [uid for uid in chunk if uid in raws]
        await mailbox.mark_seen(present)
        result.read += len(present)
        _report(result, parsed, {a.uid: a for a in applied})
        if any(a.outcome == "recorded" for a in applied) and ctx.bounce.on_recorded is not None:
            ctx.bounce.on_recorded()


def _parse_all(uids: Sequence[int], raws: dict[int, bytes]) -> list[tuple[int, Parsed]]:
    return [(uid, parse_bounce(raws[uid])) for uid in uids if uid in raws]


def _report(
    result: PollResult, parsed: list[tuple[int, Parsed]], applied: dict[int, store_bounces.Applied]
) -> None:
    """Count and log what became of each message of a batch."""
    for uid, facts in parsed:
        if isinstance(facts, Malformed):
            result.malformed += 1
            result.error = f"message UID {uid} could not be parsed: {facts.why}"
            result.outcomes.append((uid, "malformed"))
            log.warning("bounce mailbox message uid=%d could not be parsed: %s", uid, facts.why)
            continue
        if isinstance(facts, NotBounce):
            result.skipped += 1
            result.outcomes.append((uid, "not_bounce"))
            log.info("bounce skipped uid=%d: %s", uid, facts.why)
            continue
        done = applied[uid]
        result.outcomes.append((uid, done.outcome))
        ids = f"message_id={printable(facts.message_id)} mail_id={printable(facts.mail_id)}"
        if done.outcome == "recorded":
            result.recorded += 1
            log.info(
                "bounce recorded tenant=%s id=%s type=%s code=%s uid=%d",
                printable(done.tenant_id),
                printable(done.message_key),
                facts.bounce_type,
                printable(facts.bounce_code),
                uid,
            )
            continue
        result.skipped += 1
        if done.outcome == "duplicate":
            log.info(
                "bounce skipped uid=%d: already recorded for tenant=%s id=%s (code=%s recipient=%s)",
                uid,
                printable(done.tenant_id),
                printable(done.message_key),
                printable(facts.bounce_code),
                printable(facts.recipient),
            )
        elif done.outcome == "ambiguous":
            log.info("bounce skipped uid=%d: several retained messages match (%s)", uid, ids)
        elif done.outcome == "not_sent":
            log.info("bounce skipped uid=%d: the matching message was never sent (%s)", uid, ids)
        else:
            log.info("bounce skipped uid=%d: no retained message matches (%s)", uid, ids)


# ------------------------------------------------------------------------------ normal mode


async def reload(ctx: ServiceContext) -> None:
    """``POST /instance/reload-bounce``: the next poll is due now, without back-off."""
    await ctx.db.run(store_bounces.force_due)


async def bounce_loop(
    ctx: ServiceContext,
    reload_bell: Doorbell,
    *,
    now_fn: Callable[[], float] = time.time,
) -> None:
    """Normal mode: poll whenever the shared schedule says so; runs until cancelled.

    A ring of ``reload_bell`` (``POST /instance/reload-bounce``) makes the next poll due at
    once, without back-off, with the settings as stored now.
    """
    force = False
    while True:
        delay = RECHECK_SECONDS
        try:
            if force:
                await reload(ctx)
            result = await poll_once(ctx, now_fn=now_fn, force=force)
            due_in = (result.next_poll_ts or 0.0) - now_fn()
            if result.enabled and due_in > 0:
                delay = min(RECHECK_SECONDS, due_in)
        except Exception:
            log.exception("bounce poller failed")
            delay = TROUBLE_RETRY_SECONDS
        force = await reload_bell.wait(delay)
