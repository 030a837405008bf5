"""SMTP accounts of a tenant, always addressed by ``(tenant_id, id)`` (reference §5.4).

Settings arrive validated and normalised from the service layer and are stored as one JSON
document; the password is encrypted with ``tx.box``. API reads carry ``password_set``;
``get_for_delivery`` returns the password in clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailproxyd.errors import NotFound

from . import tenants
from ._codec import dumps, flag, loads, seal, unseal
from ._eventlog import error_metadata, event_row, record_events
from .database import Tx

ACCOUNT_DELETED = "account deleted"
# Keys with their own column (or none at all) rather than a place in the settings document.
_NOT_SETTINGS = frozenset({"id", "tenant_id", "password", "is_default", "created_at", "updated_at"})


def not_found(tenant_id: str, account_id: str) -> NotFound:
    return NotFound(
        f"Account '{account_id}' not found for tenant '{tenant_id}'", code="account_not_found"
    )


def _context(tenant_id: str, account_id: str) -> str:
    return f"account:{tenant_id}:{account_id}:password"


def _present(tx: Tx, row: Mapping[str, Any], *, secrets: bool) -> dict[str, Any]:
    account: dict[str, Any] = {
        **loads(row["settings"], {}),
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "is_default": bool(row["is_default"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if secrets:
        account["password"] = unseal(tx.box, row["password"], _context(row["tenant_id"], row["id"]))
    else:
        account["password_set"] = row["password"] is not None
    return account


def _row(tx: Tx, tenant_id: str, account_id: str) -> dict[str, Any]:
    row = tx.one("account_get", {"tenant_id": tenant_id, "account_id": account_id})
    if row is None:
        raise not_found(tenant_id, account_id)
    return row


def _write(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    settings: Mapping[str, Any],
    password_token: str | None,
    is_default: bool,
    now: float,
    *,
    insert: bool,
) -> None:
    params = {
        "tenant_id": tenant_id,
        "account_id": account_id,
        "settings": dumps({k: v for k, v in settings.items() if v is not None}),
        "password": password_token,
        "is_default": flag(is_default),
        "now": now,
    }
    tx.execute("account_insert" if insert else "account_update", params)
    if is_default:
        tx.execute("account_clear_default", params)


def create_or_replace(tx: Tx, tenant_id: str, account: Mapping[str, Any], now: float) -> bool:
    """``POST /account``: create or fully replace; True when created.

    ``password``: absent keeps the stored one, ``None`` clears it, a string replaces it.
    ``NotFound`` (``tenant_not_found``) when the tenant does not exist.
    """
    if not tenants.exists(tx, tenant_id):
        raise tenants.not_found(tenant_id)
    account_id = str(account["id"])
    existing = tx.one("account_get", {"tenant_id": tenant_id, "account_id": account_id})
    if "password" in account:
        password = seal(tx.box, account["password"], _context(tenant_id, account_id))
    else:
        password = existing["password"] if existing else None
    settings = {k: v for k, v in account.items() if k not in _NOT_SETTINGS}
    is_default = bool(account.get("is_default", False))
    _write(tx, tenant_id, account_id, settings, password, is_default, now, insert=existing is None)
    return existing is None


def update(tx: Tx, tenant_id: str, account_id: str, changes: Mapping[str, Any], now: float) -> None:
    """``PUT /account/{id}``: partial update; ``None`` restores a default (clears ``password``)."""
    row = _row(tx, tenant_id, account_id)
    settings = dict(loads(row["settings"], {}))
    password = row["password"]
    is_default = bool(row["is_default"])
    for key, value in changes.items():
        if key == "password":
            password = seal(tx.box, value, _context(tenant_id, account_id))
        elif key == "is_default":
            is_default = bool(value)
        elif key in _NOT_SETTINGS:
            continue
        elif value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    _write(tx, tenant_id, account_id, settings, password, is_default, now, insert=False)


def get(tx: Tx, tenant_id: str, account_id: str) -> dict[str, Any]:
    """The API view of an account; ``NotFound`` (``account_not_found``) if absent."""
    return _present(tx, _row(tx, tenant_id, account_id), secrets=False)


def get_for_delivery(tx: Tx, tenant_id: str, account_id: str) -> dict[str, Any] | None:
    """The account with its password in clear, for the SMTP driver; None if it is gone."""
    row = tx.one("account_get", {"tenant_id": tenant_id, "account_id": account_id})
    return _present(tx, row, secrets=True) if row else None


def list_accounts(tx: Tx, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's accounts (API view), ordered by id."""
    rows = tx.all("account_list", {"tenant_id": tenant_id})
    return [_present(tx, row, secrets=False) for row in rows]


def account_ids(tx: Tx, tenant_id: str) -> set[str]:
    """The ids of the tenant's accounts (for validating a batch)."""
    return {row["id"] for row in tx.all("account_list", {"tenant_id": tenant_id})}


def default_account_id(tx: Tx, tenant_id: str) -> str | None:
    """The tenant's default account: the one with ``is_default``, else its only account (reference §6.2)."""
    rows = tx.all("account_list", {"tenant_id": tenant_id})
    for row in rows:
        if row["is_default"]:
            return str(row["id"])
    return str(rows[0]["id"]) if len(rows) == 1 else None


def count(tx: Tx, tenant_id: str | None = None) -> int:
    return int(tx.value("account_count", {"tenant_id": tenant_id}) or 0)


def delete(tx: Tx, tenant_id: str, account_id: str, now: float) -> int:
    """Delete the account; its queued messages fail with ``account deleted``.

    Returns that count (``failed_messages``). Messages being sent are flagged so that an attempt
    ending without ``sent``/``error`` fails them the same way.
    """
    _row(tx, tenant_id, account_id)
    params = {"tenant_id": tenant_id, "account_id": account_id}
    queued = tx.all("account_queued_messages", params)
    tx.many(
        "message_fail",
        [{"pk": row["pk"], "error": ACCOUNT_DELETED, "now": now} for row in queued],
    )
    events = [event_row(row, "error", now, ACCOUNT_DELETED, error_metadata(row)) for row in queued]
    record_events(tx, events, now)
    tx.execute("account_mark_sending_deleted", params)
    tx.execute("account_delete", params)
    return len(queued)
