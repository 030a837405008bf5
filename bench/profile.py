"""py-spy over a running node, summarised per process kind and per delivered message.

``start(pids, path)`` runs one py-spy per process of the node (supervisor and every worker) at
``RATE`` Hz into collapsed stacks, without pausing the processes (``--nonblocking``) and
keeping only threads that hold the GIL (``--gil``); ``stop`` ends them. Neither py-spy's idle
detection nor ``--gil`` recognises every wait of this program (trio's idle cached worker
threads, its ``epoll_wait``, a blocking ``recv``, the parent watcher), so ``summarise`` counts
samples whose leaf is one of ``WAITS`` as waiting and the rest as busy. The busy figures agree
with the ``/proc`` CPU of the same drain within about 30 %.
``summarise`` turns the stacks into a short text: per process kind the sampled (non-idle) time
per message, the functions where the samples land (self time), and the product functions that
contain the most time (total time, ``mailproxyd/`` frames only).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

RATE = 100
# Leaf frames that are a thread waiting, not working: py-spy's own idle detection misses them
# for trio's cached worker threads, its epoll wait, blocking ``recv`` and the parent watcher.
WAITS = (
    "WorkerThread._work (trio/_core/_thread_cache.py)",
    "EpollIOManager.get_events (trio/_core/_io_epoll.py)",
    "SocketIO.readinto (socket.py)",
    "_watch_parent.<locals>.watch (mailproxyd/workers/_runtime.py)",
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


def start(pids: dict[int, str], out: Path) -> list[subprocess.Popen[bytes]]:
    """One py-spy per process (``pid → label``), each writing ``<out>.<label>``."""
    exe = py_spy()
    if exe is None:
        print("# py-spy is not installed (pip install -e '.[bench]'): no profile", file=sys.stderr)
        return []
    return [
        subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--nonblocking",
                "--gil",
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--output",
                f"{out}.{label}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, label in pids.items()
    ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _short(frame: str) -> str:
    found = _FRAME.match(frame)
    if not found:
        return frame
    path = found["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/mailproxyd/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/mailproxyd/":
                path = "mailproxyd/" + path
            break
    return f"{found['func']} ({path})"


def _lines(out: Path, labels: list[str]) -> Iterator[tuple[str, str]]:
    for label in labels:
        path = Path(f"{out}.{label}")
        if path.exists():
            kind = "sender" if label.startswith("sender") else label
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                yield kind, line


def summarise(out: Path, pids: dict[int, str], delivered: int, top: int = 12) -> str:
    """Text summary of the collapsed stacks written by ``start`` (see module docstring)."""
    self_time: dict[str, Counter[str]] = {}
    total_time: dict[str, Counter[str]] = {}
    samples: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for kind, line in _lines(out, list(pids.values())):
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(n)
        if _short(frames[-1]) in WAITS:
            waiting[kind] += count
            continue
        samples[kind] += count
        self_time.setdefault(kind, Counter())[_short(frames[-1])] += count
        seen = set()
        for frame in frames:
            name = _short(frame)
            if "mailproxyd/" in name and name not in seen:
                seen.add(name)
                total_time.setdefault(kind, Counter())[name] += count

    def ms(count: int) -> str:
        return f"{count / RATE * 1000 / max(1, delivered):7.3f} ms/msg"

    lines = [
        f"py-spy --nonblocking --gil, {RATE} Hz; {delivered} messages delivered",
        "per process kind: sampled time per message",
    ]
    lines += [
        f"  {kind:<12} {ms(count)} busy, {ms(waiting[kind])} waiting"
        for kind, count in samples.most_common()
    ]
    lines.append("waiting: leaf frames " + "; ".join(WAITS))
    for kind, _ in samples.most_common():
        lines += ["", f"[{kind}] self time (where the samples land)"]
        lines += [f"  {ms(c)}  {name}" for name, c in self_time[kind].most_common(top)]
        lines += [f"[{kind}] total time in product functions"]
        lines += [
            f"  {ms(c)}  {name}" for name, c in total_time.get(kind, Counter()).most_common(top)
        ]
    if not samples:
        return "no profile written (py-spy failed: does this process have ptrace rights?)\n"
    return "\n".join(lines) + "\n"
