"""Tenant commands (reference §15.4): info, run-now, suspend/activate, api-key."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import Parameter

from mailproxyd.cli.apps import instance_name, tenant_id
from mailproxyd.cli.apps import tenant as tenant_app
from mailproxyd.cli.commands.tenants import print_tenant
from mailproxyd.cli.context import control_call, existing_instance, open_instance
from mailproxyd.cli.errors import UsageError
from mailproxyd.cli.output import print_fields, print_json, when
from mailproxyd.services import admin

JsonFlag = Annotated[bool, Parameter(name="--json", help="Print one JSON document.")]
Batch = Annotated[str | None, Parameter(help="Only this batch code.")]


@tenant_app.command(name="info")
def info(*, json_output: JsonFlag = False) -> int:
    """The tenant with its account count, message counts, suspension and sync state."""
    tenant = tenant_id()
    with open_instance(instance_name()) as ctx:
        found = ctx.run(admin.get_tenant, tenant)
        counts = ctx.run(admin.stats, tenant)
        sync = ctx.run(admin.sync_status, tenant)
    rows = sync.get("tenants") or []
    state = {k: v for k, v in (rows[0] if rows else {}).items() if k not in ("id", "name")}
    state.pop("active", None)
    state.pop("client_base_url", None)
    doc: dict[str, Any] = {
        **found,
        "accounts": counts.get("accounts", 0),
        "messages": counts.get("messages", {}),
        "sync": state,
    }
    if json_output:
        print_json(doc)
        return 0
    print_tenant(found)
    print_fields([("accounts", doc["accounts"])])
    messages = doc["messages"]
    print_fields(
        [
            (
                "messages",
                ", ".join(f"{k} {messages.get(k, 0)}" for k in messages) or "none",
            )
        ]
    )
    print_fields(
        [
            (
                "last sync",
                when(state.get("last_sync_ts")) if state.get("last_sync_ts") else "never",
            ),
            ("sync due", state.get("next_sync_due")),
            ("do not disturb", when(state["dnd_until"]) if state.get("in_dnd") else "no"),
            ("sync failures", state.get("consecutive_failures", 0)),
            ("sync last error", state.get("last_error")),
            ("unreported events", state.get("unreported_events", 0)),
        ]
    )
    return 0


@tenant_app.command(name="run-now")
def run_now() -> int:
    """Wake the workers and clear this tenant's DND and back-off (needs the running node)."""
    tenant = tenant_id()
    directory = existing_instance(instance_name())
    control_call(directory, "run_now", {"tenant_id": tenant})
    print(f"run-now triggered for tenant '{tenant}'")
    return 0


def _suspension(state: dict[str, Any], json_output: bool) -> int:
    if json_output:
        print_json({"ok": True, **state})
        return 0
    batches = state.get("suspended_batches") or []
    if "*" in batches:
        shown = "the whole tenant"
    elif batches:
        shown = "batches " + ", ".join(batches)
    else:
        shown = "nothing"
    print(f"tenant '{state.get('tenant_id')}': suspended: {shown}")
    print(f"pending messages: {state.get('pending_messages', 0)}")
    return 0


@tenant_app.command(name="suspend")
def suspend(*, batch: Batch = None, json_output: JsonFlag = False) -> int:
    """Hold the tenant's messages (or one batch of them); they stay queued."""
    with open_instance(instance_name()) as ctx:
        state = ctx.run(admin.suspend, tenant_id(), batch)
    return _suspension(state, json_output)


@tenant_app.command(name="activate")
def activate(*, batch: Batch = None, json_output: JsonFlag = False) -> int:
    """Lift the tenant's suspension (or one batch's)."""
    with open_instance(instance_name()) as ctx:
        state = ctx.run(admin.activate, tenant_id(), batch)
    return _suspension(state, json_output)


@tenant_app.command(name="api-key")
def api_key(
    *,
    regenerate: Annotated[bool, Parameter(help="Issue a new key and print it.")] = False,
    revoke: Annotated[bool, Parameter(help="Remove the key.")] = False,
    expires_at: Annotated[
        int | None, Parameter(help="Unix time the new key expires (with --regenerate).")
    ] = None,
) -> int:
    """Whether the tenant has an API key; --regenerate issues a new one, --revoke removes it."""
    if regenerate and revoke:
        raise UsageError("--regenerate and --revoke cannot be combined")
    if expires_at is not None and not regenerate:
        raise UsageError("--expires-at: only with --regenerate")
    tenant = tenant_id()
    with open_instance(instance_name()) as ctx:
        if regenerate:
            issued = ctx.run(admin.issue_api_key, tenant, expires_at)
            print(issued["api_key"])
            return 0
        if revoke:
            ctx.run(admin.revoke_api_key, tenant)
            print(f"API key of tenant '{tenant}' revoked")
            return 0
        found = ctx.run(admin.get_tenant, tenant)
    if found.get("api_key_set"):
        expiry = found.get("api_key_expires_at")
        print(
            f"tenant '{tenant}' has an API key" + (f" (expires {when(expiry)})" if expiry else "")
        )
    else:
        print(f"tenant '{tenant}' has no API key")
    return 0
