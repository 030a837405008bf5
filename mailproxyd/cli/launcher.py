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

from mailproxyd import __version__, instance
from mailproxyd.cli import apps
from mailproxyd.cli.errors import EXIT_USAGE, CliExit, UsageError, exit_code_for, print_error
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


def edit_distance(a: str, b: str) -> int:
    """Edits between ``a`` and ``b`` (insert, delete, substitute, swap two neighbours)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def suggestion(word: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'list'?)`` for the closest candidate within two edits, else ``""``."""
    scored = sorted((edit_distance(word, c), c) for c in candidates if not c.startswith("-"))
    if scored and scored[0][0] <= 2:
        return f" (did you mean '{scored[0][1]}'?)"
    return ""


def _words_of(app: cyclopts.App | None, depth: int = 2) -> list[str]:
    """Every command word of ``app`` and its groups (for suggestions)."""
    if app is None or depth < 0:
        return []
    out: set[str] = set()
    for word in app:
        if word.startswith("-") or word == "help":
            continue
        out.add(word)
        out.update(_words_of(app[word], depth - 1))
    return sorted(out)


def _top_words() -> list[str]:
    return sorted(w for w in apps.top if not w.startswith("-") and w != "--help")


def _instance_words() -> list[str]:
    return sorted(
        {w for w in apps.INSTANCE_WORDS} | {w for w in apps.instance if not w.startswith("-")}
    )


def _unknown_instance(name: str, rest: list[str]) -> MailProxyError:
    """The error for a first word that is neither a command nor an existing instance (reference §15.1)."""
    follows_instance_command = bool(rest) and (
        rest[0] in _instance_words()
        or (len(rest) > 1 and rest[1] in apps.TENANT_WORDS and rest[0] not in _HELP)
    )
    if follows_instance_command:
        instance.validate_name(name)
        return MailProxyError(f"instance '{name}' does not exist")
    return UsageError(f"unknown command or instance '{name}'" + suggestion(name, _top_words()))


def _exists(name: str) -> bool:
    try:
        instance.validate_name(name)
    except MailProxyError:
        return False
    return instance.instance_exists(name)


def route(argv: Sequence[str]) -> tuple[cyclopts.App, list[str], apps.Invocation]:
    """Which app serves ``argv``, with which words, and the peeled-off NAME/TENANT."""
    _load_commands()
    words = list(argv)
    if not words or words[0] in _HELP or words[0] in ("--version", "version"):
        return apps.top, words if words[:1] != ["help"] else ["--help"], apps.Invocation()
    if _is_command(apps.top, words[0]) or words[0].startswith("-"):
        return apps.top, words, apps.Invocation()
    name, rest = words[0], words[1:]
    if rest[:1] and rest[0] in _HELP:
        return apps.instance, ["--help"], apps.Invocation(name)
    if not _exists(name):
        raise _unknown_instance(name, rest)
    if not rest:
        raise UsageError(f"missing command after '{name}' (see: mail-proxy {name} --help)")
    if rest[0].startswith("-"):
        return apps.instance, rest, apps.Invocation(name)
    if rest[0] in apps.INSTANCE_WORDS or _is_command(apps.instance, rest[0]):
        return apps.instance, rest, apps.Invocation(name)
    tenant, rest = rest[0], rest[1:]
    if rest[:1] and rest[0] in _HELP:
        return apps.tenant, ["--help"], apps.Invocation(name, tenant)
    if not rest:
        hint = suggestion(tenant, _instance_words())
        if hint:
            raise UsageError(f"unknown command '{tenant}'{hint}")
        raise UsageError(
            f"missing command after '{name} {tenant}' (see: mail-proxy {name} {tenant} --help)"
        )
    return apps.tenant, rest, apps.Invocation(name, tenant)


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
        print_error(_cyclopts_message(exc, app))
        return EXIT_USAGE
    except CliExit as exc:
        return exc.code
    except MailProxyError as exc:
        print_error(exc.message)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:
        # A bug must still read as one line (reference §15.1); the log of a running node has the details.
        print_error(f"internal error: {type(exc).__name__}: {exc}")
        return 1
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0


def _cyclopts_message(exc: cyclopts.CycloptsError, app: cyclopts.App | None = None) -> str:
    unused = getattr(exc, "unused_tokens", None)
    if isinstance(exc, cyclopts.UnusedCliTokensError) and unused:
        word = str(unused[0])
        return f"unknown command or argument '{word}'" + suggestion(word, _words_of(app))
    argument = getattr(exc, "argument", None)
    if isinstance(exc, cyclopts.MissingArgumentError) and argument is not None:
        # The wording of reference §15.1, for flags and positional values alike.
        name = str(argument.name)
        if name.endswith("_ID"):
            name = "ID"
        if sys.stdin.isatty():
            return f"missing {name}"
        return f"missing {name} (required when not running interactively)"
    text = str(exc).strip()
    # cyclopts names the program only as the app; keep the first line, which says it all.
    return text.splitlines()[0] if text else "invalid command line"


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``mail-proxy`` console entry point."""
    code = run(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    raise SystemExit(code)
