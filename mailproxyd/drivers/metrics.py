"""The node's Prometheus metrics (reference §14), shared by its processes through files.

Every process of a node writes its counters and histograms with ``prometheus_client`` in
multiprocess mode: one memory-mapped file per process and metric type in the node's metrics
directory (``Settings.metrics_dir``). The api worker's scrape reads them all and adds them up,
so a count survives the process that made it: the files of a dead worker stay (folded into
one archive file by :func:`fold_dead`, see :mod:`.metrics_files`), and counters never go
backwards while the node runs. The supervisor empties the directory when the node starts.

``prometheus_client`` picks its storage when the first metric is made and learns the
directory only from ``PROMETHEUS_MULTIPROC_DIR``; :func:`activate` hands it over, so nothing
else reads or sets that variable. Without ``activate`` (tests, benchmarks in one process) the
metrics live in this process's memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.utils import floatToGoString

from mailproxyd.drivers import metrics_files
from mailproxyd.drivers.metrics_files import fold_dead, reset_directory

SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SYNC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ACCOUNT_LABELS = ("tenant_id", "tenant_name", "account_id", "account_name")
_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No ``_created`` series (reference §14), also outside multiprocess mode.
prometheus_client.disable_created_metrics()

_directory: str | None = None
# The scrape's reader of the directory: it remembers the files' layout from one scrape to the
# next. Scrapes run in worker threads; one at a time uses it.
_reader = metrics_files.Reader()
_reader_lock = threading.Lock()


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


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        registry = None  # never the global registry: a scrape builds its own
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


# ``AccountLabels.of`` per (tenant id, tenant name, account id) as given: a recorded outcome
# asks for its account's labels once per message. Bounded: emptied when full.
_LABELS_KEPT = 4096
_labels: dict[tuple[Any, Any, Any], AccountLabels] = {}


@dataclass(frozen=True, slots=True)
class AccountLabels:
    """The labels of an account's series (reference §14: the tenant's name, or its id when it has none)."""

    tenant_id: str
    tenant_name: str
    account_id: str

    @classmethod
    def of(cls, tenant_id: str, tenant_name: str | None, account_id: str | None) -> AccountLabels:
        key = (tenant_id, tenant_name, account_id)
        found = _labels.get(key)
        if found is None:
            found = cls(str(tenant_id), str(tenant_name or tenant_id), str(account_id or ""))
            if len(_labels) >= _LABELS_KEPT:
                _labels.clear()
            _labels[key] = found
        return found

    def values(self) -> tuple[str, str, str, str]:
        return (self.tenant_id, self.tenant_name, self.account_id, self.account_id)


@dataclass(frozen=True, slots=True)
class _Children:
    """The label children of one account's series, looked up once (``labels()`` takes a lock
    and builds a key every time; a busy sender counts several times per message)."""

    sent: Any
    errors: Any
    deferred: Any
    rate_limited: Any
    send_duration: Any


# Per AccountLabels. An account's labels are a handful of strings; a node has a bounded number
# of accounts, and the children are what prometheus_client keeps for them anyway.
_children: dict[AccountLabels, _Children] = {}
_children_lock = threading.Lock()


def _children_of(labels: AccountLabels) -> _Children:
    found = _children.get(labels)
    if found is None:
        m = _get()
        values = labels.values()
        with _children_lock:
            found = _children[labels] = _Children(
                m.sent.labels(*values),
                m.errors.labels(*values),
                m.deferred.labels(*values),
                m.rate_limited.labels(*values),
                m.send_duration.labels(labels.tenant_id, labels.account_id),
            )
    return found


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
    children = _children_of(labels)
    if kind == "sent":
        children.sent.inc(count)
    elif kind == "deferred":
        children.deferred.inc(count)
    elif kind == "error":
        children.errors.inc(count)
    if rate_limited:
        children.rate_limited.inc(count)
    if smtp_seconds is not None:
        children.send_duration.observe(max(0.0, smtp_seconds))


def lease_failures(rows: Sequence[Mapping[str, Any]]) -> None:
    """Count messages that became ``error`` when their lease ended (reference §8.3: the third
    expiry, or an account deleted meanwhile); each row holds ``tenant_id``, ``account_id`` and
    ``tenant_name`` (None: the tenant has no name)."""
    counts: dict[AccountLabels, int] = {}
    for row in rows:
        labels = AccountLabels.of(row["tenant_id"], row.get("tenant_name"), row.get("account_id"))
        counts[labels] = counts.get(labels, 0) + 1
    for labels, count in counts.items():
        delivery(labels, "error", count=count)


def sync_call(tenant_id: str, outcome: str, seconds: float) -> None:
    """Count one sync POST (reference §13) and its duration."""
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
    """The database-derived gauges of reference §14."""

    pending: int
    queue_age: float
    unreported: Mapping[str, int]


def counts_text() -> str:
    """Every process's counters and histograms as Prometheus text (blocking: reads files)."""
    if _directory is None:
        registry = CollectorRegistry()
        for metric in _get_all():
            registry.register(metric)
        return generate_latest(registry).decode("utf-8")
    with _reader_lock:
        return _reader.render(_directory)


def render(gauges: Gauges | None, counts: str | None = None) -> bytes:
    """The Prometheus text of a scrape: ``gauges`` and every process's counts (read now when
    ``counts`` is None, which blocks)."""
    head = gauge_text(gauges) if gauges is not None else ""
    return (head + (counts if counts is not None else counts_text())).encode("utf-8")


def gauge_text(g: Gauges) -> str:
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
            f'gmp_unreported_events{{tenant_id="{metrics_files.escape(tenant_id)}"}} {floatToGoString(count)}\n'
        )
    return "".join(lines)


def _get_all() -> list[Any]:
    m = _get()
    return [getattr(m, f) for f in m.__dataclass_fields__]


__all__ = [
    "AccountLabels",
    "Gauges",
    "activate",
    "counts_text",
    "delivery",
    "ensure_account_series",
    "fold_dead",
    "gauge_text",
    "http_request",
    "lease_failures",
    "render",
    "reset_directory",
    "sync_call",
]
