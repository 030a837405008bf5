"""The launcher: reads ``COMMAND`` / ``NAME COMMAND`` / ``NAME TENANT COMMAND`` (reference §15.1).

A first word that is not a top-level command is an instance name; a second word that is not an
instance command is a tenant id. The rest goes to the matching cyclopts app, with cyclopts'
own errors turned into ``error: <message>`` and exit code 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import cyclopts

from mailproxyd import __version__
from mailproxyd.cli import apps
from mailproxyd.cli.errors import EXIT_USAGE, CliExit, exit_code_for, print_error
from mailproxyd.errors import MailProxyError

_HELP = {"-h", "--help", "help"}
_loaded = False


def _load_commands() -> None:
    """Import every module of ``mailproxyd.cli.commands``; each registers its commands."""
    global _loaded
    if _loaded:
        return
    from mailproxyd.cli import commands

    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}")
    _loaded = True


def _is_command(app: cyclopts.App, word: str) -> bool:
    return word in app and not word.startswith("-")


def route(argv: Sequence[str]) -> tuple[cyclopts.App, list[str], apps.Invocation]:
    """Which app serves ``argv``, with which words, and the peeled-off NAME/TENANT."""
    _load_commands()
    words = list(argv)
    if not words or words[0] in _HELP or words[0] in ("--version", "version"):
        return apps.top, words if words[:1] != ["help"] else ["--help"], apps.Invocation()
    if _is_command(apps.top, words[0]) or words[0].startswith("-"):
        return apps.top, words, apps.Invocation()
    name, rest = words[0], words[1:]
    if not rest or rest[0] in _HELP or rest[0].startswith("-"):
        return apps.instance, rest or ["--help"], apps.Invocation(name)
    if rest[0] in apps.INSTANCE_WORDS or _is_command(apps.instance, rest[0]):
        return apps.instance, rest, apps.Invocation(name)
    tenant, rest = rest[0], rest[1:]
    return apps.tenant, rest or ["--help"], apps.Invocation(name, tenant)


def run(argv: Sequence[str]) -> int:
    """Run one command line; return the exit code (errors already printed)."""
    if list(argv[:1]) in (["--version"], ["version"]):
        print(f"mail-proxy {__version__}")
        return 0
    try:
        app, words, invocation = route(argv)
    except MailProxyError as exc:
        print_error(exc.message)
        return exit_code_for(exc)
    apps.current = invocation
    try:
        result: Any = app(
            words,
            exit_on_error=False,
            print_error=False,
            help_on_error=False,
            result_action="return_value",
        )
    except cyclopts.CycloptsError as exc:
        print_error(_cyclopts_message(exc))
        return EXIT_USAGE
    except CliExit as exc:
        return exc.code
    except MailProxyError as exc:
        print_error(exc.message)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug must still read as one line (reference §15.1); the log of a running node has the details.
        print_error(f"internal error: {type(exc).__name__}: {exc}")
        return 1
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0


def _cyclopts_message(exc: cyclopts.CycloptsError) -> str:
    text = str(exc).strip()
    # cyclopts names the program only as the app; keep the first line, which says it all.
    return text.splitlines()[0] if text else "invalid command line"


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``mail-proxy`` console entry point."""
    code = run(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    raise SystemExit(code)
