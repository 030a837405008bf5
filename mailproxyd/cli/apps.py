"""The three cyclopts apps of the grammar, and what the launcher peeled off for them.

Command modules register on ``top`` (``mail-proxy start …``), ``instance``
(``mail-proxy NAME info …``) or ``tenant`` (``mail-proxy NAME TENANT accounts …``). Instance and
tenant commands read the peeled-off words with ``instance_name()`` and ``tenant_id()``. A
command returns an exit code (or ``None`` for 0) and raises ``MailProxyError``s for failures;
the launcher prints those as ``error: <message>`` with the exit code of reference §15.1.
"""

from __future__ import annotations

import dataclasses

from cyclopts import App, Parameter

from mailproxyd import __version__

# Booleans are plain switches (``--force``), without cyclopts' automatic ``--no-force``;
# a command that wants a pair (``--active/--inactive``) declares both names.
_DEFAULTS = Parameter(negative=())

_FORMS = """\
mail-proxy: durable multi-tenant e-mail dispatch proxy.

Forms:
  mail-proxy COMMAND ...
      start, stop, restart, status, list, delete, serve (below)
  mail-proxy NAME COMMAND ...
      commands of the instance NAME: info, stats, token, connect,
      run-now, suspend, activate, logs, watch, config, bounce,
      command-log, tenants
  mail-proxy NAME TENANT COMMAND ...
      commands of one tenant of NAME: info, accounts, messages, send,
      run-now, suspend, activate, api-key

'mail-proxy NAME --help' and 'mail-proxy NAME TENANT --help' list them.
"""

top = App(
    name="mail-proxy",
    help=_FORMS,
    help_format="plaintext",
    version=f"mail-proxy {__version__}",
    default_parameter=_DEFAULTS,
)
instance = App(
    name="mail-proxy NAME",
    help="Commands for one instance.",
    version=f"mail-proxy {__version__}",
    default_parameter=_DEFAULTS,
)
tenant = App(
    name="mail-proxy NAME TENANT",
    help="Commands for one tenant of an instance.",
    version=f"mail-proxy {__version__}",
    default_parameter=_DEFAULTS,
)


def group(parent: App, name: str, help: str) -> App:
    """A sub-command group (``mail-proxy NAME tenants …``) registered on ``parent``."""
    sub = App(name=name, help=help, default_parameter=_DEFAULTS)

    @sub.default
    def _missing() -> None:
        # Help is printed for --help only (reference §15.1); a group word alone is a usage error.
        from mailproxyd.cli.errors import UsageError

        words = ", ".join(sorted(w for w in sub if not w.startswith("-")))
        raise UsageError(f"missing command after '{name}' (one of: {words})")

    parent.command(sub)
    return sub


# The instance command words of reference §15.3. The second word of ``mail-proxy NAME WORD …`` is a
# tenant id unless it is one of these (or a command registered on ``instance``), so words the
# reference reserves stay reserved even before their command module exists.
INSTANCE_WORDS = frozenset(
    {
        "info", "stats", "token", "connect", "run-now", "suspend", "activate", "logs", "watch",
        "config", "bounce", "command-log", "tenants", "help",
    }
)  # fmt: skip
# The tenant command words of reference §15.4 (``mail-proxy NAME TENANT WORD …``).
TENANT_WORDS = frozenset(
    {"info", "accounts", "messages", "send", "run-now", "suspend", "activate", "api-key", "help"}
)


@dataclasses.dataclass
class Invocation:
    instance: str | None = None
    tenant: str | None = None


current = Invocation()


def instance_name() -> str:
    """The ``NAME`` of ``mail-proxy NAME …``."""
    if current.instance is None:
        raise RuntimeError("not an instance command")
    return current.instance


def tenant_id() -> str:
    """The ``TENANT`` of ``mail-proxy NAME TENANT …``."""
    if current.tenant is None:
        raise RuntimeError("not a tenant command")
    return current.tenant
