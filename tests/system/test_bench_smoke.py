"""The benchmark harness runs end to end in quick mode (no figure is asserted: only that it
measures, counts correctly and writes its outputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--count", "40", "--backends", "sqlite",
         "--senders", "1", "--out", str(out), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    lines = (out / "results.jsonl").read_text().splitlines() if out.exists() else []
    return proc, [json.loads(line) for line in lines]


@pytest.mark.slow
def test_quick_drain_with_the_python_sink(tmp_path: Path) -> None:
    proc, records = _bench(tmp_path, "--python-sink", "drain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by_case = {(r["scenario"], r["case"]): r for r in records}
    drain = by_case["drain", "sqlite, 1 senders"]
    assert (drain["delivered"], drain["duplicates"], drain["lost"]) == (40, 0, 0)
    assert drain["reports_acknowledged"] == 40
    assert drain["sink"] == "python aiosmtpd"
    assert drain["rate_msg_s"] > 0 and drain["cpu_ms_per_msg"] > 0
    assert set(drain["cpu_by_process"]) == {"api", "reporter", "sender", "supervisor"}
    # The baselines it compares against were measured in the same run, to the same sink.
    for name in ("plain_loop", "raw", "prebuilt_smtplib"):
        assert by_case["baselines", name]["sink"] == "python aiosmtpd"
        assert by_case["baselines", name]["lost"] == 0
    # One JSON line per record on stdout, and the readable table with the goals.
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert printed == records
    table = (tmp_path / "results" / "results.txt").read_text()
    assert "drain" in table and "goals of issue 19" in table


@pytest.mark.slow
def test_quick_ingest_and_chart(tmp_path: Path) -> None:
    proc, records = _bench(tmp_path, "ingest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ingest = [r for r in records if r["scenario"] == "ingest"]
    # One client, then 8 concurrent clients (what the group commit of add-messages is for).
    assert [(r["batch"], r["clients"]) for r in ingest] == [(100, 1), (500, 1), (100, 8), (500, 8)]
    for r in ingest:
        assert (r["delivered"], r["duplicates"], r["lost"]) == (40, 0, 0)
        assert r["queued"] == 40 and r["direct_msg_s"] > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "results" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_exit_2_naming_the_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--senders", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--senders" in proc.stderr


@pytest.mark.slow
def test_quick_scale_report_latency_and_mime(tmp_path: Path) -> None:
    # Every other scenario of `make bench`: each must run to its figures (a scenario that
    # raises is noted and makes the run exit 1).
    proc, records = _bench(tmp_path, "scale", "report", "latency", "mime")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = {(r["scenario"], r["case"]) for r in records}
    assert {
        ("scale", "sqlite, 10,000 pending"),
        ("scale", "sqlite, 50,000 pending"),
        ("scale", "sqlite, 50,000 vs 10,000"),
        ("report", "sqlite, report cycle"),
        ("latency", "sqlite, 20/s"),
    } <= cases, sorted(cases)
    assert {scenario for scenario, _ in cases} >= {"mime"}
    for r in records:
        if r["scenario"] in {"scale", "latency"} and "vs" not in r["case"]:
            assert (r["duplicates"], r["lost"]) == (0, 0), r
