"""The node's Prometheus metrics (contract §14), shared by its processes through files.

Every process of a node writes its counters and histograms with ``prometheus_client`` in
multiprocess mode: one memory-mapped file per process and metric type in the node's metrics
directory (``Settings.metrics_dir``). The api worker's scrape reads them all and adds them up,
so a count survives the process that made it: the files of a dead worker stay (folded into
one archive file by :func:`fold_dead`), and counters never go backwards while the node runs.
The supervisor empties the directory when the node starts.

``prometheus_client`` picks its storage when the first metric is made and learns the
directory only from ``PROMETHEUS_MULTIPROC_DIR``; :func:`activate` hands it over, so nothing
else reads or sets that variable. Without ``activate`` (tests, benchmarks in one process) the
metrics live in this process's memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SYNC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ACCOUNT_LABELS = ("tenant_id", "tenant_name", "account_id", "account_name")
SYNC_OUTCOMES = ("ok", "rejected", "http_error", "network_error")
# The archive of dead processes' counts; not a pid, so no live process ever writes it.
ARCHIVE = "archive"
_LOCK_FILE = ".lock"
_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No ``_created`` series (§14), also outside multiprocess mode.
prometheus_client.disable_created_metrics()

_directory: str | None = None


@dataclass(frozen=True)
class _Metrics:
    sent: Counter
    errors: Counter
    deferred: Counter
    rate_limited: Counter
    send_duration: Histogram
    sync: Counter
    sync_duration: Histogram
    http_requests: Counter


_metrics: _Metrics | None = None


def activate(directory: str) -> None:
    """Write this process's metrics to ``directory`` (before any metric is used)."""
    global _directory
    if _metrics is not None:
        raise RuntimeError("metrics were used before activate()")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.environ[_ENV] = directory
    _values.ValueClass = _values.MultiProcessValue()
    _directory = directory


