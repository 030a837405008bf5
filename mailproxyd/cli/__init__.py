"""The ``mail-proxy`` command line (reference §15).

``main`` is the console entry point. The launcher (``launcher``) reads the grammar of reference §15.1 —
``mail-proxy COMMAND``, ``mail-proxy NAME COMMAND``, ``mail-proxy NAME TENANT COMMAND`` — and
hands the rest of the words to one of three cyclopts apps (``apps``). Commands live in
``cli/commands/``, one module per group; every module there is imported automatically, so adding
a command is a matter of adding one module.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from mailproxyd.cli.launcher import main

__all__ = ["mailproxyd_main", "main"]


def mailproxyd_main(argv: list[str] | None = None) -> NoReturn:
    """``mailproxyd``: the same program as ``mail-proxy serve``.

    It lives here, not in ``supervisor``: the supervisor is below the command line (the
    layers contract in setup.cfg) and never imports it.
    """
    main(["serve", *(sys.argv[1:] if argv is None else argv)])
    raise SystemExit(0)  # pragma: no cover - main exits
