"""The multiprocess files behind reference §14: counts of several processes add up, and the files of a
process that exited fold into the archive without the sum ever moving."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

WRITER = """
import os, sys
from mailproxyd.drivers import metrics
metrics.activate(sys.argv[1])
acme = metrics.AccountLabels.of("acme", "ACME Corp", "smtp1")
for _ in range(int(sys.argv[2])):
    metrics.delivery(acme, "sent")
    metrics.delivery(acme, "attempt", smtp_seconds=0.07)
metrics.delivery(acme, "deferred", rate_limited=True)
metrics.sync_call("acme", "ok", 0.2)
metrics.http_request("/tenant/{id}", 200)
print(os.getpid())
"""

SCRAPER = """
import sys
from mailproxyd.drivers import metrics
metrics.activate(sys.argv[1])
if len(sys.argv) > 2:
    metrics.fold_dead(sys.argv[1], int(sys.argv[2]))
sys.stdout.write(metrics.render(metrics.Gauges(3, 1.5, {"acme": 2})).decode())
"""


def _run(code: str, *args: str) -> str:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


ACME = (
    ("account_id", "smtp1"),
    ("account_name", "smtp1"),
    ("tenant_id", "acme"),
    ("tenant_name", "ACME Corp"),
)


def test_counts_of_processes_add_up_and_survive_folding(tmp_path: Path) -> None:
    directory = str(tmp_path / "metrics")
    first = _run(WRITER, directory, "3").strip()
    second = _run(WRITER, directory, "4").strip()
    before = _values(_run(SCRAPER, directory))
    assert before[("gmp_sent_total", ACME)] == 7
    assert before[("gmp_deferred_total", ACME)] == 2
    assert before[("gmp_rate_limited_total", ACME)] == 2
    histogram = (("account_id", "smtp1"), ("tenant_id", "acme"))
    assert before[("gmp_send_duration_seconds_count", histogram)] == 7
    assert (
        before[("gmp_send_duration_seconds_bucket", (*histogram[:1], ("le", "0.05"), histogram[1]))]
        == 0
    )
    assert (
        before[("gmp_send_duration_seconds_bucket", (*histogram[:1], ("le", "0.1"), histogram[1]))]
        == 7
    )
    assert before[("gmp_sync_total", (("outcome", "ok"), ("tenant_id", "acme")))] == 2
    assert before[("gmp_http_requests_total", (("route", "/tenant/{id}"), ("status", "200")))] == 2
    assert before[("gmp_pending_messages", ())] == 3
    assert before[("gmp_unreported_events", (("tenant_id", "acme"),))] == 2
    assert not [key for key in before if key[0].endswith("_created")]

    after_first = _values(_run(SCRAPER, directory, first))
    after_both = _values(_run(SCRAPER, directory, second))
    assert after_first == before == after_both
    assert sorted(p.name for p in Path(directory).glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]


REFERENCE = """
import sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
registry = CollectorRegistry()
MultiProcessCollector(registry, path=sys.argv[1])
sys.stdout.write(generate_latest(registry).decode())
"""


def test_the_scrape_reads_the_files_as_prometheus_client_does(tmp_path: Path) -> None:
    directory = str(tmp_path / "metrics")
    for n in ("2", "5"):
        _run(WRITER, directory, n)
    ours = _values(_run(SCRAPER, directory))
    reference = _values(_run(REFERENCE, directory))
    gauges = {
        k: v for k, v in ours.items() if k[0].startswith(("gmp_pending", "gmp_queue", "gmp_unrep"))
    }
    assert {k: v for k, v in ours.items() if k not in gauges} == reference


def _write(path: Path, values: dict[str, float]) -> None:
    """Write counter samples into ``path`` the way a process's ``prometheus_client`` does."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    target = MmapedDict(str(path))
    try:
        for tenant, value in values.items():
            labels = {"route": f"/{tenant}", "status": "200"}
            key = mmap_key(
                "gmp_http_requests",
                "gmp_http_requests_total",
                list(labels),
                list(labels.values()),
                "API requests by route template and status.",
            )
            target.write_value(key, value, 0.0)
    finally:
        target.close()


def test_a_reader_kept_between_scrapes_sees_growth_new_files_and_folds(tmp_path: Path) -> None:
    """The api worker's reader remembers each file's layout: what it remembers must never hide
    a new series, a changed value, a new process's file, or a fold's replaced archive."""
    from mailproxyd.drivers import metrics_files

    directory = tmp_path / "metrics"
    directory.mkdir()
    reader = metrics_files.Reader()

    def scrape() -> dict[str, float]:
        found = _values(reader.render(str(directory)))
        return {dict(labels)["route"]: v for (name, labels), v in found.items()}

    _write(directory / "counter_101.db", {"a": 1})
    assert scrape() == {"/a": 1}
    _write(directory / "counter_101.db", {"a": 2, "b": 5})  # a value moves, a series appears
    assert scrape() == {"/a": 2, "/b": 5}
    _write(directory / "counter_102.db", {"b": 1, "c": 3})  # another process
    assert scrape() == {"/a": 2, "/b": 6, "/c": 3}
    metrics_files.fold_dead(str(directory), 102)
    assert scrape() == {"/a": 2, "/b": 6, "/c": 3}
    # A new process that reuses a dead one's pid (so its file name, perhaps its inode) starts
    # from nothing, even when no scrape came between the fold and its first count.
    metrics_files.fold_dead(str(directory), 101)
    _write(directory / "counter_101.db", {"c": 10})
    assert scrape() == {"/a": 2, "/b": 6, "/c": 13}
    metrics_files.fold_dead(str(directory), 101)
    assert scrape() == {"/a": 2, "/b": 6, "/c": 13}
    assert sorted(p.name for p in directory.glob("*.db")) == ["counter_archive.db"]
