"""The end of a run: the records as ``results.jsonl``, a readable table and a PNG chart."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from bench.harness import Record, Run


def _main_figure(r: Record) -> str:
    f = r.figures
    if "rate_msg_s" in f:
        text = f"{f['rate_msg_s']:,} msg/s"
        if "cpu_ms_per_msg" in f:
            text += f", {f['cpu_ms_per_msg']:.2f} ms CPU/msg"
        return text
    if "p50_ms" in f:
        return f"p50 {f['p50_ms']:.1f} / p95 {f['p95_ms']:.1f} / p99 {f['p99_ms']:.1f} ms"
    if "built_per_cpu_s" in f:
        return f"{f['built_per_cpu_s']:,} built per CPU s ({f['us_per_msg']} µs/msg)"
    if "backlog_events_s" in f:
        return (f"{f['backlog_events_s']:,} events/s; lag last {f['lag_last_s']} s, "
                f"worst {f['lag_worst_s']} s")  # fmt: skip
    if "claim_ratio" in f:
        rss = [v for k, v in f.items() if k.startswith("rss_ratio_")]
        return f"RSS ratio max {max(rss, default=0):.3f}; claim {f['claim_ratio']}x"
    if "claim_ms" in f:
        return f"claim 100: {f['claim_ms']:.2f} ms, RSS max {f.get('rss_max_kb', 0) / 1024:.0f} MB"
    return ", ".join(f"{k}={v}" for k, v in f.items() if isinstance(v, int | float))[:60]


def _ratios(r: Record) -> str:
    parts = []
    for key, value in r.figures.items():
        if key.startswith("ratio_") and isinstance(value, int | float):
            parts.append(f"{value:.2f}x {key.removeprefix('ratio_')}")
    return ", ".join(parts)


def table(run: Run) -> str:
    rows = [("scenario", "case", "figure", "vs baseline", "deliv/dup/lost", "goals")]
    for r in run.records:
        c = r.counters
        counts = f"{c['delivered']}/{c['duplicates']}/{c['lost']}" if c else ""
        goals = " ".join("ok" if g.met else "MISS" for g in r.checks)
        rows.append((r.scenario, r.case, _main_figure(r), _ratios(r), counts, goals))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    goals = [(r, g) for r in run.records for g in r.checks]
    if goals:
        lines += ["", "goals of issue 19:"]
        lines += [
            f"  {'met ' if g.met else 'MISS'}  {g.goal:<40} measured {g.value:,} ({r.case})"
            for r, g in goals
        ]
    lines += ["", *[f"note: {n}" for n in run.notes]]
    return "\n".join(lines).rstrip() + "\n"


def chart(run: Run, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        run.note("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return False
    rates = [r for r in run.records if "rate_msg_s" in r.figures]
    latencies = [r for r in run.records if "p50_ms" in r.figures]
    cpus = [r for r in run.records if "cpu_by_process" in r.figures]
    panels = [p for p in (rates, latencies, cpus) if p]
    if not panels:
        return False
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(11, 2.0 + 0.32 * sum(len(p) for p in panels) + 1.6 * len(panels))
    )
    axes = list(axes) if len(panels) > 1 else [axes]
    ax_iter = iter(axes)
    if rates:
        ax = next(ax_iter)
        labels = [f"{r.scenario}: {r.case}" for r in rates]
        values = [r.figures["rate_msg_s"] for r in rates]
        colors = [
            {"baselines": "#888888", "ingest": "#4c72b0", "drain": "#dd8452"}.get(
                r.scenario, "#55a868"
            )
            for r in rates
        ]
        ax.barh(labels, values, color=colors)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("messages per second (log scale)")
        ax.set_title("throughput (grey: same-run baselines)")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,}", va="center", fontsize=8)
    if latencies:
        ax = next(ax_iter)
        labels = [r.case for r in latencies]
        for i, (key, color) in enumerate((("p50_ms", "#55a868"), ("p95_ms", "#dd8452"),
                                          ("p99_ms", "#c44e52"))):  # fmt: skip
            ax.barh([y + (i - 1) * 0.27 for y in range(len(labels))],
                    [r.figures[key] for r in latencies], height=0.27, color=color,
                    label=key.removesuffix("_ms"))  # fmt: skip
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("ms, add-messages request sent -> arrival at the SMTP sink")
        ax.set_title("latency at a low steady rate")
        ax.legend(loc="lower right")
    if cpus:
        ax = next(ax_iter)
        labels = [f"{r.scenario}: {r.case}" for r in cpus]
        kinds: list[str] = sorted({k for r in cpus for k in r.figures["cpu_by_process"]})
        left = [0.0] * len(cpus)
        for kind in kinds:
            values = [r.figures["cpu_by_process"].get(kind, 0.0) for r in cpus]
            ax.barh(labels, values, left=left, label=kind)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.invert_yaxis()
        ax.set_xlabel("CPU ms per delivered message, by process")
        ax.set_title("CPU per message (all processes of the node, from /proc)")
        ax.legend(loc="lower right", fontsize=7, ncol=3)
    fig.suptitle(f"mail-proxy bench, {platform.node()}, {_cpu_count()} CPUs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


def write(run: Run, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.jsonl").open("w", encoding="utf-8") as fh:
        for r in run.records:
            fh.write(json.dumps(r.as_json()) + "\n")
    text = table(run)
    (out / "results.txt").write_text(text, encoding="utf-8")
    print()
    print(text, end="")
    written = {"jsonl": str(out / "results.jsonl"), "table": str(out / "results.txt")}
    if chart(run, out / "chart.png"):
        written["chart"] = str(out / "chart.png")
    print(f"written: {', '.join(written.values())}")
    return written
