"""Instance-wide state: instance and bounce settings, scheduler state, key fingerprint, and the
nodes table (reference §5.6, §3.2, §2.5, §8.3, §18.5). The bounce poller's own state (cursor,
lease, last failure) is ``store.bounces``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mailproxyd.errors import StartRefused

from . import bounces
from ._codec import dumps, loads, seal, unseal
from .database import Tx

# A node row whose heartbeat is younger than this is live (reference §8.3).
NODE_LIVE_SECONDS = 15.0

INSTANCE_DEFAULTS: dict[str, Any] = {
    "bounce_enabled": False,
    "bounce_imap_port": 993,
    "bounce_imap_folder": "INBOX",
    "bounce_imap_ssl": True,
    "bounce_poll_interval": 60,
}
_PASSWORD_CONTEXT = "instance:bounce_imap_password"


def _get(tx: Tx, key: str, default: Any = None) -> Any:
    return loads(tx.value("meta_get", {"key": key}), default)


def _set(tx: Tx, key: str, value: Any) -> None:
    tx.execute("meta_set", {"key": key, "value": dumps(value)})


def schema_version(tx: Tx) -> int:
    """The schema version of the open database."""
    return int(tx.value("schema_version_get") or 0)


# ---------------------------------------------------------------- scheduler and key


def get_scheduler_active(tx: Tx) -> bool:
    """The shared scheduler state; a new database starts inactive (reference §3.2)."""
    return bool(_get(tx, "scheduler_active", False))


def set_scheduler_active(tx: Tx, active: bool) -> None:
    _set(tx, "scheduler_active", bool(active))


def get_key_fingerprint(tx: Tx) -> str | None:
    """The instance-key fingerprint recorded in the database, None before the first start."""
    value = _get(tx, "key_fingerprint")
    return str(value) if value is not None else None


def set_key_fingerprint(tx: Tx, fingerprint: str) -> None:
    _set(tx, "key_fingerprint", fingerprint)


# ---------------------------------------------------------------- instance settings


def ensure_instance(tx: Tx, name: str | None, now: float) -> None:
    """Create the instance settings row (with ``name``) if it does not exist yet."""
    if _get(tx, "instance") is None:
        _set(tx, "instance", {"name": name, "created_at": now, "updated_at": now})


def _stored_instance(tx: Tx) -> dict[str, Any]:
    return dict(_get(tx, "instance", {}) or {})


def get_instance(tx: Tx) -> dict[str, Any]:
    """Instance settings for the API: defaults applied, ``bounce_imap_password_set`` flag only."""
    stored = _stored_instance(tx)
    result = {**INSTANCE_DEFAULTS, **stored}
    result["bounce_imap_password_set"] = result.pop("bounce_imap_password", None) is not None
    result.setdefault("name", None)
    result.setdefault("created_at", None)
    result.setdefault("updated_at", None)
    poller = bounces.get_state(tx)
    result["bounce_last_sync"] = poller["last_sync_ts"]
    result["bounce_last_error"] = poller["last_error"]
    result["bounce_last_error_ts"] = poller["last_error_ts"]
    return result


def get_instance_for_bounce(tx: Tx) -> dict[str, Any]:
    """Instance settings for the bounce poller, with the IMAP password in clear."""
    stored = _stored_instance(tx)
    result = {**INSTANCE_DEFAULTS, **stored}
    result["bounce_imap_password"] = unseal(
        tx.box, stored.get("bounce_imap_password"), _PASSWORD_CONTEXT
    )
    return result


def update_instance(tx: Tx, changes: Mapping[str, Any], now: float) -> None:
    """Partial update of ``name`` and the bounce settings; a ``None`` value restores the default.

    ``bounce_imap_password`` is encrypted before it is stored.
    """
    stored = _stored_instance(tx)
    for key, value in changes.items():
        if value is None:
            stored.pop(key, None)
        elif key == "bounce_imap_password":
            stored[key] = seal(tx.box, str(value), _PASSWORD_CONTEXT)
        else:
            stored[key] = value
    stored.setdefault("created_at", now)
    stored["updated_at"] = now
    _set(tx, "instance", stored)


# ---------------------------------------------------------------- nodes (reference §8.3, §18.5)


def _is_live(
    row: Mapping[str, Any], host: str, now: float, pid_alive: Callable[[int], bool]
) -> bool:
    if now - float(row["heartbeat_ts"]) >= NODE_LIVE_SECONDS:
        return False
    # A row naming this host whose process is gone belongs to a node that crashed just now.
    return not (row["host"] == host and not pid_alive(int(row["pid"])))


def register_node(
    tx: Tx,
    node_id: str,
    host: str,
    pid: int,
    now: float,
    pid_alive: Callable[[int], bool],
    *,
    single_node: bool | None = None,
) -> bool:
    """Insert or take over this node's row; return True when an older row was taken over.

    Refuses (``StartRefused``) when a live row holds ``node_id``, and — on SQLite, or when
    ``single_node`` — when any other node's row is live. ``pid_alive(pid)`` tells whether a
    process of this host is running. After a take-over the caller releases the node's leases
    (``queue.release_node``).
    """
    if single_node is None:
        single_node = tx.backend == "sqlite"
    existing = tx.one("node_get", {"node_id": node_id})
    if existing is not None and _is_live(existing, host, now, pid_alive):
        raise StartRefused(f"node id '{node_id}' is already active on this database")
    if single_node:
        for row in tx.all("node_list"):
            if row["node_id"] != node_id and _is_live(row, host, now, pid_alive):
                raise StartRefused(
                    f"database is already served by node '{row['node_id']}' "
                    "(SQLite supports one node)"
                )
    tx.execute("node_upsert", {"node_id": node_id, "host": host, "pid": pid, "now": now})
    return existing is not None


def heartbeat_node(tx: Tx, node_id: str, now: float) -> bool:
    """Refresh the node's heartbeat; False when its row is gone (taken over or deleted)."""
    return tx.execute("node_heartbeat", {"node_id": node_id, "now": now}) > 0


def delete_node(tx: Tx, node_id: str) -> None:
    """Remove the node's row (clean shutdown)."""
    tx.execute("node_delete", {"node_id": node_id})


def list_nodes(tx: Tx) -> list[dict[str, Any]]:
    """Every node row, ordered by id."""
    return tx.all("node_list")
