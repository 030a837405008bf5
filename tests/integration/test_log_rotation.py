"""The log file of a daemonised node (reference §2.3, §18.6): 0600, rotated, five old files kept."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailproxyd import logsetup


def test_the_log_rotates_and_keeps_five_private_files(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "mail-proxy.log"
    handler = logsetup.open_rotating_handler(path)
    assert handler.maxBytes == 10 * 1024 * 1024 and handler.backupCount == 5
    handler.maxBytes = 1000  # the same rotation, sooner
    old_umask = os.umask(0o022)
    try:
        for n in range(400):
            handler.write_raw(f"2026-01-01T00:00:05.123Z INFO sender-1[4242] line {n:05d}")
    finally:
        os.umask(old_umask)
        handler.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["mail-proxy.log"] + [f"mail-proxy.log.{i}" for i in range(1, 6)]
    for p in path.parent.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert p.stat().st_size <= 1100
    # The newest lines are in the current file, the older ones in .1, .2, …
    assert path.read_text().splitlines()[-1].endswith("line 00399")
    assert "line 00398" in (path.read_text() + (path.parent / "mail-proxy.log.1").read_text())
