"""The node's metrics directory: reading it for a scrape, folding a dead process's files.

Each process of the node writes its counts to ``<type>_<pid>.db`` files there (prometheus_client's
multiprocess mode, see :mod:`mailproxyd.drivers.metrics`). A scrape adds them up with a
:class:`Reader`; :func:`fold_dead` moves an exited process's counts into
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
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

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
def locked(directory: str, *, exclusive: bool) -> Iterator[int]:
    """Scrapes share the directory; folding a dead process's files excludes them.

    Without it a scrape between writing the archive and removing the dead files would count
    those files twice, and the next scrape would go backwards. Yields the lock file's
    descriptor, which also holds the fold generation (:func:`generation`).
    """
    fd = os.open(os.path.join(directory, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)


def generation(fd: int) -> int:
    """How many folds the directory has seen (kept in the lock file; read under the lock).

    A fold replaces the archive and removes a dead process's files, and a later file may take
    the same name and even the same inode: a reader that remembers files drops them when this
    changes.
    """
    raw = os.pread(fd, 8, 0)
    return int.from_bytes(raw, "little") if len(raw) == 8 else 0


def fold_dead(directory: str, pid: int) -> None:
    """Fold the files of a process that has exited into the archive (blocking).

    Its counts stay in the scrape, and the directory does not grow with every restart.
    """
    with locked(directory, exclusive=True) as lock_fd:
        os.pwrite(lock_fd, (generation(lock_fd) + 1).to_bytes(8, "little"), 0)
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
# accounts. Here nothing that a scrape has seen is worked out again. A file only grows (an
# entry, once written, keeps its key and its place), so each file's entries are parsed once
# into (value offset, slot) pairs; a scrape reads the bytes in use, adds the values up into one
# list by slot and writes them into lines whose text was built when the slot first appeared.
# Only when the set of entries changes (a new series, a new process, a fold) is the layout of
# the text built again.

_INT = struct.Struct("i")
# Values whose text is remembered (most are 0 or small counts); about 2 MB when full.
FORMATTED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class _Key:
    metric: str  # gmp_send_duration_seconds
    sample: str  # gmp_send_duration_seconds_bucket
    help: str
    labels: str  # the label text without ``le``: 'account_id="smtp1",tenant_id="acme"'
    le: float | None  # a histogram bucket's bound


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _parse_key(raw: bytes) -> _Key:
    metric, sample, labels, help_text = json.loads(raw)
    le = labels.pop("le", None)
    text = ",".join(f'{k}="{escape(str(v))}"' for k, v in sorted(labels.items()))
    return _Key(metric, sample, help_text, text, float(le) if le is not None else None)


@dataclass(slots=True)
class _File:
    """One file's entries as far as they have been parsed."""

    inode: int
    typ: str
    parsed: int = 8  # the first entry starts after the 8-byte header
    entries: list[tuple[int, int]] = field(default_factory=list)  # (value offset, slot)
    slots: list[int] = field(default_factory=list)  # the entries' slots, in file order
    # Every value of the file in one call: its doubles at their offsets, the rest skipped.
    values: struct.Struct = field(default_factory=lambda: struct.Struct(""))

    def learnt(self) -> None:
        """Entries were added: the slots and the values' reader follow them."""
        parts, end = ["="], 0
        for offset, _ in self.entries:
            parts.append(f"{offset - end}xd")
            end = offset + 8
        self.values = struct.Struct("".join(parts))
        self.slots = [slot for _, slot in self.entries]


# What a line of the layout writes after its head: nothing (HELP and TYPE), its slot's
# value, or a histogram's running total (the text is cumulative, the files are not): reset to
# the first bucket's slot, increased by a later bucket's, or written as it is (``_count``).
_HEAD, _VALUE, _FIRST_BUCKET, _BUCKET, _COUNT = range(5)


@dataclass(slots=True)
class _Layout:
    """The text of a scrape with the values left out, for one set of files and entries."""

    signature: tuple[tuple[str, int, int], ...]
    lines: list[tuple[str, int, int]]  # (line head, slot, what follows the head)


