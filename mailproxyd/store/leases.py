"""Leases and fenced completion of claimed messages (reference §8.3, §10.3, §10.4, §1.2).

A claimed message is ``sending`` with ``lease_owner``/``lease_until``. Only the owner can record
its outcome (``complete_*``; ``complete_sent_many`` for a batch of sends), each outcome
writing its event; leases can be renewed, given back at shutdown, expire (three expiries fail
the message) or be released for a whole node at start.
``store.queue`` re-exports every function here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._codec import dumps, flag
from ._eventlog import error_metadata, event_row, record_events
from .accounts import ACCOUNT_DELETED
from .database import Tx

MAX_LEASE_EXPIRIES = 3
INTERRUPTED = "processing interrupted 3 times (sender crashed or stalled); giving up"


def renew_leases(tx: Tx, owner: str, pks: Iterable[int], lease_until: float) -> int:
    """Extend the leases ``owner`` still holds; return how many were renewed."""
    pk_list = [int(pk) for pk in pks]
    if not pk_list:
        return 0
    params = {"owner": owner, "pks": dumps(pk_list), "lease_until": lease_until}
    return tx.execute("lease_renew", params)


def end_leases(
    tx: Tx,
    rows: Sequence[Mapping[str, Any]],
    now: float,
    *,
    expired: bool,
    failures: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Return leased messages to the queue; an expiry counts toward the three-strikes rule.

    ``failures`` receives the rows that became ``error`` instead (the metrics count them).
    """
    returned: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    events = []
    for row in rows:
        expiries = int(row["expiry_count"]) + (1 if expired else 0)
        if expired and expiries >= MAX_LEASE_EXPIRIES:
            reason = INTERRUPTED
        elif row["account_deleted"]:
            reason = ACCOUNT_DELETED
        else:
            returned.append({"pk": row["pk"], "expiry_count": expiries, "now": now})
            continue
        failed.append({"pk": row["pk"], "error": reason, "now": now})
        if failures is not None:
            failures.append(dict(row))
        events.append(event_row(row, "error", now, reason, error_metadata(row)))
    tx.many("lease_return", returned)
    tx.many("message_fail", failed)
    record_events(tx, events, now)
    return {"returned": len(returned), "failed": len(failed)}


