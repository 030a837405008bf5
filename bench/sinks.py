"""The SMTP sinks every scenario sends to: Postfix's C ``smtp-sink``, or a Python fallback.

``open_sink(run)`` starts a fresh sink on a free port of 127.0.0.1. Both kinds keep one record
per message received — its ``X-Genro-Mail-ID`` and its arrival time — so every scenario can
count delivered, duplicated and lost messages and time the last arrival:

* ``smtp-sink`` (Debian package ``postfix``) dumps each message into its own file (``-d``)
  under ``/dev/shm`` where it exists: the file's modification time is the arrival time. On a
  disk instead of tmpfs the dump costs the sink most of its speed.
* the fallback is an aiosmtpd server in its own process (``python -m bench.sinks LOGFILE``)
  appending ``<id> <time>`` lines. It is several times slower than the C sink, so the run
  measures it (the ``raw`` baseline) and says which one it used.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Run, have_postfix_tools, tool

MAIL_ID = re.compile(rb"^X-Genro-Mail-ID: ([^\r\n]*)", re.MULTILINE)
INSTALL_HINT = (
    "Postfix's smtp-sink/smtp-source not found: using the Python sink (slower; measured in this "
    "run). For the C sink: apt-get install postfix && postfix stop"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.recv(64)  # the greeting
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port}") from None
            time.sleep(0.02)


class Sink:
    kind = ""
    pid = 0

    def __init__(self) -> None:
        self.port = free_port()

    def count(self) -> int:
        """Messages received so far (cheap; polled)."""
        raise NotImplementedError

    def arrivals(self) -> list[tuple[str, float]]:
        """``(X-Genro-Mail-ID or '?', arrival time.time())`` of every message received."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def wait_count(self, n: int, timeout: float) -> bool:
        """Poll until ``n`` messages arrived; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


class CSink(Sink):
    kind = "postfix smtp-sink"

    def __init__(self, run: Run) -> None:
        super().__init__()
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else run.workdir
        self.dir = Path(tempfile.mkdtemp(prefix="mp-bench-sink-", dir=base))
        os.chmod(self.dir, 0o777)  # written by nobody when run as root
        cmd = [tool("smtp-sink")]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        # %H%M%S keeps the random suffix unique within one second's files.
        cmd += ["-d", f"{self.dir}/%H%M%S.", f"127.0.0.1:{self.port}", "256"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        _wait_listening(self.port, self.proc, "smtp-sink")

    def count(self) -> int:
        return len(os.listdir(self.dir))

    def _read(self, path: str) -> tuple[str, float] | None:
        """The message's id and arrival time; None while the sink is still writing it."""
        with open(path, "rb") as fh:
            data = fh.read()
        found = MAIL_ID.search(data)
        # A complete dump ends with the message and an empty line (the DATA terminator).
        if not data.endswith(b"\n\n") and not found:
            return None
        return (found.group(1).decode() if found else "?"), os.stat(path).st_mtime_ns / 1e9

    def arrivals(self) -> list[tuple[str, float]]:
        result = []
        waiting = []
        for entry in os.scandir(self.dir):
            got = self._read(entry.path)
            if got is None:
                waiting.append(entry.path)
            else:
                result.append(got)
        deadline = time.monotonic() + 10
        while waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            still = []
            for path in waiting:
                got = self._read(path)
                if got is None:
                    still.append(path)
                else:
                    result.append(got)
            waiting = still
        result += [("?", 0.0) for _ in waiting]
        return result

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


class PySink(Sink):
    kind = "python aiosmtpd"

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.log = run.workdir / f"sink-{secrets.token_hex(4)}.arrivals"
        self.log.touch()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sinks", str(self.log), str(self.port)], cwd=ROOT
        )
        self.pid = self.proc.pid
        _wait_listening(self.port, self.proc, "the Python sink")

    def _lines(self) -> list[str]:
        text = self.log.read_text(encoding="utf-8")
        return text[: text.rfind("\n") + 1].splitlines()

    def count(self) -> int:
        with open(self.log, "rb") as fh:
            return fh.read().count(b"\n")

    def arrivals(self) -> list[tuple[str, float]]:
        return [(line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1])) for line in self._lines()]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def sink_kind(run: Run) -> str:
    if not run.options.python_sink and have_postfix_tools():
        return CSink.kind
    if not run.options.python_sink:
        run.note(INSTALL_HINT)
    return PySink.kind


def open_sink(run: Run) -> Sink:
    return CSink(run) if sink_kind(run) == CSink.kind else PySink(run)


# ----------------------------------------------------------------------- the Python sink process


def serve(log_path: str, port: int) -> None:
    """An aiosmtpd server appending ``<X-Genro-Mail-ID> <arrival time>`` per message."""
    from aiosmtpd.controller import Controller

    out = open(log_path, "a", buffering=1, encoding="utf-8")  # lives until exit

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            found = MAIL_ID.search(envelope.original_content or b"")
            out.write(f"{found.group(1).decode() if found else '?'} {time.time():.6f}\n")
            return "250 2.0.0 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()
    out.close()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
