"""Run every benchmark in turn: ``python -m bench [name ...]``.

The benchmarks are written by different people and appear one by one, so a missing module is
skipped with a note rather than failing the whole run. Each module exposes ``main(argv)`` (an
``argv`` list without the program name) and returns, or raises ``SystemExit`` with, its status.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time

# The order is meaningful: cheap, isolated measurements first, the end-to-end drain last but
# one, so a slow machine shows the quick figures before the long run.
BENCHMARKS = ("claim", "ingest", "mime", "drain", "report")


def _run_one(name: str) -> int:
    module_name = f"bench.{name}"
    if importlib.util.find_spec(module_name) is None:
        print(f"== bench {name}: not present, skipped", flush=True)
        return 0
    module = importlib.import_module(module_name)
    entry = getattr(module, "main", None)
    if not callable(entry):
        print(f"== bench {name}: no main(), skipped", flush=True)
        return 0
    print(f"== bench {name}", flush=True)
    started = time.perf_counter()
    try:
        result = entry([])
    except SystemExit as exc:
        result = exc.code
    status = result if isinstance(result, int) else (0 if result in (None, True) else 1)
    print(f"== bench {name}: done in {time.perf_counter() - started:.1f} s (status {status})")
    return status


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    worst = 0
    for name in names:
        worst = max(worst, _run_one(name))
    return worst


if __name__ == "__main__":
    sys.exit(main())
