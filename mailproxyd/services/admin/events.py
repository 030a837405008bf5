"""The event stream's reads (reference §5.9): the current high mark and the frames after a mark.

The ``/events`` WebSocket polls these; each frame is a sync report item plus its tenant.
"""

from __future__ import annotations

from typing import Any

from mailproxyd.core import report as core_report
from mailproxyd.services.admin._common import read
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import events


async def latest_event_id(ctx: ServiceContext) -> int:
    """The id of the newest event, 0 when there is none: where a new stream starts."""
    return int(await read(ctx, events.last_event_id) or 0)


async def events_after(
    ctx: ServiceContext, after_id: int, tenant_id: str | None, *, limit: int = 500
) -> tuple[list[dict[str, Any]], int]:
    """Event-stream frames (reference §5.9) of events newer than ``after_id``, and the new high mark."""
    rows = await read(ctx, events.tail, after_id, tenant_id=tenant_id, limit=limit)
    frames = [core_report.event_frame(row["tenant_id"], row) for row in rows]
    last = max((int(row["event_id"]) for row in rows), default=after_id)
    return frames, last


async def frames_after(
    ctx: ServiceContext, after_id: int, *, limit: int = 500
) -> list[tuple[int, str, dict[str, Any]]]:
    """``(event_id, tenant_id, frame)`` of every tenant's events newer than ``after_id``, in
    event order: what the shared poller of the ``/events`` streams fans out."""
    rows = await read(ctx, events.tail, after_id, tenant_id=None, limit=limit)
    return [
        (
            int(row["event_id"]),
            str(row["tenant_id"]),
            core_report.event_frame(row["tenant_id"], row),
        )
        for row in rows
    ]
