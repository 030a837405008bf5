"""systemd's notification protocol (``sd_notify``), hand-rolled.

The service manager names a datagram socket in ``NOTIFY_SOCKET``; each notification is one
datagram of newline-separated ``KEY=value`` assignments. A path that starts with ``@`` lives in
Linux's abstract namespace (the ``@`` stands for a leading NUL byte). Without ``NOTIFY_SOCKET``
every call is a no-op, so the supervisor can notify unconditionally.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def socket_address(value: str) -> str | bytes:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value (``@name`` → abstract namespace)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends notifications to the service manager; silent when not run under one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        target = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = socket_address(target) if target else None
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; ``False`` if nobody listens or it failed.

        A failure is swallowed on purpose: losing a STATUS line must never take the node down.
        """
        if self._sock is None or self._address is None or not assignments:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        # Newer systemd versions want a MONOTONIC_USEC with RELOADING=1 (Type=notify-reload).
        usec = int(_monotonic() * 1_000_000)
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str | None) -> tuple[str, ...]:
    return (f"STATUS={text}",) if text else ()


def _monotonic() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is meant for this process.

    systemd sets ``WATCHDOG_PID`` too; if it names another process (a wrapper), the watchdog
    is not ours to feed.
    """
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return usec / 2_000_000
