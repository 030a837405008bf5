"""SMTP session slots: ``max_concurrent`` per account across processes and nodes (reference §8.4).

A sender holds one slot per open SMTP session, with a lease it renews; a crashed holder's slot
lapses when its lease passes. Acquisition locks the account row on PostgreSQL (SQLite's write
transaction serialises it already).
"""

from __future__ import annotations

from .database import Tx


def acquire(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    owner: str,
    max_concurrent: int,
    now: float,
    lease_until: float,
) -> int | None:
    """A slot id when fewer than ``max_concurrent`` live sessions exist, else None."""
    ids = {"tenant_id": tenant_id, "account_id": account_id}
    tx.one("lock_account", ids)
    tx.execute("session_expire_account", {**ids, "now": now})
    if int(tx.value("session_count", ids) or 0) >= max_concurrent:
        return None
    return int(tx.value("session_insert", {**ids, "owner": owner, "lease_until": lease_until}))


def renew(tx: Tx, slot_id: int, owner: str, lease_until: float) -> bool:
    """Extend a held slot; False when it lapsed and was reclaimed."""
    params = {"slot_id": int(slot_id), "owner": owner, "lease_until": lease_until}
    return tx.execute("session_renew", params) > 0


def release(tx: Tx, slot_id: int) -> None:
    tx.execute("session_release", {"slot_id": int(slot_id)})


def release_owner(tx: Tx, owner: str) -> int:
    """Release every slot of ``owner`` or of owners ``owner/…`` (a node id at start)."""
    return tx.execute("session_release_owner", {"owner": owner, "prefix": owner + "/"})


def release_prefix(tx: Tx, prefix: str) -> int:
    """Release every slot whose owner starts with ``prefix`` (one worker run)."""
    return tx.execute("session_release_owner", {"owner": prefix, "prefix": prefix})


def expire(tx: Tx, now: float) -> int:
    """Drop every lapsed slot; returns how many."""
    return tx.execute("session_expire", {"now": now})
