"""Administration use cases: one function per operation of the HTTP API (reference §5).

Tenants, accounts, instance settings, suspend/activate, run-now, message listing and
removal, stats, sync status, the command log and the event stream. The API routes call
these; the CLI and the control socket call the same functions, so nothing here knows about
Quart or HTTP: inputs are plain values and dicts, failures are the exceptions of
:mod:`mailproxyd.errors` (``ValidationFailed``, ``NotFound``, ``Conflict``,
``DatabaseUnavailable``), which every interface translates once in its own way.

Each mutation is one database transaction including its command-log entry (reference §5.7); see
:mod:`._common`. Callers use this package as one namespace (``admin.create_tenant``); the
modules behind it are one per concept:

* ``tenants`` — tenants and their API keys
* ``accounts`` — SMTP accounts
* ``messages`` — listing, reading, removing and cleaning up messages
* ``commands`` — suspend/activate and run-now
* ``instance`` — instance settings and the bounce reload
* ``commandlog`` — reading the command log
* ``events`` — the event stream's reads
* ``state`` — health, node status, stats and sync status
"""

from mailproxyd.services.admin._common import ACTOR, log_command, needs_redaction
from mailproxyd.services.admin.accounts import (
    create_account,
    delete_account,
    get_account,
    list_accounts,
    present_account,
    update_account,
)
from mailproxyd.services.admin.commandlog import (
    command_log,
    command_log_export,
    purge_command_log,
)
from mailproxyd.services.admin.commands import (
    SupervisorUnavailable,
    activate,
    run_now,
    set_scheduler_active,
    suspend,
)
from mailproxyd.services.admin.events import events_after, frames_after, latest_event_id
from mailproxyd.services.admin.instance import get_instance, reload_bounce, update_instance
from mailproxyd.services.admin.messages import (
    cleanup_messages,
    decode_cursor,
    delete_messages,
    encode_cursor,
    get_message,
    list_messages,
    present_record,
)
from mailproxyd.services.admin.state import database_reachable, stats, status, sync_status
from mailproxyd.services.admin.tenants import (
    create_tenant,
    delete_tenant,
    get_tenant,
    issue_api_key,
    list_tenants,
    present_tenant,
    revoke_api_key,
    tenant_for_api_key,
    update_tenant,
)

__all__ = [
    "ACTOR",
    "SupervisorUnavailable",
    "activate",
    "cleanup_messages",
    "command_log",
    "command_log_export",
    "create_account",
    "create_tenant",
    "database_reachable",
    "decode_cursor",
    "delete_account",
    "delete_messages",
    "delete_tenant",
    "encode_cursor",
    "events_after",
    "frames_after",
    "get_account",
    "get_instance",
    "get_message",
    "get_tenant",
    "issue_api_key",
    "latest_event_id",
    "list_accounts",
    "list_messages",
    "list_tenants",
    "log_command",
    "needs_redaction",
    "present_account",
    "present_record",
    "present_tenant",
    "purge_command_log",
    "reload_bounce",
    "revoke_api_key",
    "run_now",
    "set_scheduler_active",
    "stats",
    "status",
    "suspend",
    "sync_status",
    "tenant_for_api_key",
    "update_account",
    "update_instance",
    "update_tenant",
]
