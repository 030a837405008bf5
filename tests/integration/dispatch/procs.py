"""Starting sender processes (``sender_proc``) from a test, together, and collecting them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[3]


class Senders:
    """A group of sender processes that start their work at the same moment."""

    def __init__(self, url: str, key: bytes, sync_dir: Path) -> None:
        self.url = url
        self.key = key
        self.sync = sync_dir
        self.procs: dict[str, trio.Process] = {}

    async def start(self, name: str, *args: str) -> None:
        env = {**os.environ, "MAIL_PROXY_TEST_KEY": self.key.hex(), "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "tests.integration.dispatch.sender_proc", self.url, name]
        self.procs[name] = await trio.lowlevel.open_process(
            [*cmd, str(self.sync), *args],
            env=env,
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    async def go(self, timeout: float = 30.0) -> None:
        """Wait until every process is ready, then let them all start."""
        with trio.fail_after(timeout):
            while not all((self.sync / f"{n}.ready").exists() for n in self.procs):
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise AssertionError(f"{name} exited early: {await _read(proc)}")
                await trio.sleep(0.01)
        (self.sync / "go").touch()

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)

    def terminate(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGTERM)

    async def result(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for a process to exit 0 and return the JSON it printed last."""
        proc = self.procs[name]
        with trio.fail_after(timeout):
            await proc.wait()
        out, err = await _read(proc)
        assert proc.returncode == 0, f"{name} exited {proc.returncode}: {err}"
        return dict(json.loads(out.strip().splitlines()[-1]))

    async def reap(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            with trio.move_on_after(10):
                await proc.wait()


async def _read(proc: trio.Process) -> tuple[str, str]:
    async def drain(stream: Any) -> bytes:
        chunks = []
        if stream is None:
            return b""
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    out = await drain(proc.stdout)
    err = await drain(proc.stderr)
    return out.decode(), err.decode()
