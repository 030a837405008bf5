"""Instance use cases (reference §5.6): name, version and bounce settings, and the bounce reload."""

from __future__ import annotations

from typing import Any

from mailproxyd import __version__
from mailproxyd.core.models import instance as instance_model
from mailproxyd.services.admin._common import mutation, read
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx, bounces, meta


async def get_instance(ctx: ServiceContext) -> dict[str, Any]:
    """Instance name, version and bounce settings (reference §5.6), password as a flag only."""
    found = dict(await read(ctx, meta.get_instance))
    found["version"] = __version__
    # A name never set through the API falls back to the configured one.
    if found.get("name") is None and getattr(ctx.settings, "instance_name", None):
        found["name"] = ctx.settings.instance_name
    return instance_model.present_instance(found)


async def update_instance(ctx: ServiceContext, payload: dict[str, Any]) -> None:
    """``PUT /instance``: partial update of the name and the bounce settings (reference §5.6)."""

    def work(tx: Tx, *, now: float) -> None:
        changes = instance_model.validate_instance_update(payload, current=meta.get_instance(tx))
        meta.update_instance(tx, changes, now)
        if any(key.startswith("bounce_imap_") or key == "bounce_enabled" for key in changes):
            # New mailbox settings deserve a poll without waiting out a back-off.
            bounces.force_due(tx)

    await mutation(ctx, "updateInstance", None, payload, work)


async def reload_bounce(ctx: ServiceContext) -> None:
    """Restart the bounce poller with the stored settings: a wake-up for the reporters."""
    await ctx.link.wake("reporter", "reload_bounce")
