"""py-spy over a running node, summarised per process kind and per delivered message.

``start(pids, path)`` runs one py-spy per process of the node (supervisor and every worker) at
``RATE`` Hz into collapsed stacks; ``stop`` ends them. py-spy pauses the process for each
sample: that costs the node time, but only then does it tell waiting threads (``recv``,
``epoll_wait``, an idle thread-cache worker) from running ones; with ``--nonblocking`` the
waits are counted as busy and hide everything else. Idle samples are dropped.
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
    for kind, line in _lines(out, list(pids.values())):
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(n)
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
        f"py-spy, {RATE} Hz, non-idle samples; {delivered} messages delivered",
        "per process kind: sampled busy time per message",
    ]
    lines += [f"  {kind:<12} {ms(count)}" for kind, count in samples.most_common()]
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
