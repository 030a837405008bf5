"""The REPL of ``mail-proxy NAME connect`` (reference §16).

``client`` is a small synchronous client of the HTTP API (``Proxy`` and its ``tenants``,
``accounts`` and ``messages`` sub-APIs, ``ProxyError``); ``console`` runs the Python console
with ``proxy``, the guided forms ``new_tenant()``, ``new_account()``, ``new_message()`` and a
prompt that shows the selected tenant.
"""

from mailproxyd.repl.client import Proxy, ProxyError
from mailproxyd.repl.console import run_console

__all__ = ["Proxy", "ProxyError", "run_console"]
