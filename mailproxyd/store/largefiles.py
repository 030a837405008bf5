"""Uploaded large files (reference §11.8, §5.8): where each one is, and until when.

One record per upload, kept in the instance-wide ``meta`` table under ``large_file:<file_id>``
(a record is written once, read by the download route and deleted by the expiry sweep; no
query needs more than the key). Records outlive their tenant: a deleted tenant's files stay
until their expiry sweep (reference §5.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._codec import dumps, loads
from .database import Tx

_PREFIX = "large_file:"


def record(tx: Tx, file_id: str, entry: Mapping[str, Any]) -> None:
    """Remember an upload: ``{"tenant_id", "url", "filename", "size", "expires_at"}``."""
    tx.execute("meta_set", {"key": _PREFIX + file_id, "value": dumps(dict(entry))})


def get(tx: Tx, file_id: str) -> dict[str, Any] | None:
    found = loads(tx.value("meta_get", {"key": _PREFIX + file_id}), None)
    return dict(found) if isinstance(found, dict) else None


def expired(tx: Tx, now: float, limit: int = 1000) -> list[dict[str, Any]]:
    """Records whose expiry has passed (``file_id`` included), at most ``limit``."""
    out: list[dict[str, Any]] = []
    for row in tx.all("meta_list_prefix", {"prefix": _PREFIX + "%"}):
        entry = loads(row["value"], None)
        if isinstance(entry, dict) and float(entry.get("expires_at") or 0) <= now:
            out.append({**entry, "file_id": str(row["key"])[len(_PREFIX) :]})
            if len(out) >= limit:
                break
    return out


def forget(tx: Tx, file_id: str) -> None:
    tx.execute("meta_delete", {"key": _PREFIX + file_id})
