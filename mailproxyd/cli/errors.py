"""How the CLI reports failures (reference §15.1): ``error: <message>`` on stderr, never a traceback."""

from __future__ import annotations

import sys

from mailproxyd.errors import (
    ConfigError,
    MailProxyError,
    StartRefused,
    ValidationFailed,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


class UsageError(MailProxyError):
    """Invalid use of the command line (exit code 2)."""


class NotRunning(MailProxyError):
    """the instance is not running"""


class CliExit(Exception):
    """Leave with ``code`` after the command has printed what it wanted."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def exit_code_for(exc: MailProxyError) -> int:
    from mailproxyd.control.client import ControlUnavailable

    if isinstance(exc, UsageError | ConfigError | StartRefused | ValidationFailed):
        return EXIT_USAGE
    if isinstance(exc, NotRunning | ControlUnavailable):
        return EXIT_NOT_RUNNING
    return EXIT_FAILED


def print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def require_interactive(option: str) -> None:
    """Stop with exit 2 when a value would have to be prompted for but stdin is no terminal."""
    if not sys.stdin.isatty():
        raise UsageError(f"missing {option} (required when not running interactively)")