def release(
    tx: Tx,
    owner: str,
    pks: Iterable[int],
    now: float,
    failures: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Give back leases at shutdown: back to ``pending``, no event, not counted as an expiry.

    A message whose account was deleted meanwhile fails instead; ``failures`` receives it.
    """
    pk_list = [int(pk) for pk in pks]
    if not pk_list:
        return {"returned": 0, "failed": 0}
    rows = tx.all("leases_of_owner", {"owner": owner, "pks": dumps(pk_list)})
    return end_leases(tx, rows, now, expired=False, failures=failures)


def expire_leases(
    tx: Tx, now: float, failures: list[dict[str, Any]] | None = None
) -> dict[str, int]:
    """Return every message whose lease has expired; the third expiry fails it (reference §8.3)."""
    rows = tx.all("leases_expired", {"now": now})
    return end_leases(tx, rows, now, expired=True, failures=failures)


def release_node(
    tx: Tx, node_id: str, now: float, failures: list[dict[str, Any]] | None = None
) -> dict[str, int]:
    """Release every lease held by ``node_id`` (owner ``node_id`` or ``node_id/…``) as expiries.

    Called by a supervisor at start: the workers of its previous run are gone.
    """
    rows = tx.all("leases_of_node", {"node_id": node_id, "prefix": node_id + "/"})
    return end_leases(tx, rows, now, expired=True, failures=failures)


def release_run(
    tx: Tx, run_prefix: str, now: float, failures: list[dict[str, Any]] | None = None
) -> dict[str, int]:
    """Release every lease of one worker run (owners starting with ``run_prefix``) as expiries.

    Called by the supervisor once that run's process has exited and before the slot is
    started again (reference §18.4), so the messages are ready again at once.
    """
    rows = tx.all("leases_of_node", {"node_id": run_prefix, "prefix": run_prefix})
    return end_leases(tx, rows, now, expired=True, failures=failures)


# ---------------------------------------------------------------- completion (fenced)


def _fenced(tx: Tx, pk: int, owner: str) -> dict[str, Any] | None:
    return tx.one("message_fenced", {"pk": int(pk), "owner": owner})


def complete_sent(
    tx: Tx,
    pk: int,
    owner: str,
    now: float,
    *,
    smtp_code: int | None = None,
    refused_recipients: Mapping[str, Any] | None = None,
    outcome_uncertain: bool = False,
) -> bool:
    """Record a send the server accepted; False when ``owner`` no longer holds the lease."""
    row = _fenced(tx, pk, owner)
    if row is None:
        return False
    row["outcome_uncertain"] = bool(row["outcome_uncertain"]) or outcome_uncertain
    refused = dict(refused_recipients) if refused_recipients else None
    tx.execute(
        "message_complete_sent",
        {
            "pk": row["pk"],
            "now": now,
            "smtp_code": smtp_code,
            "refused_recipients": dumps(refused) if refused else None,
            "outcome_uncertain": flag(row["outcome_uncertain"]),
        },
    )
    metadata = error_metadata(row, refused_recipients=refused)
    record_events(tx, [event_row(row, "sent", now, None, metadata)], now)
    return True


def complete_sent_many(
    tx: Tx, owner: str, rows: Sequence[Mapping[str, Any]], now: float
) -> list[bool]:
    """Record many accepted sends at once; for each row, whether ``owner`` still held its lease.

    Each row: ``pk`` and optionally ``smtp_code``, ``refused_recipients``,
    ``outcome_uncertain`` (the keyword arguments of ``complete_sent``) and ``now`` (the time of
    that send, for its ``sent_ts`` and event; default: ``now``). The effect per message
    is exactly ``complete_sent``'s, the fencing too: a row whose lease ``owner`` lost is left
    alone and answers False while the others are recorded. The cost is a handful of statements
    for the whole batch (one fenced read, one update, the events in one insert) instead of
    five per message. A pk listed twice is recorded once, for its first row.
    """
    wanted = [int(row["pk"]) for row in rows]
    if not wanted:
        return []
    held = {
        int(found["pk"]): found
        for found in tx.all("messages_fenced_many", {"owner": owner, "pks": dumps(wanted)})
    }
    updates: list[dict[str, Any]] = []
    events = []
    answers: list[bool] = []
    for row in rows:
        found = held.pop(int(row["pk"]), None)
        answers.append(found is not None)
        if found is None:
            continue
        found["outcome_uncertain"] = bool(found["outcome_uncertain"]) or bool(
            row.get("outcome_uncertain")
        )
        refused = dict(row["refused_recipients"]) if row.get("refused_recipients") else None
        sent_at = float(row.get("now") or now)
        updates.append(
            {
                "pk": found["pk"],
                "now": sent_at,
                "smtp_code": row.get("smtp_code"),
                "refused_recipients": dumps(refused) if refused else None,
                "outcome_uncertain": flag(found["outcome_uncertain"]),
            }
        )
        metadata = error_metadata(found, refused_recipients=refused)
        events.append(event_row(found, "sent", sent_at, None, metadata))
    tx.many("message_complete_sent", updates)
    record_events(tx, events, now)
    return answers


def complete_deferred(
    tx: Tx,
    pk: int,
    owner: str,
    now: float,
    *,
    deferred_ts: float,
    reason: str,
    smtp_code: int | None = None,
    count_retry: bool = True,
    outcome_uncertain: bool = False,
    failures: list[dict[str, Any]] | None = None,
) -> bool:
    """Put the message back until ``deferred_ts`` with a ``deferred`` event.

    ``count_retry``: a temporary failure adds 1 to ``retry_count``; a rate-limit deferral
    (``reason="rate_limit"``) passes False. If the account was deleted meanwhile the message
    fails with ``account deleted`` instead (reference §5.4) and ``failures`` receives it (the
    metrics count an error, not a deferral). False when the lease was lost.
    """
    row = _fenced(tx, pk, owner)
    if row is None:
        return False
    row["outcome_uncertain"] = bool(row["outcome_uncertain"]) or outcome_uncertain
    if row["account_deleted"]:
        if failures is not None:
            failures.append(dict(row))
        return _fail(tx, row, now, ACCOUNT_DELETED, None, None)
    retry_count = int(row["retry_count"]) + (1 if count_retry else 0)
    tx.execute(
        "message_complete_deferred",
        {
            "pk": row["pk"],
            "now": now,
            "deferred_ts": float(deferred_ts),
            "deferred_reason": reason,
            "smtp_code": smtp_code,
            "retry_count": retry_count,
            "outcome_uncertain": flag(row["outcome_uncertain"]),
        },
    )
    metadata: dict[str, Any] = {
        "deferred_ts": float(deferred_ts),
        "deferred_reason": reason,
        "retry_count": retry_count,
    }
    if smtp_code is not None:
        metadata["smtp_code"] = smtp_code
    if row["outcome_uncertain"]:
        metadata["outcome_uncertain"] = True
    record_events(tx, [event_row(row, "deferred", now, reason, metadata)], now)
    return True


def complete_error(
    tx: Tx,
    pk: int,
    owner: str,
    now: float,
    *,
    error: str,
    smtp_code: int | None = None,
    refused_recipients: Mapping[str, Any] | None = None,
    outcome_uncertain: bool = False,
) -> bool:
    """Fail the message permanently with an ``error`` event; False when the lease was lost.

    ``retry_count`` is left as it is: the failure that exhausts the retries is not one (reference §10.4).
    """
    row = _fenced(tx, pk, owner)
    if row is None:
        return False
    row["outcome_uncertain"] = bool(row["outcome_uncertain"]) or outcome_uncertain
    return _fail(tx, row, now, error, smtp_code, refused_recipients)


def _fail(
    tx: Tx,
    row: dict[str, Any],
    now: float,
    error: str,
    smtp_code: int | None,
    refused_recipients: Mapping[str, Any] | None,
) -> bool:
    refused = dict(refused_recipients) if refused_recipients else None
    tx.execute(
        "message_complete_error",
        {
            "pk": row["pk"],
            "now": now,
            "error": error,
            "smtp_code": smtp_code,
            "refused_recipients": dumps(refused) if refused else None,
            "retry_count": int(row["retry_count"]),
            "outcome_uncertain": flag(row["outcome_uncertain"]),
        },
    )
    metadata = error_metadata(row, smtp_code=smtp_code, refused_recipients=refused)
    record_events(tx, [event_row(row, "error", now, error, metadata)], now)
    return True
