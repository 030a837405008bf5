"""The reference §18.6 line formats: timestamped, or syslog-prefixed when stderr is the journal."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

from mailproxyd import logsetup


def _lines(journal: bool) -> list[str]:
    stream = io.StringIO()
    log = logsetup.configure("sender-1", "DEBUG", stream=stream, journal=journal)
    for level in ("debug", "info", "warning", "error", "critical"):
        getattr(log, level)("hello %s", level)
    logsetup.configure("test", "INFO", stream=io.StringIO())
    return stream.getvalue().splitlines()


def test_journal_lines_start_with_the_priority_and_carry_no_timestamp() -> None:
    pid = os.getpid()
    assert _lines(journal=True) == [
        f"<7>DEBUG sender-1[{pid}] hello debug",
        f"<6>INFO sender-1[{pid}] hello info",
        f"<4>WARNING sender-1[{pid}] hello warning",
        f"<3>ERROR sender-1[{pid}] hello error",
        f"<2>CRITICAL sender-1[{pid}] hello critical",
    ]


def test_other_lines_start_with_a_utc_timestamp() -> None:
    for line in _lines(journal=False):
        assert re.match(
            r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ sender-1\[\d+\] hello ", line
        ), line


def test_journal_stream_must_name_this_very_stream(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w") as fh:
        st = os.fstat(fh.fileno())
        named = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logsetup.stderr_is_journal(named, fd=fh.fileno())
        with (tmp_path / "other").open("w") as other:
            assert not logsetup.stderr_is_journal(named, fd=other.fileno())
        assert not logsetup.stderr_is_journal({}, fd=fh.fileno())
        assert not logsetup.stderr_is_journal({"JOURNAL_STREAM": "garbage"}, fd=fh.fileno())


def test_the_level_changes_at_run_time() -> None:
    stream = io.StringIO()
    log = logsetup.configure("api", "WARNING", stream=stream)
    log.info("hidden")
    logsetup.set_level("INFO")
    log.info("shown")
    logsetup.configure("test", "INFO", stream=io.StringIO())
    assert "hidden" not in stream.getvalue() and "shown" in stream.getvalue()
    assert logging.getLogger("mailproxyd").level == logging.INFO
