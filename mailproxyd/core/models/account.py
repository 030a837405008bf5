"""SMTP account payloads (reference §5.4, §10.1): validation, ``use_tls`` derivation, wire form.

``validate_account`` checks a full definition (``POST /account``) and fills in defaults;
``validate_account_update`` returns the changes of a partial update (``PUT``), where
``None`` sends a field back to its default. ``present_account`` is the read side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from mailproxyd.core.models.fields import Field, check, names, table
from mailproxyd.core.payload_fields import FieldChecker
from mailproxyd.core.timefmt import iso

TlsMode = Literal["none", "opportunistic", "starttls", "implicit"]
TLS_MODES: Final[tuple[str, ...]] = get_args(TlsMode)
ACCOUNT_DEFAULTS: Final[dict[str, Any]] = {
    "tls_verify": True,
    "limit_behavior": "defer",
    "max_concurrent": 3,
    "ttl": 300,
    "is_default": False,
}
_LEGACY_ACCOUNT_FIELDS: Final = frozenset(
    {"is_pec_account", "imap_host", "imap_port", "imap_user", "imap_password", "imap_ssl"}
)
_ACCOUNT_READ_ONLY: Final = frozenset({"password_set", "created_at", "updated_at"})
LimitBehaviorName = Literal["defer", "reject"]
LIMIT_BEHAVIORS: Final[tuple[str, ...]] = get_args(LimitBehaviorName)
_LIMIT = "sends allowed per window; 0 or null: unlimited (reference §9)"

#: The fields of an account request, in wire order (reference §5.4, §10.1).
ACCOUNT_FIELDS: Final = (
    Field("id", "identifier", required=True, patch=False, description="account id"),
    Field("tenant_id", "identifier", patch=False, description="owner (admin token only)"),
    Field("host", "host", required=True, max_length=253, description="SMTP host"),
    Field("port", "integer", required=True, minimum=1, maximum=65535),
    Field("user", "string", description="SMTP AUTH user; empty: no AUTH"),
    Field("password", "string", description="SMTP AUTH password (write-only)"),
    Field("tls_mode", "choice", enum=TLS_MODES),
    Field("use_tls", "boolean", description="legacy; derived into tls_mode"),
    Field("tls_verify", "boolean"),
    Field("limit_per_minute", "integer", minimum=0, description=_LIMIT),
    Field("limit_per_hour", "integer", minimum=0, description=_LIMIT),
    Field("limit_per_day", "integer", minimum=0, description=_LIMIT),
    Field("limit_behavior", "choice", enum=LIMIT_BEHAVIORS),
    Field("batch_size", "integer", minimum=1, maximum=10000),
    Field("max_concurrent", "integer", minimum=1, maximum=50),
    Field("ttl", "integer", minimum=10, maximum=3600, description="idle connection seconds"),
    Field("is_default", "boolean"),
)
_ACCOUNT_TABLE: Final = table(ACCOUNT_FIELDS)
_ACCOUNT_FIELDS: Final = names(ACCOUNT_FIELDS)


def derive_tls_mode(tls_mode: str | None, use_tls: bool | None, port: int | None) -> str:
    """The ``tls_mode`` of reference §10.1 from an explicit mode, the legacy ``use_tls`` and the port.

    The caller has already checked that the two do not conflict (:func:`tls_conflict`).
    """
    if tls_mode is not None:
        return tls_mode
    if use_tls is False:
        return "none"
    if port == 465:
        return "implicit"
    return "starttls" if use_tls else "opportunistic"


def tls_conflict(tls_mode: str | None, use_tls: bool | None) -> bool:
    """True when ``use_tls`` contradicts ``tls_mode`` (a 422, reference §10.1)."""
    if tls_mode is None or use_tls is None:
        return False
    return use_tls != (tls_mode != "none")


def use_tls_of(tls_mode: str) -> bool | None:
    """The derived legacy ``use_tls`` of an account: omitted (``None``) for opportunistic."""
    if tls_mode == "opportunistic":
        return None
    return tls_mode != "none"


def _account_value(f: FieldChecker, key: str, value: Any) -> Any:
    """One account field, checked; ``None`` input has been handled by the caller."""
    checked = check(f, _ACCOUNT_TABLE[key], value)
    if key.startswith("limit_per_"):
        return checked or None  # 0 means unlimited, like null
    return checked


def validate_account(body: Any, *, batch_default: int | None = None) -> dict[str, Any]:
    """``POST /account``: a full account definition with defaults (reference §5.4, §10.1).

    ``password`` is present in the result only when the body has it (absent keeps the stored
    password on replacement; ``None`` clears it). ``batch_size`` only when given, so accounts
    without one follow ``GMP_BATCH_SIZE_PER_ACCOUNT`` (``batch_default`` is accepted for
    symmetry with the caller's settings and not stored). ``tenant_id`` is the caller's to
    resolve (reference §4.3) and is not part of the result.
    """
    del batch_default
    f = FieldChecker(body)
    keys = f.known(_ACCOUNT_FIELDS, _LEGACY_ACCOUNT_FIELDS | _ACCOUNT_READ_ONLY)
    values: dict[str, Any] = {}
    for key in ("id", "host", "port"):
        if f.body.get(key) is None:
            f.fail(key, "required")
    for key in keys:
        if f.body[key] is not None:
            values[key] = _account_value(f, key, f.body[key])
    if tls_conflict(values.get("tls_mode"), values.get("use_tls")):
        f.fail("use_tls", f"conflicts with tls_mode '{values['tls_mode']}'")
    f.raise_if_failed()
    account: dict[str, Any] = {
        "id": values["id"],
        "host": values["host"],
        "port": values["port"],
        "user": values.get("user") or None,
        "tls_mode": derive_tls_mode(values.get("tls_mode"), values.get("use_tls"), values["port"]),
        "limit_per_minute": values.get("limit_per_minute"),
        "limit_per_hour": values.get("limit_per_hour"),
        "limit_per_day": values.get("limit_per_day"),
    }
    for key, default in ACCOUNT_DEFAULTS.items():
        account[key] = values.get(key, default)
    if values.get("batch_size") is not None:
        account["batch_size"] = values["batch_size"]
    if "password" in f.body:
        account["password"] = values.get("password")
    return account


def validate_account_update(
    body: Any, *, account_id: str, current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``PUT /account/{id}``: the changes of a partial update (reference §5.4).

    ``None`` values return a field to its default (for ``password``: clear it). ``use_tls``
    never appears in the result; it is turned into ``tls_mode`` using the new or, with
    ``current``, the stored port. ``id`` may only repeat ``account_id``.
    """
    f = FieldChecker(body)
    keys = f.known(_ACCOUNT_FIELDS, _LEGACY_ACCOUNT_FIELDS | _ACCOUNT_READ_ONLY)
    changes: dict[str, Any] = {}
    for key in keys:
        if key in ("id", "tenant_id"):
            continue
        value = f.body[key]
        if value is None:
            if key in ("host", "port"):
                f.fail(key, "required")
            changes[key] = None
        else:
            changes[key] = _account_value(f, key, value)
    given_id = f.body.get("id")
    if given_id is not None and given_id != account_id:
        f.fail("id", "cannot be changed")
    if tls_conflict(changes.get("tls_mode"), changes.get("use_tls")):
        f.fail("use_tls", f"conflicts with tls_mode '{changes['tls_mode']}'")
    f.raise_if_failed()
    if "user" in changes and not changes["user"]:
        changes["user"] = None
    for key in ("tls_verify", "limit_behavior", "max_concurrent", "ttl", "is_default"):
        if key in changes and changes[key] is None:
            changes[key] = ACCOUNT_DEFAULTS[key]
    use_tls = changes.pop("use_tls", None)
    port = changes.get("port") or (current or {}).get("port")
    if "tls_mode" in changes and changes["tls_mode"] is None:
        changes["tls_mode"] = derive_tls_mode(None, use_tls, port)
    elif "tls_mode" not in changes and use_tls is not None:
        stored = (current or {}).get("tls_mode")
        # A use_tls that agrees with the stored mode keeps it (starttls on 465 stays starttls).
        if stored is None or tls_conflict(stored, use_tls) or stored == "opportunistic":
            changes["tls_mode"] = derive_tls_mode(None, use_tls, port)
    return changes


def with_account_defaults(account: Mapping[str, Any]) -> dict[str, Any]:
    """A stored account with every default applied (for delivery and for presentation)."""
    full = dict(account)
    for key, default in ACCOUNT_DEFAULTS.items():
        if full.get(key) is None:
            full[key] = default
    if full.get("tls_mode") is None:
        full["tls_mode"] = derive_tls_mode(None, full.get("use_tls"), full.get("port"))
    full.pop("use_tls", None)
    return full


#: Wire order of a response: the request fields, the password as a flag, then the times.
_ACCOUNT_ORDER: Final = (
    *("password_set" if field.name == "password" else field.name for field in ACCOUNT_FIELDS),
    "created_at",
    "updated_at",
)


def present_account(account: Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of a stored account (reference §5.4): no password, ``password_set``, derived
    ``use_tls``, ``batch_size`` only when set, ISO times, ``null`` values omitted."""
    full = with_account_defaults(account)
    if "password_set" not in full:
        full["password_set"] = full.get("password") is not None
    full["password_set"] = bool(full["password_set"])
    full["use_tls"] = use_tls_of(full["tls_mode"])
    for key in ("created_at", "updated_at"):
        if isinstance(full.get(key), (int, float)):
            full[key] = iso(float(full[key]))
    return {key: full[key] for key in _ACCOUNT_ORDER if full.get(key) is not None}
