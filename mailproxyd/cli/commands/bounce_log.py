"""``bounce show|set`` (reference §5.6) and ``command-log list|export|purge`` (reference §5.7) of an instance."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

from mailproxyd.cli import prompts
from mailproxyd.cli.apps import group, instance_name
from mailproxyd.cli.apps import instance as instance_app
from mailproxyd.cli.context import open_instance
from mailproxyd.cli.errors import UsageError, require_interactive
from mailproxyd.cli.output import print_fields, print_json, print_table, progress, when
from mailproxyd.services import admin

JsonFlag = Annotated[bool, Parameter(name="--json", help="Print one JSON document.")]

bounce_app = group(instance_app, "bounce", "The bounce mailbox of the instance.")


@bounce_app.command(name="show")
def bounce_show(*, json_output: JsonFlag = False) -> int:
    """The bounce mailbox settings (the password only as set/unset)."""
    with open_instance(instance_name()) as ctx:
        found = ctx.run(admin.get_instance)
    if json_output:
        print_json(found)
        return 0
    print_fields(
        [
            ("enabled", found.get("bounce_enabled", False)),
            ("imap host", found.get("bounce_imap_host")),
            ("imap port", found.get("bounce_imap_port")),
            ("imap user", found.get("bounce_imap_user")),
            ("imap password", "set" if found.get("bounce_imap_password_set") else "unset"),
            ("folder", found.get("bounce_imap_folder")),
            ("ssl", found.get("bounce_imap_ssl")),
            ("poll interval", found.get("bounce_poll_interval")),
            ("return path", found.get("bounce_return_path")),
            (
                "last poll",
                when(found.get("bounce_last_sync")) if found.get("bounce_last_sync") else "never",
            ),
            ("last error", found.get("bounce_last_error")),
        ]
    )
    return 0


@bounce_app.command(name="set")
def bounce_set(
    *,
    enabled: Annotated[bool, Parameter(help="Poll the mailbox.")] = False,
    disabled: Annotated[bool, Parameter(help="Stop polling.")] = False,
    imap_host: Annotated[str | None, Parameter(help="IMAP server.")] = None,
    imap_port: Annotated[int | None, Parameter(help="IMAP port (1-65535) [993].")] = None,
    imap_user: Annotated[str | None, Parameter(help="IMAP user.")] = None,
    imap_password: Annotated[str | None, Parameter(help="IMAP password.")] = None,
    folder: Annotated[str | None, Parameter(help="Mailbox folder [INBOX].")] = None,
    ssl: Annotated[bool, Parameter(help="IMAP over TLS.")] = False,
    no_ssl: Annotated[bool, Parameter(help="Plain IMAP.")] = False,
    poll_interval: Annotated[int | None, Parameter(help="Seconds between polls (10-3600).")] = None,
    return_path: Annotated[str | None, Parameter(help="Envelope sender for bounces.")] = None,
) -> int:
    """Change the given bounce settings; the others stay as they are."""
    if enabled and disabled:
        raise UsageError("--enabled and --disabled cannot be combined")
    if ssl and no_ssl:
        raise UsageError("--ssl and --no-ssl cannot be combined")
    given: dict[str, Any] = {
        "bounce_imap_host": imap_host,
        "bounce_imap_port": imap_port,
        "bounce_imap_user": imap_user,
        "bounce_imap_password": imap_password,
        "bounce_imap_folder": folder,
        "bounce_poll_interval": poll_interval,
        "bounce_return_path": return_path,
    }
    payload = {k: v for k, v in given.items() if v is not None}
    if enabled or disabled:
        payload["bounce_enabled"] = enabled
    if ssl or no_ssl:
        payload["bounce_imap_ssl"] = ssl
    if not payload:
        raise UsageError("nothing to change: give at least one option")
    with open_instance(instance_name()) as ctx:
        ctx.run(admin.update_instance, payload)
    print("bounce settings updated")
    return 0


log_app = group(instance_app, "command-log", "The log of state-changing commands.")

Tenant = Annotated[str | None, Parameter(help="Only this tenant's entries.")]
Since = Annotated[int | None, Parameter(help="From this Unix time.")]
Until = Annotated[int | None, Parameter(help="Up to this Unix time.")]


@log_app.command(name="list")
def log_list(
    *,
    tenant: Tenant = None,
    since: Since = None,
    until: Until = None,
    endpoint: Annotated[str | None, Parameter(help="Endpoint name contains this.")] = None,
    limit: Annotated[int, Parameter(help="At most this many (1-1000).")] = 50,
    json_output: JsonFlag = False,
) -> int:
    """Command-log entries, newest first."""
    if not 1 <= limit <= 1000:
        raise UsageError("--limit: must be an integer between 1 and 1000")
    with open_instance(instance_name()) as ctx:
        entries = ctx.run(
            admin.command_log,
            tenant_id=tenant,
            since_ts=since,
            until_ts=until,
            endpoint_filter=endpoint,
            limit=limit,
            offset=0,
        )
    if json_output:
        print_json({"ok": True, "total": len(entries), "commands": entries})
        return 0
    print_table(
        ("ID", "TIME", "ENDPOINT", "TENANT", "STATUS"),
        (
            (
                e["id"],
                when(e["command_ts"]),
                e["endpoint"],
                e.get("tenant_id"),
                e.get("response_status"),
            )
            for e in entries
        ),
        empty="no entries",
    )
    return 0


@log_app.command(name="export")
def log_export(
    *,
    tenant: Tenant = None,
    since: Since = None,
    until: Until = None,
    output: Annotated[
        Path | None, Parameter(name=["--output", "-o"], help="Write to this file (0600).")
    ] = None,
) -> int:
    """At most 100,000 entries, oldest first, as the JSON of GET /command-log/export."""
    with open_instance(instance_name()) as ctx, progress("exporting"):
        entries = ctx.run(
            admin.command_log_export, tenant_id=tenant, since_ts=since, until_ts=until
        )
    text = json.dumps({"ok": True, "commands": entries}, ensure_ascii=False)
    if output is None:
        print(text)
        return 0
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise UsageError(f"-o: cannot write {output}: {exc.strerror}") from None
    print(f"{len(entries)} entries written to {output}", file=sys.stderr)
    return 0


@log_app.command(name="purge")
def log_purge(
    *,
    before: Annotated[
        int | None, Parameter(help="Delete entries older than this Unix time.")
    ] = None,
    force: Annotated[bool, Parameter(help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete command-log entries older than --before."""
    if before is None:
        raise prompts.missing("--before")
    if before < 0:
        raise UsageError("--before: must be an integer >= 0")
    if not force:
        require_interactive("--force")
    with open_instance(instance_name()) as ctx:
        if not prompts.confirm(f"Delete command-log entries before {when(before)}?", force=force):
            print("not purged")
            return 1
        removed = ctx.run(admin.purge_command_log, before)
    print(f"removed: {removed}")
    return 0