def reset_directory(directory: str) -> None:
    """Empty (or create) a node's metrics directory; the supervisor calls it at start."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        registry = None  # never the global registry: the scrape builds its own
        _metrics = _Metrics(
            sent=Counter(
                "gmp_sent",
                "Messages accepted by an SMTP server.",
                ACCOUNT_LABELS,
                registry=registry,
            ),
            errors=Counter(
                "gmp_errors",
                "Accepted messages that became error.",
                ACCOUNT_LABELS,
                registry=registry,
            ),
            deferred=Counter(
                "gmp_deferred",
                "Deferrals (rate limit or temporary failure).",
                ACCOUNT_LABELS,
                registry=registry,
            ),
            rate_limited=Counter(
                "gmp_rate_limited",
                "Rate-limit hits (deferred or rejected).",
                ACCOUNT_LABELS,
                registry=registry,
            ),
            send_duration=Histogram(
                "gmp_send_duration_seconds",
                "Duration of each SMTP attempt, any outcome.",
                ("tenant_id", "account_id"),
                buckets=SEND_BUCKETS,
                registry=registry,
            ),
            sync=Counter(
                "gmp_sync",
                "Sync POSTs by outcome.",
                ("tenant_id", "outcome"),
                registry=registry,
            ),
            sync_duration=Histogram(
                "gmp_sync_duration_seconds",
                "Duration of each sync POST.",
                ("tenant_id",),
                buckets=SYNC_BUCKETS,
                registry=registry,
            ),
            http_requests=Counter(
                "gmp_http_requests",
                "API requests by route template and status.",
                ("route", "status"),
                registry=registry,
            ),
        )
    return _metrics


# --- recording --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountLabels:
    """The labels of an account's series (§14: the tenant's name, or its id when it has none)."""

    tenant_id: str
    tenant_name: str
    account_id: str

    @classmethod
    def of(cls, tenant_id: str, tenant_name: str | None, account_id: str | None) -> AccountLabels:
        return cls(str(tenant_id), str(tenant_name or tenant_id), str(account_id or ""))

    def values(self) -> tuple[str, str, str, str]:
        return (self.tenant_id, self.tenant_name, self.account_id, self.account_id)


def delivery(
    labels: AccountLabels,
    kind: str,
    *,
    rate_limited: bool = False,
    smtp_seconds: float | None = None,
    count: int = 1,
) -> None:
    """Count ``count`` recorded outcomes: ``kind`` is ``sent``, ``deferred`` or ``error``
    (anything else counts nothing but the SMTP attempt's duration)."""
    m = _get()
    values = labels.values()
    if kind == "sent":
        m.sent.labels(*values).inc(count)
    elif kind == "deferred":
        m.deferred.labels(*values).inc(count)
    elif kind == "error":
        m.errors.labels(*values).inc(count)
    if rate_limited:
        m.rate_limited.labels(*values).inc(count)
    if smtp_seconds is not None:
        m.send_duration.labels(labels.tenant_id, labels.account_id).observe(max(0.0, smtp_seconds))


def sync_call(tenant_id: str, outcome: str, seconds: float) -> None:
    """Count one sync POST (§13) and its duration."""
    m = _get()
    m.sync.labels(tenant_id, outcome).inc()
    m.sync_duration.labels(tenant_id).observe(max(0.0, seconds))


def http_request(route: str, status: int) -> None:
    """Count one API request by route template (``unmatched`` for unknown paths)."""
    _get().http_requests.labels(route, str(status)).inc()


def ensure_account_series(accounts: Sequence[AccountLabels]) -> None:
    """Make the series of these accounts exist (at 0 until something happens)."""
    m = _get()
    for labels in accounts:
        values = labels.values()
        for counter in (m.sent, m.errors, m.deferred, m.rate_limited):
            counter.labels(*values)
        m.send_duration.labels(labels.tenant_id, labels.account_id)


# --- the scrape -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gauges:
    """The database-derived gauges of §14."""

    pending: int
    queue_age: float
    unreported: Mapping[str, int]


class _GaugeCollector:
    def __init__(self, gauges: Gauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = self._gauges
        yield GaugeMetricFamily(
            "gmp_pending_messages", "Messages not yet sent or failed.", value=g.pending
        )
        yield GaugeMetricFamily(
            "gmp_queue_age_seconds",
            "Age of the oldest ready message; 0 when none.",
            value=g.queue_age,
        )
        unreported = GaugeMetricFamily(
            "gmp_unreported_events", "Events not yet acknowledged.", labels=("tenant_id",)
        )
        for tenant_id, count in sorted(g.unreported.items()):
            unreported.add_metric((tenant_id,), count)
        yield unreported


def render(gauges: Gauges | None) -> bytes:
    """The Prometheus text of a scrape: every process's counts plus ``gauges`` (blocking)."""
    if _directory is None:
        registry = CollectorRegistry()
        if gauges is not None:
            registry.register(_GaugeCollector(gauges))
        for metric in _get_all():
            registry.register(metric)
        return generate_latest(registry)
    with _locked(_directory, exclusive=False):
        families = _read_directory(_directory)
    parts = [_gauge_text(gauges)] if gauges is not None else []
    parts.extend(family.text() for family in families.values())
    return "".join(parts).encode("utf-8")


# --- the multiprocess files, read fast ------------------------------------------------------
#
# prometheus_client's own reader (MultiProcessCollector + generate_latest) re-parses every
# key's JSON and re-validates every label on every scrape: about 60 ms of CPU for a hundred
# accounts. Keys never change once written, so here each is parsed and its label text built
# once per process; a scrape only adds up the values and writes the lines.


@dataclass(frozen=True, slots=True)
class _Key:
    metric: str  # gmp_send_duration_seconds
    sample: str  # gmp_send_duration_seconds_bucket
    help: str
    labels: str  # the label text without ``le``: 'account_id="smtp1",tenant_id="acme"'
    le: float | None  # a histogram bucket's bound


_keys: dict[str, _Key] = {}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _parse_key(raw: str) -> _Key:
    found = _keys.get(raw)
    if found is None:
        metric, sample, labels, help_text = json.loads(raw)
        le = labels.pop("le", None)
        text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
        found = _keys[raw] = _Key(
            metric, sample, help_text, text, float(le) if le is not None else None
        )
    return found


class _Family:
    def __init__(self, typ: str, key: _Key) -> None:
        self.typ = typ
        self.name = key.metric
        self.help = key.help
        self.samples: dict[tuple[str, str], float] = {}
        self.buckets: dict[str, dict[float, float]] = {}

    def text(self) -> str:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        if self.typ == "counter":
            head = f"# HELP {self.name}_total {help_text}\n# TYPE {self.name}_total counter\n"
        else:
            head = f"# HELP {self.name} {help_text}\n# TYPE {self.name} histogram\n"
        lines = [head]
        for (sample, labels), value in self.samples.items():
            lines.append(f"{sample}{{{labels}}} {floatToGoString(value)}\n")
        for labels, buckets in self.buckets.items():
            total = 0.0
            sep = "," if labels else ""
            for bound in sorted(buckets):
                total += buckets[bound]
                lines.append(
                    f'{self.name}_bucket{{{labels}{sep}le="{floatToGoString(bound)}"}} '
                    f"{floatToGoString(total)}\n"
                )
            lines.append(f"{self.name}_count{{{labels}}} {floatToGoString(total)}\n")
        return "".join(lines)


def _read_directory(directory: str) -> dict[str, _Family]:
    families: dict[str, _Family] = {}
    for path in glob.glob(os.path.join(directory, "*.db")):
        typ = os.path.basename(path).split("_", 1)[0]
        if typ not in ("counter", "histogram"):
            continue  # no process of ours writes gauges or summaries
        try:
            entries = MmapedDict.read_all_values_from_file(path)
        except FileNotFoundError:
            continue
        for raw, value, _timestamp, _pos in entries:
            key = _parse_key(raw)
            family = families.get(key.metric)
            if family is None:
                family = families[key.metric] = _Family(typ, key)
            if key.le is not None:
                buckets = family.buckets.setdefault(key.labels, {})
                buckets[key.le] = buckets.get(key.le, 0.0) + value
            else:
                slot = (key.sample, key.labels)
                family.samples[slot] = family.samples.get(slot, 0.0) + value
    return families


def _gauge_text(g: Gauges) -> str:
    lines = [
        "# HELP gmp_pending_messages Messages not yet sent or failed.\n",
        "# TYPE gmp_pending_messages gauge\n",
        f"gmp_pending_messages {floatToGoString(g.pending)}\n",
        "# HELP gmp_queue_age_seconds Age of the oldest ready message; 0 when none.\n",
        "# TYPE gmp_queue_age_seconds gauge\n",
        f"gmp_queue_age_seconds {floatToGoString(g.queue_age)}\n",
        "# HELP gmp_unreported_events Events not yet acknowledged.\n",
        "# TYPE gmp_unreported_events gauge\n",
    ]
    for tenant_id, count in sorted(g.unreported.items()):
        lines.append(
            f'gmp_unreported_events{{tenant_id="{_escape(tenant_id)}"}} {floatToGoString(count)}\n'
        )
    return "".join(lines)


def _get_all() -> list[Any]:
    m = _get()
    return [getattr(m, f) for f in m.__dataclass_fields__]


@contextlib.contextmanager
def _locked(directory: str, *, exclusive: bool) -> Iterator[None]:
    """Scrapes share the directory; folding a dead process's files excludes them.

    Without it a scrape between writing the archive and removing the dead files would count
    those files twice, and the next scrape would go backwards.
    """
    fd = os.open(os.path.join(directory, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def fold_dead(directory: str, pid: int) -> None:
    """Fold the files of a process that has exited into the archive (blocking).

    Its counts stay in the scrape, and the directory does not grow with every restart.
    """
    with _locked(directory, exclusive=True):
        for typ in ("counter", "histogram"):
            dead = os.path.join(directory, f"{typ}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = os.path.join(directory, f"{typ}_{ARCHIVE}.db")
            files = [f for f in (archive, dead) if os.path.exists(f)]
            merged = MultiProcessCollector.merge(files, accumulate=False)
            tmp = archive + ".tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            target = MmapedDict(tmp)
            try:
                for metric in merged:
                    for sample in metric.samples:
                        labels = sample.labels
                        key = mmap_key(
                            metric.name,
                            sample.name,
                            list(labels),
                            list(labels.values()),
                            metric.documentation,
                        )
                        target.write_value(key, sample.value, 0.0)
            finally:
                target.close()
            os.replace(tmp, archive)
            os.unlink(dead)
        # Gauges are not written by workers, but a stray live gauge must not outlive its pid.
        for path in glob.glob(os.path.join(directory, f"gauge_*_{pid}.db")):
            os.unlink(path)
