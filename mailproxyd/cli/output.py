"""What commands print: one JSON document, aligned tables, key/value blocks, progress (reference §15.1).

``--json`` output is shaped like the API body and, like the API, drops keys whose value is
``null`` (reference §0). Progress goes to stderr and only when stderr is a terminal, so a pipe or
a script sees exactly the documented stdout.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def strip_nulls(value: Any) -> Any:
    """``value`` with every ``None``-valued key removed, at every depth (as API bodies are)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def print_json(doc: Any, *, strip: bool = True) -> None:
    """Exactly one JSON document on stdout."""
    print(json.dumps(strip_nulls(doc) if strip else doc, ensure_ascii=False))


def when(ts: Any) -> str:
    """A Unix time as ``2026-01-01 00:00:05`` (UTC); ``-`` when absent."""
    if ts is None or ts == "":
        return "-"
    if isinstance(ts, str):
        return ts.replace("T", " ")
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value).replace("\n", " ")


def print_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "") -> None:
    """Left-aligned columns separated by two spaces; ``empty`` when there is no row."""
    table = [list(header)] + [[cell(v) for v in row] for row in rows]
    if len(table) == 1:
        if empty:
            print(empty)
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_fields(pairs: Iterable[tuple[str, Any]], *, skip_empty: bool = False) -> None:
    """``label:  value`` lines, labels aligned; ``skip_empty`` leaves out absent values."""
    items = [
        (label, cell(value))
        for label, value in pairs
        if not (skip_empty and value in (None, "-", ""))
    ]
    width = max((len(label) for label, _ in items), default=0) + 1
    for label, value in items:
        print(f"{(label + ':').ljust(width)}  {value}")


class Progress:
    """A one-line progress bar (known total) or spinner on stderr, only on a terminal."""

    _FRAMES = "|/-\\"

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._shown = sys.stderr.isatty()
        self._spin = itertools.cycle(self._FRAMES)
        self._last = 0.0

    def advance(self, step: int = 1) -> None:
        self.done += step
        self.draw()

    def draw(self, force: bool = False) -> None:
        if not self._shown:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        if self.total:
            width = 30
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "." * (width - filled)
            text = f"\r{self.label} [{bar}] {self.done}/{self.total}"
        else:
            text = f"\r{self.label} {next(self._spin)}"
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Progress]:
    """A ``Progress`` for a loop; with no total it spins by itself until the block ends."""
    bar = Progress(label, total)
    stop = threading.Event()
    spinner: threading.Thread | None = None
    if total is None and bar._shown:

        def spin() -> None:
            while not stop.wait(0.12):
                bar.draw(force=True)

        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
    try:
        yield bar
    finally:
        stop.set()
        if spinner is not None:
            spinner.join(timeout=1)
        bar.close()
