"""Log lines of every mail-proxy process (reference §18.6).

Each line reads ``2026-01-01T00:00:05.123Z INFO sender-1[4242] <message>``. Workers always write
to stderr; a daemonised supervisor reads their stderr and appends it, together with its own lines,
to one rotating file, so there is a single writer and rotation stays safe.

When stderr is the journal (systemd sets ``JOURNAL_STREAM`` to the device and inode of the
stream it connected), a line starts with its syslog priority instead of a timestamp —
``<6>INFO sender-1[4242] <message>`` — so ``journalctl -p warning`` filters and the journal's
own timestamp is the only one.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

LOGGER_NAME = "mailproxyd"
ROTATE_BYTES = 10 * 1024 * 1024
ROTATE_KEEP = 5


# syslog priorities of the levels (sd-daemon(3)).
_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def stderr_is_journal(environ: Mapping[str, str], fd: int = 2) -> bool:
    """Whether ``fd`` is the stream ``JOURNAL_STREAM`` (``<device>:<inode>``) names."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


def _priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITIES[level]
    return _PRIORITIES[logging.DEBUG]


class _Formatter(logging.Formatter):
    def __init__(self, process_label: str, *, journal: bool = False) -> None:
        super().__init__()
        self._label = process_label
        self._journal = journal

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        head = f"<{_priority(record.levelno)}>" if self._journal else f"{self.formatTime(record)} "
        text = f"{head}{record.levelname} {self._label}[{os.getpid()}] "
        text += record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(
    process_label: str,
    level: str = "INFO",
    *,
    stream: TextIO | None = None,
    file: Path | None = None,
    journal: bool = False,
) -> logging.Logger:
    """Set up the ``mailproxyd`` logger for this process and return it.

    ``file`` switches to the rotating log of a daemonised node (10 MB, 5 old files kept);
    ``journal``: stderr is the journal (:func:`stderr_is_journal`), lines carry priorities.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler
    if file is not None:
        handler = open_rotating_handler(file)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(process_label, journal=journal and file is None))
    logger.addHandler(handler)
    logger.propagate = False
    set_level(level)
    return logger


def open_rotating_handler(file: Path) -> logging.handlers.RotatingFileHandler:
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The file is created 0600 (reference §2.3) before the handler opens it for appending.
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    return _PrivateRotatingHandler(file, maxBytes=ROTATE_BYTES, backupCount=ROTATE_KEEP)


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating handler whose new files are 0600 whatever the umask."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")

    def write_raw(self, line: str) -> None:
        """Append an already formatted line (a worker's stderr), rotating when due."""
        record = logging.LogRecord(LOGGER_NAME, logging.INFO, "", 0, line, None, None)
        try:
            if self.shouldRollover(record):
                self.doRollover()
            stream = self.stream
            if stream is None:
                stream = self.stream = self._open()
            stream.write(line + "\n")
            stream.flush()
        except OSError:
            self.handleError(record)


def set_level(level: str) -> None:
    """Change the minimum level at run time (reload, reference §3.4)."""
    logging.getLogger(LOGGER_NAME).setLevel(getattr(logging, level.upper(), logging.INFO))


def file_handler() -> _PrivateRotatingHandler | None:
    """The rotating handler of this process, when it logs to a file."""
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if isinstance(handler, _PrivateRotatingHandler):
            return handler
    return None


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
