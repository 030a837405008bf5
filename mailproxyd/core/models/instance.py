"""Instance settings payloads (reference §5.6): name and bounce mailbox, validation, wire form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mailproxyd.core.addresses import InvalidAddress, parse_bare_address
from mailproxyd.core.models.fields import Field, check, names, table
from mailproxyd.core.payload_fields import NAME_MAX, FieldChecker
from mailproxyd.core.timefmt import iso

API_TOKEN_REFUSAL: Final = "use mail-proxy NAME token --regenerate"
INSTANCE_DEFAULTS: Final[dict[str, Any]] = {
    "bounce_enabled": False,
    "bounce_imap_port": 993,
    "bounce_imap_folder": "INBOX",
    "bounce_imap_ssl": True,
    "bounce_poll_interval": 60,
}
_INSTANCE_READ_ONLY: Final = frozenset(
    {
        "version",
        "bounce_imap_password_set",
        "bounce_last_sync",
        "bounce_last_error",
        "bounce_last_error_ts",
        "created_at",
        "updated_at",
    }
)
#: The fields of an instance update, in wire order (reference §5.6).
INSTANCE_FIELDS: Final = (
    Field("name", "text", max_length=NAME_MAX),
    Field("bounce_enabled", "boolean"),
    Field("bounce_imap_host", "host", max_length=253),
    Field("bounce_imap_port", "integer", minimum=1, maximum=65535),
    Field("bounce_imap_user", "string", min_length=1),
    Field("bounce_imap_password", "string", min_length=1, description="write-only"),
    Field("bounce_imap_folder", "string", min_length=1),
    Field("bounce_imap_ssl", "boolean"),
    Field("bounce_poll_interval", "integer", minimum=10, maximum=3600),
    Field("bounce_return_path", "string", description="a bare e-mail address"),
)
_INSTANCE_TABLE: Final = table(INSTANCE_FIELDS)
_INSTANCE_FIELDS: Final = names(INSTANCE_FIELDS)


def _instance_value(f: FieldChecker, key: str, value: Any) -> Any:
    if key == "bounce_return_path":
        try:
            return parse_bare_address(value).addr_spec if type(value) is str else _bad(f, key)
        except InvalidAddress:
            return _bad(f, key)
    return check(f, _INSTANCE_TABLE[key], value)


def _bad(f: FieldChecker, key: str) -> None:
    f.fail(key, "must be an e-mail address")


def validate_instance_update(
    body: Any, *, current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``PUT /instance``: the changes of a partial update of the name and bounce settings.

    ``api_token`` is refused (reference §5.6). Enabling bounce detection needs a host, a user and a
    password, given now or already stored in ``current`` (which may carry the password or
    only ``bounce_imap_password_set``).
    """
    f = FieldChecker(body)
    if "api_token" in f.body:
        f.fail("api_token", API_TOKEN_REFUSAL)  # first: it is the one the caller must read
    keys = f.known(_INSTANCE_FIELDS | {"api_token"}, _INSTANCE_READ_ONLY)
    changes: dict[str, Any] = {}
    for key in keys:
        if key != "api_token":
            value = f.body[key]
            changes[key] = None if value is None else _instance_value(f, key, value)
    stored = {**INSTANCE_DEFAULTS, **{k: v for k, v in (current or {}).items() if v is not None}}
    merged = {**stored, **changes}
    if merged.get("bounce_enabled"):
        for key in ("bounce_imap_host", "bounce_imap_user", "bounce_imap_password"):
            if key in changes:
                present = changes[key] is not None
            else:
                present = stored.get(key) is not None or bool(stored.get(f"{key}_set"))
            if not present:
                f.fail(key, "required when bounce_enabled is true")
    f.raise_if_failed()
    return changes


_INSTANCE_ORDER: Final = (
    "name",
    "version",
    "bounce_enabled",
    "bounce_imap_host",
    "bounce_imap_port",
    "bounce_imap_user",
    "bounce_imap_password_set",
    "bounce_imap_folder",
    "bounce_imap_ssl",
    "bounce_poll_interval",
    "bounce_return_path",
    "bounce_last_sync",
    "bounce_last_error",
    "bounce_last_error_ts",
    "created_at",
    "updated_at",
)


def present_instance(instance: Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of the instance settings (reference §5.6): password flag, defaults, ISO times."""
    full = {**INSTANCE_DEFAULTS, **{k: v for k, v in instance.items() if v is not None}}
    if "bounce_imap_password_set" not in full:
        full["bounce_imap_password_set"] = full.get("bounce_imap_password") is not None
    for key in ("created_at", "updated_at"):
        if isinstance(full.get(key), (int, float)):
            full[key] = iso(float(full[key]))
    for key in ("bounce_last_sync", "bounce_last_error_ts"):
        if isinstance(full.get(key), float):
            full[key] = int(full[key])
    return {key: full[key] for key in _INSTANCE_ORDER if full.get(key) is not None}
