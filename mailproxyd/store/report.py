"""Per-tenant sync state and the reporter lock (reference §13.4, §13.5, §5.5).

The state row holds the last acknowledged call, do-not-disturb time, back-off, the count of
consecutive ``queued``-driven calls, whether the last acknowledged answer still wants a
``queued`` follow-up (so the wish survives DND and a reporter restart, reference §2.2) and whether a
heartbeat was forced by run-now. The reporter decides *when* to call (pure core); the store only
keeps the facts. ``try_lock`` makes sure one reporter at a time pushes a tenant's events, across
processes and nodes.
"""

from __future__ import annotations

from typing import Any

from ._codec import flag
from .database import Tx

_STATE_FIELDS = (
    "last_sync_ts",
    "last_attempt_ts",
    "dnd_until",
    "consecutive_failures",
    "backoff_until",
    "last_error",
    "queued_calls",
    "queued_wanted",
    "heartbeat_due",
)
# Stored as 0/1 integers on both backends, returned as bools.
_FLAGS = ("queued_wanted", "heartbeat_due")
_EMPTY: dict[str, Any] = {
    "last_sync_ts": None,
    "last_attempt_ts": None,
    "dnd_until": None,
    "consecutive_failures": 0,
    "backoff_until": None,
    "last_error": None,
    "queued_calls": 0,
    "queued_wanted": False,
    "heartbeat_due": False,
}


def _state(row: dict[str, Any] | None) -> dict[str, Any]:
    state = dict(_EMPTY)
    if row:
        state.update({key: row[key] for key in _STATE_FIELDS if row.get(key) is not None})
    for key in _FLAGS:
        state[key] = bool(state[key])
    return state


def get_state(tx: Tx, tenant_id: str) -> dict[str, Any]:
    """The tenant's sync state (defaults when it was never called)."""
    return _state(tx.one("sync_get", {"tenant_id": tenant_id}))


def save_state(tx: Tx, tenant_id: str, **changes: Any) -> dict[str, Any]:
    """Update some of the state fields (see ``get_state``); returns the new state."""
    unknown = set(changes) - set(_STATE_FIELDS)
    if unknown:
        raise ValueError(f"unknown sync state fields: {sorted(unknown)}")
    tx.execute("sync_ensure", {"tenant_id": tenant_id})
    state = {**get_state(tx, tenant_id), **changes}
    stored = {key: flag(state[key]) for key in _FLAGS}
    tx.execute("sync_save", {**state, **stored, "tenant_id": tenant_id})
    return _state(state)


def run_now(tx: Tx, tenant_id: str) -> dict[str, Any]:
    """Tenant-scoped run-now (reference §5.2): clear DND and back-off, make the heartbeat due."""
    return save_state(tx, tenant_id, dnd_until=None, backoff_until=None, heartbeat_due=True)


def _status_rows(tx: Tx, tenant_id: str | None, with_url_only: bool) -> list[dict[str, Any]]:
    rows = tx.all("sync_status", {"tenant_id": tenant_id, "with_url_only": flag(with_url_only)})
    result = []
    for row in rows:
        item = {
            "id": row["id"],
            "name": row["name"],
            "active": bool(row["active"]),
            "client_base_url": row["client_base_url"],
            "unreported_events": int(row["unreported_events"] or 0),
        }
        item.update(_state(row))
        result.append(item)
    return result


def sync_status(tx: Tx, now: float, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Every tenant (or one) with its sync state and ``unreported_events`` count, by id.

    The API derives ``next_sync_due``/``in_dnd`` from these facts, ``now`` and the interval.
    """
    del now  # the facts do not depend on it; kept so callers need not change when they do
    return _status_rows(tx, tenant_id, with_url_only=False)


def tenants_to_consider(tx: Tx, now: float) -> list[dict[str, Any]]:
    """Tenants with a ``client_base_url`` and their state, for the reporter's gating."""
    del now
    return _status_rows(tx, None, with_url_only=True)


def try_lock(tx: Tx, tenant_id: str, owner: str, until: float, now: float) -> bool:
    """Take (or extend) the tenant's reporter lock until ``until``; False if another holds it."""
    tx.execute("sync_ensure", {"tenant_id": tenant_id})
    params = {"tenant_id": tenant_id, "owner": owner, "until": until, "now": now}
    return tx.execute("sync_try_lock", params) > 0


def unlock(tx: Tx, tenant_id: str, owner: str) -> None:
    tx.execute("sync_unlock", {"tenant_id": tenant_id, "owner": owner})


def unlock_prefix(tx: Tx, prefix: str) -> int:
    """Drop every reporter lock whose owner starts with ``prefix`` (a gone run or node)."""
    return tx.execute("sync_unlock_prefix", {"prefix": prefix})
