"""A refused start creates nothing (exit 2 paths leave no file behind; defect 15.10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import Daemon


def _serve_in(daemon: Daemon, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = daemon.environment(env)
    for name in ("GMP_DB_PATH", "GMP_DATABASE_URL", "GMP_API_TOKEN", "GMP_CONFIG"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mailproxyd.cli", "serve"],
        cwd=cwd,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "error: no admin token configured"),
        (
            {"GMP_API_TOKEN": "admin-token-0123456789", "GMP_SECRET_KEY_FILE": "/nonexistent/key"},
            "GMP_SECRET_KEY_FILE: file not found",
        ),
    ],
    ids=["no-token", "missing-key-file"],
)
def test_a_refused_serve_leaves_nothing_in_the_current_directory(
    daemon: Daemon, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    done = _serve_in(daemon, cwd, env)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in cwd.iterdir()) == []
