"""``mail-proxy NAME tenants list|show|add|update|delete`` (reference §15.3, §5.5)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

from cyclopts import Parameter

from mailproxyd.cli import prompts
from mailproxyd.cli.apps import group, instance_name
from mailproxyd.cli.apps import instance as instance_app
from mailproxyd.cli.context import open_instance
from mailproxyd.cli.errors import UsageError, require_interactive
from mailproxyd.cli.output import print_fields, print_json, print_table
from mailproxyd.core.models.tenant import AUTH_METHODS, AuthMethodName
from mailproxyd.services import admin

JsonFlag = Annotated[bool, Parameter(name="--json", help="Print one JSON document.")]
SYNC_PATH = "/mail-proxy/sync"
ATTACHMENT_PATH = "/mail-proxy/attachments"

tenants_app = group(instance_app, "tenants", "Tenants of the instance.")


@tenants_app.command(name="list")
def list_(
    *,
    active_only: Annotated[bool, Parameter(help="Only active tenants.")] = False,
    json_output: JsonFlag = False,
) -> int:
    """Every tenant, ordered by id."""
    with open_instance(instance_name()) as ctx:
        found = ctx.run(admin.list_tenants, active_only=active_only)
    if json_output:
        print_json({"ok": True, "tenants": found})
        return 0
    print_table(
        ("ID", "NAME", "ACTIVE", "BASE URL", "AUTH", "API KEY", "SUSPENDED"),
        (
            (
                t["id"],
                t.get("name"),
                t.get("active"),
                t.get("client_base_url"),
                (t.get("client_auth") or {}).get("method", "none"),
                "set" if t.get("api_key_set") else "none",
                t.get("suspended_batches"),
            )
            for t in found
        ),
        empty="no tenants",
    )
    return 0


@tenants_app.command
def show(tenant_id: str, /, *, json_output: JsonFlag = False) -> int:
    """One tenant (secrets shown only as set/unset).

    Parameters
    ----------
    tenant_id
        Tenant id.
    """
    with open_instance(instance_name()) as ctx:
        found = ctx.run(admin.get_tenant, tenant_id)
    if json_output:
        print_json(found)
        return 0
    print_tenant(found)
    return 0


def print_tenant(t: dict[str, Any]) -> None:
    auth = t.get("client_auth") or {}
    auth_text = str(auth.get("method", "none"))
    if auth.get("user"):
        auth_text += f" user={auth['user']}"
    for flag in ("token_set", "password_set", "signing_secret_set"):
        if auth.get(flag):
            auth_text += f" {flag.removesuffix('_set')}=set"
    limits = t.get("rate_limits") or {}
    print_fields(
        [
            ("id", t["id"]),
            ("name", t.get("name")),
            ("active", t.get("active")),
            ("base url", t.get("client_base_url")),
            ("sync path", t.get("client_sync_path")),
            ("attachment path", t.get("client_attachment_path")),
            ("auth", auth_text),
            (
                "rate limits",
                ", ".join(f"{k} {v}" for k, v in limits.items()) or "none",
            ),
            (
                "large files",
                json.dumps(t["large_file_config"]) if t.get("large_file_config") else "disabled",
            ),
            ("suspended", t.get("suspended_batches")),
            ("api key", "set" if t.get("api_key_set") else "none"),
            ("api key expires", t.get("api_key_expires_at")),
            ("created", t.get("created_at")),
            ("updated", t.get("updated_at")),
        ]
    )


def _large_files(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--large-files: invalid JSON ({exc})") from None


Name = Annotated[str | None, Parameter(help="Display name.")]
BaseUrl = Annotated[str | None, Parameter(help="Base URL of the sync and attachment endpoints.")]
SyncPath = Annotated[str | None, Parameter(help=f"Sync endpoint path [{SYNC_PATH}].")]
AttachmentPath = Annotated[
    str | None, Parameter(help=f"Attachment endpoint path [{ATTACHMENT_PATH}].")
]
Method = Annotated[
    AuthMethodName | None, Parameter(help="How mail-proxy authenticates to the tenant.")
]
Token = Annotated[str | None, Parameter(help="Bearer token (auth method bearer).")]
User = Annotated[str | None, Parameter(help="User (auth method basic).")]
Password = Annotated[str | None, Parameter(help="Password (auth method basic).")]
Signing = Annotated[str | None, Parameter(help="Secret that signs sync requests (>= 16 chars).")]
Hourly = Annotated[int | None, Parameter(help="Tenant-wide messages per hour (0 = unlimited).")]
Daily = Annotated[int | None, Parameter(help="Tenant-wide messages per day (0 = unlimited).")]
LargeFiles = Annotated[str | None, Parameter(help="Large-file policy as a JSON object.")]


@Parameter(name="*")
@dataclasses.dataclass(frozen=True)
class TenantOptions:
    """The tenant fields ``add`` and ``update`` take as options (the same set for both)."""

    name: Name = None
    base_url: BaseUrl = None
    sync_path: SyncPath = None
    attachment_path: AttachmentPath = None
    auth_method: Method = None
    auth_token: Token = None
    auth_user: User = None
    auth_password: Password = None
    signing_secret: Signing = None
    rate_limit_hourly: Hourly = None
    rate_limit_daily: Daily = None
    large_files: LargeFiles = None

    def fields(self) -> dict[str, Any]:
        """The given options as tenant fields (reference §5.5 names), rate limits aside."""
        given = {
            "name": self.name,
            "client_base_url": self.base_url,
            "client_sync_path": self.sync_path,
            "client_attachment_path": self.attachment_path,
        }
        fields: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        auth = {
            "method": self.auth_method,
            "token": self.auth_token,
            "user": self.auth_user,
            "password": self.auth_password,
            "signing_secret": self.signing_secret,
        }
        auth = {k: v for k, v in auth.items() if v is not None}
        if auth:
            fields["client_auth"] = auth
        if self.large_files is not None:
            fields["large_file_config"] = _large_files(self.large_files)
        return fields

    def rate_limits(self) -> dict[str, int]:
        """The given tenant-wide limits (only those given)."""
        limits = {"hourly": self.rate_limit_hourly, "daily": self.rate_limit_daily}
        return {k: v for k, v in limits.items() if v is not None}


NO_OPTIONS = TenantOptions()


def _prompt_tenant(tenant_id: str | None, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The interactive form of ``tenants add``: every value not given as a flag."""
    tenant_id = tenant_id or prompts.ask("Tenant ID", required=True)
    assert tenant_id is not None
    if fields.get("name") is None:
        fields["name"] = prompts.ask("Name", tenant_id)
    if fields.get("client_base_url") is None:
        fields["client_base_url"] = prompts.ask("Base URL")
    if fields.get("client_sync_path") is None:
        fields["client_sync_path"] = prompts.ask("Sync path", SYNC_PATH)
    if fields.get("client_attachment_path") is None:
        fields["client_attachment_path"] = prompts.ask("Attachment path", ATTACHMENT_PATH)
    auth = fields.setdefault("client_auth", {})
    if "method" not in auth:
        auth["method"] = prompts.ask_choice("Auth method", AUTH_METHODS, "none")
    if auth["method"] == "bearer" and "token" not in auth:
        auth["token"] = prompts.ask_secret("Auth token", required=True)
    if auth["method"] == "basic":
        if "user" not in auth:
            auth["user"] = prompts.ask("Auth user", required=True)
        if "password" not in auth:
            auth["password"] = prompts.ask_secret("Auth password", required=True)
    return tenant_id, fields


