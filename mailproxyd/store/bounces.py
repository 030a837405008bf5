"""The bounce poller's state and its recording of bounces (reference §12, §5.6).

One row holds everything the pollers of every node share:

* the cursor — last processed UID and the mailbox's UIDVALIDITY — so a restart or another node
  goes on where the last poll stopped;
* the lease (``lock_owner``/``lock_until``): one poller at a time, across processes and nodes;
  it is taken only when the shared schedule (``next_poll_ts``) says a poll is due, so two nodes
  do not poll twice per interval, and it is renewed with every cursor step (fencing: a poller
  that lost it records nothing more);
* the back-off (``consecutive_failures``) and the last failure (``last_error``, ``last_error_ts``)
  that ``GET /instance`` shows.

:func:`apply_batch` records the bounces of a batch of mailbox messages and moves the cursor past
them in one transaction, so no message is processed twice, whatever crashes when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailproxyd.core.bounces import Bounce

from . import events
from .database import Tx


def _ensure(tx: Tx) -> None:
    tx.execute("bounce_state_ensure")


def get_state(tx: Tx) -> dict[str, Any]:
    """The poller state (all keys present; ``last_uid`` 0 and None for what was never set)."""
    row = tx.one("bounce_state_get")
    if row is None:
        return {
            "uidvalidity": None,
            "last_uid": 0,
            "last_sync_ts": None,
            "next_poll_ts": None,
            "consecutive_failures": 0,
            "last_error": None,
            "last_error_ts": None,
            "lock_owner": None,
            "lock_until": None,
        }
    row["last_uid"] = int(row["last_uid"] or 0)
    row["consecutive_failures"] = int(row["consecutive_failures"] or 0)
    return row


def try_lock(tx: Tx, owner: str, *, until: float, now: float, force: bool = False) -> bool:
    """Take the poller lease until ``until`` when it is free and a poll is due (or ``force``)."""
    _ensure(tx)
    params = {"owner": owner, "until": until, "now": now, "force": 1 if force else 0}
    return tx.execute("bounce_try_lock", params) > 0


def finish(
    tx: Tx,
    owner: str,
    *,
    now: float,
    next_poll_ts: float,
    succeeded: bool,
    error: str | None,
) -> dict[str, Any] | None:
    """End a poll: release the lease, schedule the next one, store the outcome.

    ``succeeded`` means the mailbox was read (the back-off ends, ``last_sync_ts`` moves);
    ``error`` is the failure to show, or None — a successful poll that met a malformed message
    still shows it. Returns the state as it was before (to log changes of state), or None when
    the lease had been lost.
    """
    before = get_state(tx)
    if before["lock_owner"] != owner:
        return None
    params = {
        "owner": owner,
        "next_poll_ts": next_poll_ts,
        "failures": 0 if succeeded else before["consecutive_failures"] + 1,
        "last_error": error,
        "last_error_ts": now if error is not None else None,
        "last_sync_ts": now if succeeded else before["last_sync_ts"],
    }
    tx.execute("bounce_finish", params)
    return before


def release(tx: Tx, owner: str) -> None:
    """Give the lease back without a verdict on the poll (it was cancelled or broke off)."""
    tx.execute("bounce_unlock", {"owner": owner})


def release_prefix(tx: Tx, prefix: str) -> None:
    """Give back a lease whose owner starts with ``prefix`` (a worker run or node that is gone)."""
    tx.execute("bounce_unlock_prefix", {"prefix": prefix})


def force_due(tx: Tx) -> None:
    """Make the next poll due at once (``POST /instance/reload-bounce``, test mode)."""
    _ensure(tx)
    tx.execute("bounce_force_due")


# ------------------------------------------------------------------------ recording bounces


@dataclass(frozen=True)
class Applied:
    """What became of one mailbox message."""

    uid: int
    outcome: str  # "recorded", "duplicate", "unmatched", "ambiguous", "not_sent"
    tenant_id: str | None = None
    message_key: str | None = None  # the client id of the matched message


def match(tx: Tx, bounce: Bounce) -> tuple[dict[str, Any] | None, str]:
    """The retained message a bounce is about, by Message-ID, else by X-Genro-Mail-ID (reference §12).

    Returns ``(row, "")`` or ``(None, outcome)`` with ``unmatched``, ``ambiguous`` (several
    messages fit) or ``not_sent`` (the only message with that client id was never sent).
    """
    if bounce.message_id:
        rows = tx.all("message_by_header", {"message_id": bounce.message_id})
        if len(rows) > 1 and bounce.mail_id:
            rows = [r for r in rows if r["id"] == bounce.mail_id]
        if len(rows) == 1:
            return rows[0], ""
        if len(rows) > 1:
            return None, "ambiguous"
    if bounce.mail_id:
        rows = tx.all("message_by_client_id", {"id": bounce.mail_id})
        if len(rows) == 1:
            return (rows[0], "") if rows[0]["status"] == "sent" else (None, "not_sent")
        if len(rows) > 1:
            return None, "ambiguous"
    return None, "unmatched"


def apply_batch(
    tx: Tx,
    owner: str,
    *,
    uidvalidity: int,
    last_uid: int,
    bounces: Sequence[tuple[int, Bounce]],
    now: float,
    lease_until: float,
) -> list[Applied] | None:
    """Record the matched bounces of one batch and move the cursor to ``last_uid``.

    None (and nothing written) when this poller no longer holds the lease.
    """
    params = {"owner": owner, "uidvalidity": uidvalidity, "last_uid": last_uid}
    if tx.execute("bounce_save_cursor", {**params, "until": lease_until}) == 0:
        return None
    results: list[Applied] = []
    for uid, bounce in bounces:
        row, why = match(tx, bounce)
        if row is None:
            results.append(Applied(uid, why))
            continue
        recorded = events.record_bounce(
            tx,
            int(row["pk"]),
            now,
            bounce_type=bounce.bounce_type,
            bounce_code=bounce.bounce_code,
            bounce_reason=bounce.bounce_reason,
            recipient=bounce.recipient,
        )
        results.append(
            Applied(uid, "recorded" if recorded else "duplicate", row["tenant_id"], row["id"])
        )
    return results
