"""The node's metrics directory: reading it for a scrape, folding a dead process's files.

Each process of the node writes its counts to ``<type>_<pid>.db`` files there (prometheus_client's
multiprocess mode, see :mod:`mailproxyd.drivers.metrics`). A scrape adds them up with
:func:`read_directory`; :func:`fold_dead` moves an exited process's counts into
``<type>_archive.db``. Both hold a ``flock`` on ``.lock``: shared for scrapes, exclusive for
folding, so no scrape ever sees a count twice or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

# The archive of dead processes' counts; not a pid, so no live process ever writes it.
ARCHIVE = "archive"
_LOCK_FILE = ".lock"


def reset_directory(directory: str) -> None:
    """Empty (or create) a node's metrics directory; the supervisor calls it at start."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)


@contextlib.contextmanager
def locked(directory: str, *, exclusive: bool) -> Iterator[None]:
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
    with locked(directory, exclusive=True):
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


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _parse_key(raw: str) -> _Key:
    found = _keys.get(raw)
    if found is None:
        metric, sample, labels, help_text = json.loads(raw)
        le = labels.pop("le", None)
        text = ",".join(f'{k}="{escape(str(v))}"' for k, v in sorted(labels.items()))
        found = _keys[raw] = _Key(
            metric, sample, help_text, text, float(le) if le is not None else None
        )
    return found


class Family:
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


def read_directory(directory: str) -> dict[str, Family]:
    families: dict[str, Family] = {}
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
                family = families[key.metric] = Family(typ, key)
            if key.le is not None:
                buckets = family.buckets.setdefault(key.labels, {})
                buckets[key.le] = buckets.get(key.le, 0.0) + value
            else:
                slot = (key.sample, key.labels)
                family.samples[slot] = family.samples.get(slot, 0.0) + value
    return families