def _require_credentials(auth: dict[str, Any]) -> None:
    if auth.get("method") == "bearer":
        prompts.require(auth.get("token"), "--auth-token")
    if auth.get("method") == "basic":
        prompts.require(auth.get("user"), "--auth-user")
        prompts.require(auth.get("password"), "--auth-password")


@tenants_app.command
def add(
    tenant_id: Annotated[str | None, Parameter(help="Tenant id.")] = None,
    /,
    *,
    options: TenantOptions = NO_OPTIONS,
    inactive: Annotated[bool, Parameter(help="Create the tenant inactive.")] = False,
) -> int:
    """Create a tenant (or replace one) and print its API key, shown once.

    On a terminal, missing values are asked for.
    """
    fields = options.fields()
    if tenant_id is None and prompts.interactive():
        tenant_id, fields = _prompt_tenant(tenant_id, fields)
    tenant_id = prompts.require(tenant_id, "ID")
    _require_credentials(fields.get("client_auth") or {})
    if options.rate_limits():
        fields["rate_limits"] = options.rate_limits()
    if inactive:
        fields["active"] = False
    payload = {"id": tenant_id, **{k: v for k, v in fields.items() if v not in (None, {})}}
    with open_instance(instance_name()) as ctx:
        result = ctx.run(admin.create_tenant, payload)
    if result["created"]:
        print(f"Tenant '{tenant_id}' created")
    else:
        print(f"Tenant '{tenant_id}' replaced (its API key is kept)")
    if result.get("api_key"):
        print(f"API key (shown once): {result['api_key']}")
    return 0


@tenants_app.command
def update(
    tenant_id: str,
    /,
    *,
    options: TenantOptions = NO_OPTIONS,
    active: Annotated[bool, Parameter(help="Make the tenant active.")] = False,
    inactive: Annotated[bool, Parameter(help="Make the tenant inactive.")] = False,
) -> int:
    """Change the given fields of a tenant; the others stay as they are.

    Parameters
    ----------
    tenant_id
        Tenant id.
    """
    if active and inactive:
        raise UsageError("--active and --inactive cannot be combined")
    payload = options.fields()
    if active or inactive:
        payload["active"] = active
    with open_instance(instance_name()) as ctx:
        if options.rate_limits():
            # Only the given limit changes: the other keeps its stored value.
            limits = dict(ctx.run(admin.get_tenant, tenant_id).get("rate_limits") or {})
            payload["rate_limits"] = {**limits, **options.rate_limits()}
        if not payload:
            raise UsageError("nothing to update: give at least one option")
        ctx.run(admin.update_tenant, tenant_id, payload)
    print(f"Tenant '{tenant_id}' updated")
    return 0


@tenants_app.command
def delete(
    tenant_id: str,
    /,
    *,
    force: Annotated[bool, Parameter(help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete a tenant with its API key, accounts, messages and events.

    Parameters
    ----------
    tenant_id
        Tenant id.
    """
    if not force:
        require_interactive("--force")
    with open_instance(instance_name()) as ctx:
        ctx.run(admin.get_tenant, tenant_id)  # an unknown tenant fails before the question
        if not prompts.confirm(
            f"Delete tenant '{tenant_id}' with its accounts and messages?", force=force
        ):
            print("not deleted")
            return 1
        ctx.run(admin.delete_tenant, tenant_id)
    print(f"Tenant '{tenant_id}' deleted")
    return 0
