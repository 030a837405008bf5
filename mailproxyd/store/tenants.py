"""Tenants: CRUD, API keys, suspensions (reference §5.2, §5.5, §2.5).

Inputs are already validated by the service layer. ``client_auth`` secrets (``token``,
``password``, ``signing_secret``) are encrypted with ``tx.box``; API-facing reads show
``token_set``/``password_set``/``signing_secret_set`` instead, ``get_for_sync`` decrypts them.
Tenant API keys are stored only as their SHA-256 digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailproxyd.core.crypto import digest_api_key, new_token
from mailproxyd.errors import Conflict, NotFound

from ._codec import dumps, flag, loads, seal, unseal
from .database import Tx

AUTH_SECRETS = ("token", "password", "signing_secret")
# Stored in the ``settings`` JSON column; everything else has its own column.
# ``client_base_url_untrusted``: the URL was set with a tenant key (reference §11.3: the http_url rule
# applies to it at every connection); absent when the admin set it.
UNTRUSTED_URL_KEY = "client_base_url_untrusted"
_SETTINGS_KEYS = (
    "client_sync_path",
    "client_attachment_path",
    "rate_limits",
    "large_file_config",
    UNTRUSTED_URL_KEY,
)
DEFAULTS: dict[str, Any] = {
    "client_sync_path": "/mail-proxy/sync",
    "client_attachment_path": "/mail-proxy/attachments",
    "client_auth": {"method": "none"},
    "active": True,
}
WHOLE_TENANT = "*"


def not_found(tenant_id: str) -> NotFound:
    return NotFound(f"Tenant '{tenant_id}' not found", code="tenant_not_found")


def _context(tenant_id: str, key: str) -> str:
    return f"tenant:{tenant_id}:client_auth.{key}"


def _seal_auth(tx: Tx, tenant_id: str, auth: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: seal(tx.box, str(value), _context(tenant_id, key)) if key in AUTH_SECRETS else value
        for key, value in auth.items()
        if value is not None
    }


def _columns(tx: Tx, tenant_id: str, fields: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Query parameters for a full tenant definition (defaults for absent fields)."""
    settings = {key: fields[key] for key in _SETTINGS_KEYS if fields.get(key) is not None}
    for key in ("client_sync_path", "client_attachment_path"):
        settings.setdefault(key, DEFAULTS[key])
    auth = fields.get("client_auth") or DEFAULTS["client_auth"]
    return {
        "tenant_id": tenant_id,
        "name": fields.get("name"),
        "client_base_url": fields.get("client_base_url"),
        "active": flag(fields.get("active", True) is not False),
        "settings": dumps(settings),
        "client_auth": dumps(_seal_auth(tx, tenant_id, auth)),
        "now": now,
    }