class Reader:
    """Reads a metrics directory for scrapes; keeps what it learnt from one to the next."""

    def __init__(self) -> None:
        self._slots: dict[bytes, int] = {}
        self._keys: list[tuple[str, _Key]] = []  # slot -> (type, key)
        self._files: dict[str, _File] = {}
        self._layout: _Layout | None = None
        self._folds = 0
        self._formatted: dict[float, str] = {}

    def _slot(self, typ: str, raw: bytes) -> int:
        slot = self._slots.get(raw)
        if slot is None:
            slot = self._slots[raw] = len(self._keys)
            self._keys.append((typ, _parse_key(raw)))
        return slot

    def _read(self, path: str, typ: str) -> tuple[_File, bytes] | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            inode = os.fstat(fd).st_ino
            used = _INT.unpack(os.pread(fd, 4, 0))[0]
            data = os.pread(fd, used, 0)
        finally:
            os.close(fd)
        known = self._files.get(path)
        if known is None or known.inode != inode or known.parsed > used:
            known = self._files[path] = _File(inode, typ)
        pos = start = known.parsed
        while pos < used:
            length = _INT.unpack_from(data, pos)[0]
            if pos + 4 + length > used:
                raise RuntimeError(f"{path}: entry beyond the used size; the file is corrupt")
            raw = data[pos + 4 : pos + 4 + length]
            pos += 4 + length + (8 - (length + 4) % 8)
            known.entries.append((pos, self._slot(typ, raw)))
            pos += 16
        known.parsed = pos
        if pos != start:
            known.learnt()
        return known, data

    def render(self, directory: str) -> str:
        """The counters and histograms of every file in ``directory``, as Prometheus text."""
        with locked(directory, exclusive=False) as lock_fd:
            folds = generation(lock_fd)
            if folds != self._folds:
                self._files.clear()
                self._layout = None
                self._folds = folds
            return self._render(directory)

    def _render(self, directory: str) -> str:
        values = [0.0] * len(self._keys)
        seen: list[tuple[str, int, int]] = []
        for path in sorted(glob.glob(os.path.join(directory, "*.db"))):
            typ = os.path.basename(path).split("_", 1)[0]
            if typ not in ("counter", "histogram"):
                continue  # no process of ours writes gauges or summaries
            found = self._read(path, typ)
            if found is None:
                continue
            known, data = found
            if len(values) < len(self._keys):
                values.extend([0.0] * (len(self._keys) - len(values)))
            for slot, value in zip(known.slots, known.values.unpack_from(data), strict=True):
                values[slot] += value
            seen.append((path, known.inode, known.parsed))
        for path in set(self._files) - {p for p, _, _ in seen}:
            del self._files[path]
        signature = tuple(seen)
        if self._layout is None or self._layout.signature != signature:
            self._layout = self._build(signature)
        fmt = self._format
        out: list[str] = []
        running = 0.0
        for head, slot, kind in self._layout.lines:
            if kind == _HEAD:
                out.append(head)
                continue
            if kind == _VALUE:
                out.append(f"{head}{fmt(values[slot])}\n")
                continue
            if kind == _FIRST_BUCKET:
                running = values[slot]
            elif kind == _BUCKET:
                running += values[slot]
            out.append(f"{head}{fmt(running)}\n")
        return "".join(out)

    def _format(self, value: float) -> str:
        text = self._formatted.get(value)
        if text is None:
            if len(self._formatted) > FORMATTED_MAX:
                self._formatted.clear()
            text = self._formatted[value] = floatToGoString(value)
        return text

    def _build(self, signature: tuple[tuple[str, int, int], ...]) -> _Layout:
        present = sorted(
            {slot for path, _, _ in signature for _, slot in self._files[path].entries}
        )
        families: dict[str, tuple[str, _Key, dict[str, int], dict[str, dict[float, int]]]] = {}
        for slot in present:
            typ, key = self._keys[slot]
            family = families.setdefault(key.metric, (typ, key, {}, {}))
            if key.le is None:
                family[2][f"{key.sample}{{{key.labels}}} "] = slot
            else:
                family[3].setdefault(key.labels, {})[key.le] = slot
        lines: list[tuple[str, int, int]] = []
        for name in sorted(families):
            typ, key, samples, series = families[name]
            help_text = key.help.replace("\\", "\\\\").replace("\n", "\\n")
            shown = f"{name}_total" if typ == "counter" else name
            lines.append((f"# HELP {shown} {help_text}\n# TYPE {shown} {typ}\n", -1, _HEAD))
            lines.extend((head, slot, _VALUE) for head, slot in samples.items())
            for labels, buckets in series.items():
                sep = "," if labels else ""
                kind = _FIRST_BUCKET
                for bound in sorted(buckets):
                    le = floatToGoString(bound)
                    lines.append(
                        (f'{name}_bucket{{{labels}{sep}le="{le}"}} ', buckets[bound], kind)
                    )
                    kind = _BUCKET
                lines.append((f"{name}_count{{{labels}}} ", -1, _COUNT))
        return _Layout(signature, lines)
