"""Asking for missing values (reference §15.1): prompts on a terminal, the exact error otherwise.

A command first decides whether it is interactive (``interactive()``: stdin is a terminal).
Not interactive, a missing required value stops it with exit code 2 and
``error: missing --host (required when not running interactively)``. Interactive, each value
is asked for with its default in brackets; passwords are read without echo.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence

from mailproxyd.cli.errors import UsageError, require_interactive


def interactive() -> bool:
    return sys.stdin.isatty()


def missing(option: str) -> UsageError:
    return UsageError(f"missing {option} (required when not running interactively)")


def require(value: str | None, option: str) -> str:
    """``value``, or exit 2 naming ``option`` when it is missing and nobody can be asked."""
    if value is None or value == "":
        raise missing(option)
    return value


def ask(label: str, default: str | None = None, *, required: bool = False) -> str | None:
    """One line from the user; ``default`` (shown in brackets) when the answer is empty."""
    shown = f"{label} [{default}]: " if default not in (None, "") else f"{label}: "
    while True:
        try:
            answer = input(shown).strip()
        except EOFError:
            raise UsageError(f"no answer for {label.lower()}") from None
        if answer:
            return answer
        if default not in (None, ""):
            return default
        if not required:
            return None
        print(f"{label} is required.", file=sys.stderr)


def ask_secret(label: str, *, required: bool = False) -> str | None:
    """A password, not echoed."""
    while True:
        try:
            answer = getpass.getpass(f"{label}: ")
        except EOFError:
            raise UsageError(f"no answer for {label.lower()}") from None
        if answer:
            return answer
        if not required:
            return None
        print(f"{label} is required.", file=sys.stderr)


def ask_choice(label: str, choices: Sequence[str], default: str) -> str:
    """One of ``choices`` (asked again until the answer is one)."""
    while True:
        answer = ask(f"{label} ({'/'.join(choices)})", default) or default
        if answer in choices:
            return answer
        print(f"choose one of: {', '.join(choices)}", file=sys.stderr)


def ask_int(label: str, default: int) -> int:
    while True:
        answer = ask(label, str(default)) or str(default)
        try:
            return int(answer)
        except ValueError:
            print(f"{label}: must be an integer", file=sys.stderr)


def confirm(question: str, *, force: bool) -> bool:
    """True with ``--force``; on a terminal ask ``[y/N]``; otherwise exit 2 (missing --force)."""
    if force:
        return True
    require_interactive("--force")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
