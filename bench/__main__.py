"""Run the benchmark scenarios: ``python -m bench [--quick] [SCENARIO ...]``.

Every scenario prints one JSON line per case as it finishes; at the end the run writes
``results.jsonl``, ``results.txt`` (the table, with the goals of issue 19) and ``chart.png``
into ``--out`` (default ``bench/results/``). With no scenario named, all run, cheap ones first.
A scenario named alone measures the same-run baselines it compares against.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from bench.harness import Options, Run, have_postfix_tools, postgres_available

SCENARIOS = ("baselines", "mime", "ingest", "latency", "drain", "report", "scale")


def parse(argv: list[str]) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="small counts: a minute, not an hour")
    parser.add_argument("--count", type=int, help="messages per drain/ingest/baseline case")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--senders", help="sender processes of the drain cases (default 1,2,4)")
    parser.add_argument("--python-sink", action="store_true", help="never use smtp-sink")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the drain with 2 senders (first backend)"
    )
    parser.add_argument("--out", type=Path, default=Options.out, help="where results go")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.count is not None and args.count < 1:
        parser.error("--count must be at least 1")
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not backends or any(b not in ("sqlite", "postgres") for b in backends):
        parser.error("--backends takes sqlite, postgres or both")
    senders = (1, 2) if args.quick else (1, 2, 4)
    if args.senders:
        try:
            senders = tuple(int(s) for s in args.senders.split(","))
        except ValueError:
            parser.error("--senders takes numbers, e.g. 1,2,4")
        if any(not 1 <= s <= 64 for s in senders):
            parser.error("--senders: each from 1 to 64")
    options = Options(
        quick=args.quick,
        count=args.count,
        backends=backends,
        senders=senders,
        python_sink=args.python_sink,
        profile=args.profile,
        out=args.out,
    )
    return list(args.scenarios) or list(SCENARIOS), options


def main(argv: list[str] | None = None) -> int:
    names, options = parse(list(sys.argv[1:] if argv is None else argv))
    run = Run(options)
    try:
        if "postgres" in options.backends and not postgres_available():
            run.note("PostgreSQL not reachable: its cases are skipped")
            options.backends = tuple(b for b in options.backends if b != "postgres") or ("sqlite",)
        if have_postfix_tools() and not options.python_sink:
            run.note("sink: Postfix smtp-sink (C); raw baseline: smtp-source")
        status = 0
        for name in names:
            started = time.perf_counter()
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                importlib.import_module(f"bench.{name}").run(run)
            except Exception as exc:  # one failing scenario must not hide the others' figures
                status = 1
                run.note(f"scenario {name} failed: {type(exc).__name__}: {exc}")
            took = time.perf_counter() - started
            print(f"== {name}: {took:.1f} s", file=sys.stderr, flush=True)
        from bench import output

        output.write(run, options.out)
        failed = [
            r
            for r in run.records
            if r.counters and (r.counters["lost"] or r.counters["duplicates"])
        ]
        if failed:
            status = 1
            print(f"lost or duplicated messages in: {', '.join(r.case for r in failed)}")
        return status
    finally:
        run.close()


if __name__ == "__main__":
    sys.exit(main())
