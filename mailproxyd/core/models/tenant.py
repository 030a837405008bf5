"""Tenant payloads (reference §5.5, §11.8): validation, ``client_auth`` patches, wire form.

``validate_tenant`` checks a full definition (``POST /tenant``) and fills in defaults;
``validate_tenant_update`` returns the changes of a partial update (``PUT``), with
``client_auth`` as a key-by-key patch. ``present_tenant`` masks the secrets on the way out.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from mailproxyd.core.limits import MAX_INT
from mailproxyd.core.models.fields import Field, check, names, table
from mailproxyd.core.payload_fields import NAME_MAX, FieldChecker
from mailproxyd.core.timefmt import iso

AuthMethodName = Literal["none", "bearer", "basic"]
AUTH_METHODS: Final[tuple[str, ...]] = get_args(AuthMethodName)
AUTH_SECRETS: Final = ("token", "password", "signing_secret")
LARGE_FILE_ACTIONS: Final = ("warn", "reject", "rewrite")
#: fsspec protocol → the package that provides it (``file`` is built in).
STORAGE_PACKAGES: Final = {"s3": "s3fs", "gs": "gcsfs", "az": "adlfs"}
TENANT_DEFAULTS: Final[dict[str, Any]] = {
    "client_sync_path": "/mail-proxy/sync",
    "client_attachment_path": "/mail-proxy/attachments",
    "active": True,
}
LARGE_FILE_DEFAULTS: Final[dict[str, Any]] = {
    "enabled": False,
    "max_size_mb": 10,
    "action": "warn",
    "file_ttl_days": 30,
}
_TENANT_READ_ONLY: Final = frozenset(
    {"suspended_batches", "api_key_set", "api_key_expires_at", "created_at", "updated_at"}
)
_AUTH_READ_ONLY: Final = frozenset({"token_set", "password_set", "signing_secret_set"})
_SECRET = "write-only; read back as a *_set flag"
#: ``client_auth``: how the node authenticates to the tenant (reference §13.2).
CLIENT_AUTH_FIELDS: Final = (
    Field("method", "choice", enum=AUTH_METHODS),
    Field("user", "string", min_length=1),
    Field("token", "string", min_length=1, description=_SECRET),
    Field("password", "string", min_length=1, description=_SECRET),
    Field("signing_secret", "string", min_length=16, description=_SECRET),
)
_AUTH_ORDER: Final = tuple(field.name for field in CLIENT_AUTH_FIELDS)
_LIMIT = "sends allowed per window over all accounts; 0 or null: unlimited"
RATE_LIMIT_FIELDS: Final = (
    Field("hourly", "integer", minimum=0, description=_LIMIT),
    Field("daily", "integer", minimum=0, description=_LIMIT),
)
LARGE_FILE_FIELDS: Final = (
    Field("enabled", "boolean"),
    Field("max_size_mb", "number", exclusive_minimum=0, maximum=MAX_INT),
    Field("action", "choice", enum=LARGE_FILE_ACTIONS),
    Field(
        "storage_url",
        "string",
        pattern=r"^(s3://|gs://|az://|file:///)\S*$",
        description="fsspec URL: s3://, gs://, az:// or file:///",
    ),
    Field("public_base_url", "http_url"),
    Field("file_ttl_days", "integer", minimum=1, maximum=3650),
)
#: The fields of a tenant request, in wire order (reference §5.5).
TENANT_FIELDS: Final = (
    Field("id", "identifier", required=True, patch=False),
    Field("name", "text", max_length=NAME_MAX),
    Field("client_base_url", "http_url"),
    Field("client_sync_path", "path"),
    Field("client_attachment_path", "path"),
    Field("client_auth", "object", fields=CLIENT_AUTH_FIELDS),
    Field("rate_limits", "object", fields=RATE_LIMIT_FIELDS),
    Field("large_file_config", "object", fields=LARGE_FILE_FIELDS),
    Field("active", "boolean"),
)
_TENANT_TABLE: Final = table(TENANT_FIELDS)
_TENANT_FIELDS: Final = names(TENANT_FIELDS)
_AUTH_FIELDS: Final = names(CLIENT_AUTH_FIELDS)
_LARGE_FILE_FIELDS: Final = names(LARGE_FILE_FIELDS)

#: ``installed(package)`` tells whether an optional storage package can be imported.
Installed = Callable[[str], bool]


def _package_installed(package: str) -> bool:
    # Looking a module up on sys.path is not I/O of the kind the core avoids: nothing is
    # read or imported, and the answer only changes when the environment is reinstalled.
    return importlib.util.find_spec(package) is not None


def _client_auth(f: FieldChecker, value: Any) -> dict[str, Any] | None:
    """The given keys of a ``client_auth`` object, checked; ``None`` values kept."""
    sub = FieldChecker(value, "client_auth.")
    keys = sorted(sub.known(_AUTH_FIELDS, _AUTH_READ_ONLY), key=_AUTH_ORDER.index)
    auth: dict[str, Any] = {}
    for key in keys:
        item = sub.body[key]
        if item is None:
            auth[key] = None
        elif key == "method":
            auth[key] = sub.choice(key, item, AUTH_METHODS)
        elif type(item) is not str or not item:
            sub.fail(key, "must be a non-empty string")
        elif key == "signing_secret" and len(item) < 16:
            sub.fail(key, "must be at least 16 characters")
        else:
            auth[key] = item
    f.errors.extend(sub.errors)
    return None if sub.errors else auth


def _check_auth_complete(f: FieldChecker, present: Callable[[str], bool], method: str) -> None:
    if method == "bearer" and not present("token"):
        f.fail("client_auth.token", "required when method is bearer")
    if method == "basic":
        for key in ("user", "password"):
            if not present(key):
                f.fail(f"client_auth.{key}", "required when method is basic")


def _rate_limits(f: FieldChecker, value: Any) -> dict[str, int] | None:
    sub = FieldChecker(value, "rate_limits.")
    sub.known(names(RATE_LIMIT_FIELDS))
    limits: dict[str, int] = {}
    for key in ("hourly", "daily"):
        item = sub.body.get(key)
        if item is not None:
            limit = sub.int_between(key, item, 0, None)
            if limit:  # 0 means unlimited, as for accounts
                limits[key] = limit
    f.errors.extend(sub.errors)
    return limits or None


def _large_file_config(f: FieldChecker, value: Any, installed: Installed) -> dict[str, Any]:
    sub = FieldChecker(value, "large_file_config.")
    sub.known(_LARGE_FILE_FIELDS)
    body = sub.body
    config = dict(LARGE_FILE_DEFAULTS)
    if body.get("enabled") is not None:
        config["enabled"] = sub.boolean("enabled", body["enabled"])
    size = body.get("max_size_mb")
    if size is not None:
        if type(size) in (int, float) and 0 < size <= MAX_INT:
            config["max_size_mb"] = size
        elif type(size) in (int, float) and size > MAX_INT:
            sub.fail("max_size_mb", f"must be a number between 0 and {MAX_INT}")
        else:
            sub.fail("max_size_mb", "must be a number > 0")
    if body.get("action") is not None:
        config["action"] = sub.choice("action", body["action"], LARGE_FILE_ACTIONS)
    if body.get("file_ttl_days") is not None:
        config["file_ttl_days"] = sub.int_between("file_ttl_days", body["file_ttl_days"], 1, 3650)
    if body.get("public_base_url") is not None:
        config["public_base_url"] = sub.http_url("public_base_url", body["public_base_url"])
    storage_url = body.get("storage_url")
    if storage_url is not None:
        scheme = _storage_scheme(storage_url)
        if scheme is None:
            sub.fail("storage_url", "must be an s3://, gs://, az:// or file:/// URL")
        else:
            config["storage_url"] = storage_url
            package = STORAGE_PACKAGES.get(scheme)
            if package is not None and not installed(package):
                sub.fail(
                    "storage_url",
                    f"{scheme}:// storage needs the {package} package, which is not installed",
                )
            if scheme == "file" and config.get("public_base_url") is None:
                sub.fail("public_base_url", "required for file:// storage")
    if config.get("enabled") and config.get("action") == "rewrite" and storage_url is None:
        sub.fail("storage_url", "required when action is rewrite")
    f.errors.extend(sub.errors)
    return config


def _storage_scheme(url: Any) -> str | None:
    if type(url) is not str or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme == "file":
        return "file" if not parts.netloc and parts.path.startswith("/") else None
    if parts.scheme in STORAGE_PACKAGES and parts.netloc:
        return parts.scheme
    return None


def _tenant_value(f: FieldChecker, key: str, value: Any, installed: Installed) -> Any:
    if key == "client_auth":
        return _client_auth(f, value)
    if key == "rate_limits":
        return _rate_limits(f, value)
    if key == "large_file_config":
        return _large_file_config(f, value, installed)
    checked = check(f, _TENANT_TABLE[key], value)
    return value if key == "id" else checked


def validate_tenant(body: Any, *, installed: Installed | None = None) -> dict[str, Any]:
    """``POST /tenant``: a full tenant definition with defaults (reference §5.5, §11.8).

    ``client_auth`` comes back with ``method`` and the given keys only; ``rate_limits`` and
    ``large_file_config`` are ``None`` when absent. ``installed`` decides whether optional
    storage packages are importable (default: look them up).
    """
    f = FieldChecker(body)
    keys = f.known(_TENANT_FIELDS, _TENANT_READ_ONLY)
    check = installed or _package_installed
    values: dict[str, Any] = {}
    if f.body.get("id") is None:
        f.fail("id", "required")
    for key in keys:
        if f.body[key] is not None:
            values[key] = _tenant_value(f, key, f.body[key], check)
    given = {k: v for k, v in (values.get("client_auth") or {}).items() if v is not None}
    auth = {"method": given.pop("method", "none"), **given}
    if "client_auth" not in values or values["client_auth"] is not None:
        _check_auth_complete(f, auth.__contains__, auth["method"])
    f.raise_if_failed()
    return {
        "id": values["id"],
        "name": values.get("name") or None,
        "client_base_url": values.get("client_base_url"),
        "client_sync_path": values.get("client_sync_path", TENANT_DEFAULTS["client_sync_path"]),
        "client_attachment_path": values.get(
            "client_attachment_path", TENANT_DEFAULTS["client_attachment_path"]
        ),
        "client_auth": auth,
        "rate_limits": values.get("rate_limits"),
        "large_file_config": values.get("large_file_config"),
        "active": values.get("active", True),
    }


def validate_tenant_update(
    body: Any,
    *,
    current: Mapping[str, Any] | None = None,
    installed: Installed | None = None,
) -> dict[str, Any]:
    """``PUT /tenant/{id}``: the changes of a partial update (reference §5.5).

    A ``None`` value returns the field to its default. ``client_auth`` is a key-by-key patch
    (``None`` removes a key; ``*_set`` flags are dropped). With ``current`` (the stored
    tenant, secrets or ``*_set`` flags alike) the merged ``client_auth`` must be complete.
    ``id`` may only repeat the tenant's own id.
    """
    f = FieldChecker(body)
    keys = f.known(_TENANT_FIELDS, _TENANT_READ_ONLY)
    check = installed or _package_installed
    changes: dict[str, Any] = {}
    for key in keys:
        if key == "id":
            continue
        value = f.body[key]
        changes[key] = None if value is None else _tenant_value(f, key, value, check)
    given_id = f.body.get("id")
    if given_id is not None and current is not None and given_id != current.get("id"):
        f.fail("id", "cannot be changed")
    patch = changes.get("client_auth")
    if current is not None and "client_auth" in changes and not f.errors:
        stored = dict(current.get("client_auth") or {})
        merged = {} if patch is None else dict(stored)
        for key, value in (patch or {}).items():
            if value is None:
                merged.pop(key, None)
                merged.pop(f"{key}_set", None)
            else:
                merged[key] = value

        def present(key: str) -> bool:
            return merged.get(key) is not None or bool(merged.get(f"{key}_set"))

        _check_auth_complete(f, present, merged.get("method") or "none")
    elif patch and patch.get("method") in ("bearer", "basic") and current is None:
        # Without the stored object only the keys sent together can be judged.
        _check_auth_complete(
            f, lambda key: patch.get(key) is not None or key not in patch, patch["method"]
        )
    f.raise_if_failed()
    if "name" in changes and changes["name"] == "":
        changes["name"] = None
    return changes


def _present_auth(auth: Mapping[str, Any] | None) -> dict[str, Any]:
    auth = auth or {}
    method = auth.get("method") or "none"
    out: dict[str, Any] = {"method": method}
    if method == "basic" and auth.get("user"):
        out["user"] = auth["user"]
    for key in AUTH_SECRETS:
        if auth.get(key) is not None or auth.get(f"{key}_set"):
            out[f"{key}_set"] = True
    return out


#: Wire order of a response: the request fields, then what the node keeps about the tenant.
_TENANT_ORDER: Final = (
    *(field.name for field in TENANT_FIELDS),
    *("suspended_batches", "api_key_set", "api_key_expires_at", "created_at", "updated_at"),
)


def present_tenant(tenant: Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of a stored tenant (reference §5.5): masked ``client_auth``, defaults, ISO times."""
    full = {**TENANT_DEFAULTS, **{k: v for k, v in tenant.items() if v is not None}}
    full["client_auth"] = _present_auth(tenant.get("client_auth"))
    limits = {k: v for k, v in (full.get("rate_limits") or {}).items() if v}
    full["rate_limits"] = limits or None
    config = full.get("large_file_config")
    if config:
        full["large_file_config"] = {
            **LARGE_FILE_DEFAULTS,
            **{k: v for k, v in config.items() if v is not None},
        }
    full.setdefault("suspended_batches", [])
    full["api_key_set"] = bool(full.get("api_key_set"))
    for key in ("created_at", "updated_at"):
        if isinstance(full.get(key), (int, float)):
            full[key] = iso(float(full[key]))
    if isinstance(full.get("api_key_expires_at"), float):
        full["api_key_expires_at"] = int(full["api_key_expires_at"])
    return {key: full[key] for key in _TENANT_ORDER if full.get(key) is not None}