def _present(tx: Tx, row: Mapping[str, Any], *, secrets: bool) -> dict[str, Any]:
    settings = loads(row["settings"], {})
    stored_auth = loads(row["client_auth"], {}) or dict(DEFAULTS["client_auth"])
    auth: dict[str, Any] = {}
    for key, value in stored_auth.items():
        if key not in AUTH_SECRETS:
            auth[key] = value
        elif secrets:
            auth[key] = unseal(tx.box, value, _context(row["id"], key))
        else:
            auth[f"{key}_set"] = True
    tenant: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "client_base_url": row["client_base_url"],
        **{key: settings.get(key) for key in _SETTINGS_KEYS},
        "client_auth": auth,
        "active": bool(row["active"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if not secrets:
        tenant["api_key_set"] = row["api_key_digest"] is not None
        tenant["api_key_expires_at"] = row["api_key_expires_at"]
        tenant["suspended_batches"] = suspended_batches(tx, row["id"])
    return tenant


def _row(tx: Tx, tenant_id: str) -> dict[str, Any]:
    row = tx.one("tenant_get", {"tenant_id": tenant_id})
    if row is None:
        raise not_found(tenant_id)
    return row


def exists(tx: Tx, tenant_id: str) -> bool:
    return tx.one("tenant_get", {"tenant_id": tenant_id}) is not None


def create_or_replace(tx: Tx, tenant: Mapping[str, Any], now: float) -> dict[str, Any]:
    """``POST /tenant``: create, or fully replace keeping the API key.

    Returns ``{"created": bool, "api_key": str | None}``; a new tenant gets a fresh API key,
    shown only here.
    """
    tenant_id = str(tenant["id"])
    params = _columns(tx, tenant_id, tenant, now)
    if tx.one("tenant_get", {"tenant_id": tenant_id}) is not None:
        tx.execute("tenant_update", params)
        return {"created": False, "api_key": None}
    tx.execute("tenant_insert", params)
    return {"created": True, "api_key": issue_api_key(tx, tenant_id, now)}


def update(tx: Tx, tenant_id: str, changes: Mapping[str, Any], now: float) -> None:
    """``PUT /tenant/{id}``: partial update; ``None`` restores a default.

    ``client_auth`` merges key by key: a given key replaces, a ``None`` key removes, and the
    ``*_set`` flags of a read are ignored.
    """
    current = _present(tx, _row(tx, tenant_id), secrets=True)
    merged: dict[str, Any] = dict(current)
    for key, value in changes.items():
        if key in ("id", "created_at", "updated_at"):
            continue
        if key == "client_auth":
            auth = dict(current["client_auth"]) if value is not None else {}
            for auth_key, auth_value in (value or {}).items():
                if auth_key.endswith("_set"):
                    continue
                if auth_value is None:
                    auth.pop(auth_key, None)
                else:
                    auth[auth_key] = auth_value
            merged["client_auth"] = auth or None
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    tx.execute("tenant_update", _columns(tx, tenant_id, merged, now))


def get(tx: Tx, tenant_id: str) -> dict[str, Any]:
    """The API view of a tenant (no secrets); ``NotFound`` (``tenant_not_found``) if absent."""
    return _present(tx, _row(tx, tenant_id), secrets=False)


def get_for_sync(tx: Tx, tenant_id: str) -> dict[str, Any] | None:
    """The tenant with ``client_auth`` secrets in clear, for the reporter and attachments."""
    row = tx.one("tenant_get", {"tenant_id": tenant_id})
    return _present(tx, row, secrets=True) if row else None


def list_tenants(tx: Tx, active_only: bool = False) -> list[dict[str, Any]]:
    """Every tenant (API view), ordered by id."""
    rows = tx.all("tenant_list", {"active_only": flag(active_only)})
    return [_present(tx, row, secrets=False) for row in rows]


def count(tx: Tx, tenant_id: str | None = None) -> int:
    return int(tx.value("tenant_count", {"tenant_id": tenant_id}) or 0)


def delete(tx: Tx, tenant_id: str) -> None:
    """Delete the tenant with its key, accounts, messages, events, sync state and slots."""
    params = {"tenant_id": tenant_id}
    # Locked first, so an enqueue (which share-locks the tenant) cannot slip messages in
    # between the two deletes; messages are not covered by a cascading foreign key.
    if tx.one("lock_tenant", params) is None:
        raise not_found(tenant_id)
    tx.execute("tenant_messages_delete", params)
    if tx.execute("tenant_delete", params) == 0:
        raise not_found(tenant_id)


# ---------------------------------------------------------------- API keys


def issue_api_key(tx: Tx, tenant_id: str, now: float, expires_at: float | None = None) -> str:
    """A new API key for the tenant; the previous one stops working at once."""
    key = new_token()
    params = {
        "tenant_id": tenant_id,
        "digest": digest_api_key(key),
        "expires_at": expires_at,
        "now": now,
    }
    if tx.execute("tenant_set_api_key", params) == 0:
        raise not_found(tenant_id)
    return key


def revoke_api_key(tx: Tx, tenant_id: str, now: float) -> None:
    params = {"tenant_id": tenant_id, "digest": None, "expires_at": None, "now": now}
    if tx.execute("tenant_set_api_key", params) == 0:
        raise not_found(tenant_id)


def find_by_api_key(tx: Tx, api_key: str, now: float) -> dict[str, Any] | None:
    """The tenant (API view) whose unexpired key is ``api_key``, else None."""
    row = tx.one("tenant_by_api_key", {"digest": digest_api_key(api_key), "now": now})
    return _present(tx, row, secrets=False) if row else None


# ---------------------------------------------------------------- suspensions (reference §5.2, §8.5)


def suspended_batches(tx: Tx, tenant_id: str) -> list[str]:
    """``["*"]`` when the whole tenant is suspended, else the suspended codes ascending."""
    codes = [row["batch_code"] for row in tx.all("suspension_list", {"tenant_id": tenant_id})]
    return [WHOLE_TENANT] if WHOLE_TENANT in codes else sorted(codes)


def _suspension_state(tx: Tx, tenant_id: str, batch_code: str | None) -> dict[str, Any]:
    pending = tx.value("queued_count", {"tenant_id": tenant_id, "batch_code": batch_code})
    return {
        "tenant_id": tenant_id,
        "batch_code": batch_code,
        "suspended_batches": suspended_batches(tx, tenant_id),
        "pending_messages": int(pending or 0),
    }


def suspend(tx: Tx, tenant_id: str, batch_code: str | None, now: float) -> dict[str, Any]:
    """Suspend the tenant (``batch_code`` None) or one batch; returns the suspension state."""
    _row(tx, tenant_id)
    current = suspended_batches(tx, tenant_id)
    code = batch_code or WHOLE_TENANT
    # A batch suspended while the whole tenant is held changes nothing (reference §5.2).
    if not (code != WHOLE_TENANT and current == [WHOLE_TENANT]):
        tx.execute("suspension_add", {"tenant_id": tenant_id, "batch_code": code, "now": now})
    return _suspension_state(tx, tenant_id, batch_code)


def activate(tx: Tx, tenant_id: str, batch_code: str | None, now: float) -> dict[str, Any]:
    """Clear every suspension (``batch_code`` None) or one batch code.

    ``Conflict`` when activating one batch while the whole tenant is suspended.
    """
    _row(tx, tenant_id)
    if batch_code is None:
        tx.execute("suspension_clear", {"tenant_id": tenant_id})
    else:
        if suspended_batches(tx, tenant_id) == [WHOLE_TENANT]:
            raise Conflict(
                f"cannot activate batch '{batch_code}' while the whole tenant is suspended; "
                "activate the tenant first"
            )
        tx.execute("suspension_remove", {"tenant_id": tenant_id, "batch_code": batch_code})
    return _suspension_state(tx, tenant_id, batch_code)
