"""Reading the command log (reference §5.7): the paged listing and the bulk export.

Entries are written by :func:`mailproxyd.services.admin._common.log_command`, already
redacted, so nothing is masked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailproxyd.services.admin._common import read
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx
from mailproxyd.store import commandlog as store_commandlog

_LIST_KEYS = ("id", "command_ts", "endpoint", "tenant_id", "payload", "response_status")
_EXPORT_KEYS = ("endpoint", "tenant_id", "payload", "command_ts")


def _present_command(entry: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = {k: entry.get(k) for k in keys}
    out["command_ts"] = int(entry["command_ts"])
    return out


async def command_log(
    ctx: ServiceContext,
    *,
    tenant_id: str | None,
    since_ts: int | None,
    until_ts: int | None,
    endpoint_filter: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Command-log entries, newest first (reference §5.7); payloads were redacted when written."""
    rows = await read(
        ctx,
        store_commandlog.list_commands,
        tenant_id=tenant_id,
        since_ts=since_ts,
        until_ts=until_ts,
        endpoint_filter=endpoint_filter,
        limit=limit,
        offset=offset,
    )
    return [_present_command(row, _LIST_KEYS) for row in rows]


async def command_log_export(
    ctx: ServiceContext, *, tenant_id: str | None, since_ts: int | None, until_ts: int | None
) -> list[dict[str, Any]]:
    """At most 100,000 entries, oldest first (reference §5.7)."""
    rows = await read(
        ctx, store_commandlog.export, tenant_id=tenant_id, since_ts=since_ts, until_ts=until_ts
    )
    return [_present_command(row, _EXPORT_KEYS) for row in rows]


def _purge(tx: Tx, before: float) -> int:
    return int(store_commandlog.purge(tx, before))


async def purge_command_log(ctx: ServiceContext, before_ts: int) -> int:
    """Delete the entries older than ``before_ts``; returns how many (``command-log purge``)."""
    return int(await ctx.db.run(_purge, float(before_ts)))
