"""What the metrics read from the database at scrape time (reference §14).

Nothing here scans the queue: the pending count comes from partial indexes (SQLite) or a
trigger-maintained sum (PostgreSQL), the queue age from the first row of each queue-index
run, the unreported events from a count per tenant that triggers keep (a counter row on
SQLite, a sum of deltas on PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from .database import Tx

# The PostgreSQL delta rows of ``queue_count`` (and of ``unreported_count``) are folded when
# there are more.
FOLD_AT = 1000


def queue_gauges(tx: Tx, now: float) -> dict[str, Any]:
    """``pending`` (pending, deferred or sending), ``queue_age`` (seconds, 0 when nothing is
    ready) and ``unreported`` (events not yet acknowledged, per tenant)."""
    row = tx.one("gauge_queue", {"now": now}) or {}
    oldest = [row.get("oldest_deferred"), row.get("oldest_pending")]
    ready_since = min((float(ts) for ts in oldest if ts is not None), default=None)
    age = max(0.0, now - ready_since) if ready_since is not None else 0.0
    unreported = {str(r["tenant_id"]): int(r["n"]) for r in tx.all("gauge_unreported")}
    if int(row.get("count_rows") or 0) > FOLD_AT:
        tx.execute("queue_count_fold")
    if int(row.get("unreported_rows") or 0) > FOLD_AT:
        tx.execute("unreported_count_fold")
    return {"pending": int(row.get("pending") or 0), "queue_age": age, "unreported": unreported}


def with_tenant_names(tx: Tx, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (each with ``tenant_id``), each given its tenant's current ``tenant_name``
    (None when the tenant has none or is gone): the label of a count made outside a claim."""
    names: dict[str, Any] = {}
    for row in rows:
        tenant_id = str(row["tenant_id"])
        if tenant_id not in names:
            found = tx.one("tenant_get", {"tenant_id": tenant_id})
            names[tenant_id] = found["name"] if found else None
        row["tenant_name"] = names[tenant_id]
    return rows


def metric_accounts(tx: Tx) -> list[dict[str, Any]]:
    """Every account with its tenant's name: the series that exist from the start."""
    return tx.all("metric_accounts")
