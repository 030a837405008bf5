"""Invalid command-line values stop with the exact reference §3.1 line and exit code 2 (reference §15.1)."""

from __future__ import annotations

import pytest

from tests.daemon import Daemon


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["start", "demo", "--port", "abc"],
            'configuration error: --port: must be an integer between 1 and 65535 (got "abc")',
        ),
        (
            ["start", "demo", "-p", "70000"],
            'configuration error: --port: must be an integer between 1 and 65535 (got "70000")',
        ),
        (
            ["start", "demo", "--sender-processes", "0"],
            'configuration error: --sender-processes: must be an integer between 1 and 64 (got "0")',
        ),
        (
            ["serve", "--log-level", "LOUD"],
            "configuration error: --log-level: must be one of DEBUG, INFO, WARNING, ERROR, "
            'CRITICAL (got "LOUD")',
        ),
    ],
)
def test_invalid_flag_values(daemon: Daemon, args: list[str], line: str) -> None:
    result = daemon.cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {line}"
    assert "Traceback" not in result.stderr
    # Nothing is half-applied: the instance was not created.
    assert not (daemon.home / "demo").exists()
