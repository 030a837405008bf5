"""What every scenario shares: the run's options, its same-run baselines, and its records.

A scenario is a module with ``run(ctx: Run) -> None`` that measures and calls ``ctx.emit`` once
per figure set. ``emit`` prints the record as one JSON line at once (so a long run shows its
figures as they come) and keeps it for the table and the chart written at the end
(``bench.output``). Baselines measured earlier in the same run are kept in ``ctx.baselines``;
a scenario run alone measures the baseline it compares against itself (``ctx.baseline``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "MAIL_PROXY_BENCH_PG_URL",
    os.environ.get("MAIL_PROXY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)


@dataclasses.dataclass
class Check:
    """One goal of issue 19: the measured value, how it compares, and whether it is met."""

    goal: str  # readable, e.g. "drain >= 3000 msg/s"
    value: float
    met: bool


@dataclasses.dataclass
class Record:
    """The figures of one scenario case, printed as one JSON line."""

    scenario: str
    case: str
    figures: dict[str, Any]
    counters: dict[str, int] | None = None  # delivered, duplicates, lost
    checks: list[Check] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"scenario": self.scenario, "case": self.case, **self.figures}
        if self.counters is not None:
            doc.update(self.counters)
        if self.checks:
            doc["goals"] = [dataclasses.asdict(c) for c in self.checks]
        return doc


@dataclasses.dataclass
class Options:
    quick: bool = False
    count: int | None = None  # overrides the message count of drain/ingest/baselines
    backends: tuple[str, ...] = ("sqlite", "postgres")
    senders: tuple[int, ...] = (1, 2, 4)
    python_sink: bool = False  # use the Python sink even where the C one exists
    profile: bool = False  # py-spy the drain (2 senders, first backend)
    out: Path = ROOT / "bench" / "results"

    def n(self, full: int, quick: int) -> int:
        if self.count is not None:
            return self.count
        return quick if self.quick else full


class Run:
    """One ``python -m bench`` invocation: options, a scratch directory, records, baselines."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.records: list[Record] = []
        self.baselines: dict[str, float] = {}  # name -> msg/s, measured in this run
        self.notes: list[str] = []
        self.key = secrets.token_bytes(32)
        self._tmp = tempfile.TemporaryDirectory(prefix="mp-bench-")
        self.workdir = Path(self._tmp.name)
        # The C sink drops its privileges to nobody when run as root: it must reach its dirs.
        os.chmod(self.workdir, 0o755)
        self.started = time.time()

    def emit(self, record: Record) -> Record:
        # The machine's load when the case ended: the figures mean little without it.
        record.figures.setdefault("loadavg_1m", round(os.getloadavg()[0], 2))
        self.records.append(record)
        print(json.dumps(record.as_json()), flush=True)
        return record

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            print(f"# {text}", file=sys.stderr, flush=True)

    def baseline(self, name: str, measure: Callable[[], float]) -> float:
        """The same-run baseline ``name``, measured now unless an earlier scenario did."""
        if name not in self.baselines:
            self.baselines[name] = measure()
        return self.baselines[name]

    def scratch(self, name: str) -> Path:
        path = self.workdir / f"{name}-{secrets.token_hex(3)}"
        path.mkdir(mode=0o755)
        return path

    def close(self) -> None:
        self._tmp.cleanup()


def postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def have_postfix_tools() -> bool:
    return bool(shutil.which("smtp-sink", path=_SBIN_PATH)) and bool(
        shutil.which("smtp-source", path=_SBIN_PATH)
    )


_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def tool(name: str) -> str:
    found = shutil.which(name, path=_SBIN_PATH)
    if not found:
        raise RuntimeError(f"{name} not found")
    return found


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0–100) of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def counters(expected: set[str], arrivals: list[str]) -> dict[str, int]:
    """Delivered (distinct expected ids that arrived), duplicates, lost, and strays."""
    seen: set[str] = set()
    duplicates = 0
    strays = 0
    for mail_id in arrivals:
        if mail_id in seen:
            duplicates += 1
        elif mail_id in expected:
            seen.add(mail_id)
        else:
            strays += 1
    result = {"delivered": len(seen), "duplicates": duplicates, "lost": len(expected - seen)}
    if strays:
        result["unexpected"] = strays
    return result
