"""Run a command under a real pseudo-terminal, as a person at a terminal would (tests only).

``PtyProcess`` starts the program as a session leader with the pty as its controlling terminal,
so ``isatty()`` is true and ``getpass`` switches echo off on it. ``expect`` reads until a text
appears (with a deadline), ``send`` types a line. Everything read is kept in ``transcript``.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


class PtyProcess:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        master, slave = os.openpty()
        self._master = master

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env),
            start_new_session=True,
            preexec_fn=controlling_tty,
            close_fds=True,
        )
        os.close(slave)
        self.transcript = ""
        self._seen = 0

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: the other side closed
            return False
        if not data:
            return False
        self.transcript += data.decode("utf-8", errors="replace")
        return True

    def expect(self, text: str, timeout: float = 30.0) -> str:
        """Read until ``text`` appears after what an earlier ``expect`` consumed."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.transcript.find(text, self._seen)
            if found >= 0:
                self._seen = found + len(text)
                return self.transcript
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} not seen within {timeout:g} s:\n{self.transcript}")
            if not self._read(min(remaining, 0.2)) and self.process.poll() is not None:
                # Drain what is left, then give up if the text never came.
                while self._read(0.05):
                    pass
                if self.transcript.find(text, self._seen) < 0:
                    raise AssertionError(
                        f"exited ({self.process.returncode}) before {text!r}:\n{self.transcript}"
                    )

    def send(self, line: str) -> None:
        os.write(self._master, (line + "\r").encode("utf-8"))

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.05):
            pass
        return self.process.wait(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._master)
