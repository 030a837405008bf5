"""The supervisor's table of worker processes: who runs, in which state, restarted how often.

Plain bookkeeping with no I/O, so the counts shown by ``/status``, the control method
``workers`` and the systemd STATUS line all come from one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import trio

from mailproxyd.link import Channel

Kind = Literal["api", "sender", "reporter"]
State = Literal["starting", "running", "stopping", "restarting"]
KINDS: tuple[Kind, ...] = ("api", "sender", "reporter")


@dataclasses.dataclass(eq=False)
class WorkerSlot:
    """One worker position (``sender`` #1, …); it survives restarts of its process."""

    kind: Kind
    index: int
    state: State = "starting"
    pid: int | None = None
    restarts: int = 0
    started_at: int | None = None
    failures: int = 0
    retired: bool = False
    channel: Channel | None = None
    last_heartbeat: float = 0.0
    fatal: str | None = None
    process: trio.Process | None = None
    # Set on the first "ready" of the current process; replaced at every start.
    ready: trio.Event = dataclasses.field(default_factory=trio.Event)
    # Set when the current process has exited; replaced at every start.
    exited: trio.Event = dataclasses.field(default_factory=trio.Event)
    # Test mode: set when the worker reports its cycle step done (or exits).
    cycle_done: trio.Event = dataclasses.field(default_factory=trio.Event)

    @property
    def name(self) -> str:
        return self.kind if self.kind != "sender" else f"sender-{self.index}"

    def describe(self) -> dict[str, Any]:
        """The entry of the control method ``workers`` (reference §17)."""
        entry: dict[str, Any] = {
            "kind": self.kind,
            "index": self.index,
            "state": self.state,
            "restarts": self.restarts,
        }
        if self.pid is not None:
            entry["pid"] = self.pid
        if self.started_at is not None:
            entry["started_at"] = self.started_at
        return entry


class WorkerTable:
    """Every slot of the node, in a stable order: api, senders by index, reporter."""

    def __init__(self, sender_processes: int) -> None:
        self._slots: list[WorkerSlot] = [WorkerSlot("api", 0)]
        self._slots += [WorkerSlot("sender", i) for i in range(sender_processes)]
        self._slots.append(WorkerSlot("reporter", 0))
        self.expected_senders = sender_processes

    def __iter__(self) -> Iterator[WorkerSlot]:
        # Retired slots stay listed (state "stopping") until their process has exited.
        return iter(list(self._slots))

    def of_kind(self, kind: Kind) -> list[WorkerSlot]:
        return [s for s in self if s.kind == kind]

    def expected(self, kind: Kind) -> int:
        return self.expected_senders if kind == "sender" else 1

    def running(self, kind: Kind) -> int:
        return sum(1 for s in self.of_kind(kind) if s.state == "running")

    def counts(self) -> dict[str, dict[str, int]]:
        """``workers`` of ``GET /status``: expected and running per kind."""
        return {k: {"expected": self.expected(k), "running": self.running(k)} for k in KINDS}

    def all_running(self) -> bool:
        return all(self.running(k) >= self.expected(k) for k in KINDS)

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self]

    def resize_senders(self, count: int) -> tuple[list[WorkerSlot], list[WorkerSlot]]:
        """Change the sender count (reload); return the slots to start and the slots to retire.

        Slots keep their index; new ones take the lowest free indexes, the highest go first.
        """
        senders = [s for s in self.of_kind("sender") if not s.retired]
        self.expected_senders = count
        if count > len(senders):
            used = {s.index for s in self.of_kind("sender")}
            free = (i for i in range(128) if i not in used)
            added = [WorkerSlot("sender", next(free)) for _ in range(count - len(senders))]
            self._slots += added
            self._slots.sort(key=lambda s: (KINDS.index(s.kind), s.index))
            return added, []
        retire = sorted(senders, key=lambda s: s.index)[count:]
        for slot in retire:
            slot.retired = True
        return [], retire

    def forget(self, slot: WorkerSlot) -> None:
        """Drop a retired slot whose process has exited."""
        if slot in self._slots and slot.retired:
            self._slots.remove(slot)
