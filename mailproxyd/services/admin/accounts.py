"""SMTP account use cases (reference §5.4): create/replace, list, read, partial update, delete."""

from __future__ import annotations

from typing import Any

from mailproxyd.core.models import account as account_model
from mailproxyd.core.payload_fields import is_host
from mailproxyd.drivers import metrics
from mailproxyd.errors import ValidationFailed
from mailproxyd.services.admin._common import (
    mutation,
    read,
    require_tenant,
    validated,
)
from mailproxyd.services.admin._netcheck import host_refusal
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx, accounts, tenants

# One copy of the wire form, kept under this package's name for its callers.
present_account = account_model.present_account


def _without_tenant(payload: dict[str, Any]) -> dict[str, Any]:
    """The account fields of a request body: ``tenant_id`` addresses, it is not a field."""
    return {k: v for k, v in payload.items() if k != "tenant_id"}


def _create_account(tx: Tx, tenant_id: str, fields: dict[str, Any], *, now: float) -> bool:
    require_tenant(tx, tenant_id)
    return bool(accounts.create_or_replace(tx, tenant_id, fields, now))


#: Marks an account whose ``host`` a tenant key set (reference §11.3: the http_url rule applies).
UNTRUSTED_HOST_KEY = "host_untrusted"


async def _check_host(
    ctx: ServiceContext,
    endpoint: str,
    tenant_id: str,
    payload: dict[str, Any],
    host: Any,
    port: Any,
) -> None:
    """422 ``host`` when a tenant key points the account at an address it may not reach."""
    if not isinstance(host, str) or not is_host(host):
        return  # the field rules report it
    reason = await host_refusal(ctx, host, port if isinstance(port, int) else 25)
    if reason is not None:

        def fail() -> None:
            raise ValidationFailed([("host", reason)])

        await validated(ctx, endpoint, tenant_id, payload, fail)


async def create_account(
    ctx: ServiceContext, tenant_id: str, payload: dict[str, Any], *, by_tenant: bool = False
) -> bool:
    """``POST /account``: create or replace; True when created (reference §5.4).

    ``by_tenant``: sent with the tenant's key, so ``host`` follows the untrusted rule (reference §11.3).
    """
    body = _without_tenant(payload)
    batch_default = ctx.settings.batch_size_per_account
    fields = await validated(
        ctx,
        "addAccount",
        tenant_id,
        payload,
        lambda: account_model.validate_account(body, batch_default=batch_default),
    )
    if by_tenant:
        await _check_host(ctx, "addAccount", tenant_id, payload, fields["host"], fields["port"])
        fields[UNTRUSTED_HOST_KEY] = True
    return await mutation(ctx, "addAccount", tenant_id, payload, _create_account, tenant_id, fields)


async def list_accounts(ctx: ServiceContext, tenant_id: str) -> list[dict[str, Any]]:
    """A tenant's accounts in their wire form; ``NotFound`` for an unknown tenant."""

    def work(tx: Tx) -> list[dict[str, Any]]:
        require_tenant(tx, tenant_id)
        return [present_account(a) for a in accounts.list_accounts(tx, tenant_id)]

    return await read(ctx, work)


async def get_account(ctx: ServiceContext, tenant_id: str, account_id: str) -> dict[str, Any]:
    """One account in its wire form; ``NotFound`` for an unknown tenant or account."""

    def work(tx: Tx) -> dict[str, Any]:
        require_tenant(tx, tenant_id)
        return present_account(accounts.get(tx, tenant_id, account_id))

    return await read(ctx, work)


def _update_account(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    body: dict[str, Any],
    by_tenant: bool,
    *,
    now: float,
) -> None:
    require_tenant(tx, tenant_id)
    current = accounts.get(tx, tenant_id, account_id)
    # Judged against the stored account: use_tls derivation and conflicts need it (reference §10.1).
    changes = account_model.validate_account_update(body, account_id=account_id, current=current)
    if "host" in changes:
        # Who set the host decides which networks it may reach (reference §11.3).
        changes[UNTRUSTED_HOST_KEY] = True if by_tenant else None
    accounts.update(tx, tenant_id, account_id, changes, now)


async def update_account(
    ctx: ServiceContext,
    tenant_id: str,
    account_id: str,
    payload: dict[str, Any],
    *,
    by_tenant: bool = False,
) -> None:
    """``PUT /account/{id}``: partial update; ``null`` returns a field to its default (reference §5.4)."""
    body = _without_tenant(payload)
    if by_tenant:
        await _check_host(
            ctx, "updateAccount", tenant_id, payload, body.get("host"), body.get("port")
        )
    await mutation(
        ctx,
        "updateAccount",
        tenant_id,
        payload,
        _update_account,
        tenant_id,
        account_id,
        body,
        by_tenant,
    )


def _delete_account(
    tx: Tx, tenant_id: str, account_id: str, *, now: float
) -> tuple[int, str | None]:
    """The number of queued messages that failed, and the tenant's name for their count."""
    name = tenants.get(tx, tenant_id).get("name")
    return int(accounts.delete(tx, tenant_id, account_id, now)), name


async def delete_account(ctx: ServiceContext, tenant_id: str, account_id: str) -> int:
    """Delete an account; its queued messages fail ``account deleted``; returns their count."""
    failed, tenant_name = await mutation(
        ctx,
        "deleteAccount",
        tenant_id,
        {"tenant_id": tenant_id, "id": account_id},
        _delete_account,
        tenant_id,
        account_id,
    )
    if failed:
        # Messages that became ``error`` after their enqueue: they count as errors (reference §14).
        labels = metrics.AccountLabels.of(tenant_id, tenant_name, account_id)
        metrics.delivery(labels, "error", count=failed)
        # The failed messages are new events for the tenant: report them without waiting.
        await ctx.link.wake("reporter", "event")
    return int(failed)
