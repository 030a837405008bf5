"""The retention sweep (reference §13.7): forget what is fully reported and old enough."""

from __future__ import annotations

from .commandlog import purge
from .database import Tx
from .messages import cleanup_messages
from .ratelimit import prune
from .sessions import expire

# Messages deleted per call, so one sweep transaction stays short on a huge backlog; the caller
# sweeps again when ``messages`` equals this.
SWEEP_CHUNK = 10_000


def sweep(
    tx: Tx,
    now: float,
    retention_seconds: float,
    command_log_seconds: float,
    *,
    chunk: int = SWEEP_CHUNK,
) -> dict[str, int]:
    """Delete sent/error messages whose events are all acknowledged and whose latest
    acknowledgement is older than ``retention_seconds`` (with their events; ≤ 0 skips this),
    rate slots older than 24 h, lapsed session slots, and command-log entries older than
    ``command_log_seconds`` (≤ 0 keeps them). Returns the counts."""
    messages = (
        cleanup_messages(tx, None, retention_seconds, now, limit=chunk)
        if retention_seconds > 0
        else 0
    )
    commands = purge(tx, now - command_log_seconds) if command_log_seconds > 0 else 0
    return {
        "messages": messages,
        "rate_slots": prune(tx, now),
        "session_slots": expire(tx, now),
        "commands": commands,
    }
