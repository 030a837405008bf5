"""``mail-proxy NAME TENANT messages list|show|delete`` and ``send FILE.eml`` (reference §15.4, §5.3)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

from mailproxyd.cli import prompts
from mailproxyd.cli.apps import group, instance_name, tenant_id
from mailproxyd.cli.apps import tenant as tenant_app
from mailproxyd.cli.context import open_instance
from mailproxyd.cli.errors import CliExit, UsageError, require_interactive
from mailproxyd.cli.output import print_fields, print_json, print_table, progress, when
from mailproxyd.core import eml
from mailproxyd.services import admin, enqueue

JsonFlag = Annotated[bool, Parameter(name="--json", help="Print one JSON document.")]
STATUSES = ("pending", "deferred", "sending", "sent", "error")
DELETE_CHUNK = 500

messages_app = group(tenant_app, "messages", "Messages of the tenant.")


def _statuses(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in STATUSES]
    if bad:
        raise UsageError(f"--status: unknown status: {bad[0]} (one of {', '.join(STATUSES)})")
    return [s for s in STATUSES if s in parts]


def _done_time(m: dict[str, Any]) -> Any:
    if m.get("status") == "sent":
        return when(m.get("sent_ts"))
    if m.get("status") == "error":
        return when(m.get("error_ts"))
    if m.get("status") == "deferred":
        return "until " + when(m.get("deferred_ts"))
    return "-"


_COLUMNS = ("ID", "STATUS", "PRIORITY", "ACCOUNT", "CREATED", "SENT/ERROR", "ERROR")


def _row(m: dict[str, Any]) -> tuple[Any, ...]:
    return (
        m["id"],
        m.get("status"),
        m.get("priority"),
        m.get("account_id"),
        when(m.get("created_at")),
        _done_time(m),
        m.get("error") or m.get("deferred_reason"),
    )


@messages_app.command(name="list")
def list_(
    *,
    status: Annotated[
        str | None, Parameter(help="Only these statuses: comma-separated " + ",".join(STATUSES))
    ] = None,
    account: Annotated[str | None, Parameter(help="Only this account's messages.")] = None,
    batch: Annotated[str | None, Parameter(help="Only this batch code.")] = None,
    limit: Annotated[int, Parameter(help="At most this many (1-1000).")] = 50,
    json_output: JsonFlag = False,
    csv_output: Annotated[bool, Parameter(name="--csv", help="Print CSV.")] = False,
) -> int:
    """The tenant's messages, priority then queue order."""
    if json_output and csv_output:
        raise UsageError("--json and --csv cannot be combined")
    if not 1 <= limit <= 1000:
        raise UsageError("--limit: must be an integer between 1 and 1000")
    statuses = _statuses(status)
    with open_instance(instance_name()) as ctx:
        page = ctx.run(
            admin.list_messages,
            tenant_id(),
            statuses=statuses,
            account_id=account,
            batch_code=batch,
            include_history=False,
            limit=limit,
            cursor=None,
            offset=0,
        )
    found = page["messages"]
    if json_output:
        print_json({"ok": True, **page})
        return 0
    if csv_output:
        writer = csv.writer(sys.stdout)
        writer.writerow([c.lower().replace("/", "_") for c in _COLUMNS])
        for m in found:
            writer.writerow(["" if v in (None, "-") else v for v in _row(m)])
        return 0
    print_table(_COLUMNS, (_row(m) for m in found), empty="no messages")
    if page.get("next_cursor"):
        print(f"(first {limit} shown; raise --limit or filter to see more)")
    return 0


@messages_app.command
def show(
    message_id: str,
    /,
    *,
    history: Annotated[bool, Parameter(help="Also list the message's events.")] = False,
    json_output: JsonFlag = False,
) -> int:
    """One message record (with --history, its events; --json always has them).

    Parameters
    ----------
    message_id
        Message id.
    """
    with open_instance(instance_name()) as ctx:
        record = ctx.run(admin.get_message, tenant_id(), message_id)
    if json_output:
        print_json(record)  # the body of GET /message/{id}, which always has the history
        return 0
    msg = record.get("message") or {}
    print_fields(
        [
            ("id", record["id"]),
            ("status", record.get("status")),
            ("priority", record.get("priority")),
            ("account", record.get("account_id")),
            ("batch", record.get("batch_code")),
            ("from", msg.get("from")),
            ("to", msg.get("to")),
            ("subject", msg.get("subject")),
            ("message-id", record.get("message_id")),
            ("retries", record.get("retry_count")),
            ("created", when(record.get("created_at"))),
            ("updated", when(record.get("updated_at"))),
            ("sent", when(record.get("sent_ts")) if record.get("sent_ts") else None),
            ("deferred until", when(record["deferred_ts"]) if record.get("deferred_ts") else None),
            ("deferred reason", record.get("deferred_reason")),
            ("error", record.get("error")),
            ("smtp code", record.get("smtp_code")),
            ("reported", when(record["reported_ts"]) if record.get("reported_ts") else None),
        ],
        skip_empty=True,
    )
    if history:
        print()
        print_table(
            ("EVENT", "TIME", "DESCRIPTION", "REPORTED"),
            (
                (
                    e.get("event_type"),
                    when(e.get("event_ts")),
                    e.get("description"),
                    when(e.get("reported_ts")) if e.get("reported_ts") else "no",
                )
                for e in record.get("history") or []
            ),
            empty="no events",
        )
    return 0


@messages_app.command
def delete(
    *ids: Annotated[str, Parameter(help="Message ids.")],
    force: Annotated[bool, Parameter(help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete messages by id with their events (messages being sent are kept)."""
    if not ids:
        raise prompts.missing("ID")
    tenant = tenant_id()
    if not force:
        require_interactive("--force")
    with open_instance(instance_name()) as ctx:
        ctx.run(admin.get_tenant, tenant)
        if not prompts.confirm(f"Delete {len(ids)} message(s) of '{tenant}'?", force=force):
            print("not deleted")
            return 1
        removed, not_found, in_flight = 0, [], []
        chunks = [list(ids[i : i + DELETE_CHUNK]) for i in range(0, len(ids), DELETE_CHUNK)]
        with progress("deleting", len(ids) if len(chunks) > 1 else None) as bar:
            for chunk in chunks:
                result = ctx.run(admin.delete_messages, tenant, chunk)
                removed += int(result["removed"])
                not_found += result["not_found"]
                in_flight += result["in_flight"]
                bar.advance(len(chunk))
    print(f"removed: {removed}")
    if not_found:
        print(f"not found: {', '.join(not_found)}")
    if in_flight:
        print(f"in flight (kept): {', '.join(in_flight)}")
    return 0


@tenant_app.command
def send(
    *files: Annotated[Path, Parameter(help="Stored e-mails (.eml).")],
    account: Annotated[str | None, Parameter(help="Account to send through.")] = None,
    priority: Annotated[str | None, Parameter(help="0-3 or immediate, high, medium, low.")] = None,
    message_id: Annotated[
        str | None, Parameter(name="--id", help="Message id (one file only).")
    ] = None,
    to: Annotated[
        list[str] | None, Parameter(help="Recipients instead of the file's (repeatable).")
    ] = None,
    batch: Annotated[str | None, Parameter(help="Batch code.")] = None,
    json_output: Annotated[
        bool, Parameter(name="--json", help="Print the add-messages result as JSON.")
    ] = False,
) -> int:
    """Queue stored e-mails (.eml); the default id makes a second send of a file harmless.

    From, To, Cc, Bcc, Reply-To, Subject and Message-ID come from the file; the HTML part is
    the body when there is one, else the first text part; other parts become attachments.
    Exit 1 when a message was rejected.
    """
    if not files:
        raise prompts.missing("FILE")
    if message_id is not None and len(files) > 1:
        raise UsageError("--id: only with a single file")
    items = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        item = eml.message_from_eml(raw)
        item["id"] = message_id or eml.default_id(raw)
        if to:
            item["to"] = list(to)
            item.pop("cc", None)
            item.pop("bcc", None)
        if account is not None:
            item["account_id"] = account
        if priority is not None:
            item["priority"] = int(priority) if priority.isdigit() else priority
        if batch is not None:
            item["batch_code"] = batch
        items.append(item)
    tenant = tenant_id()
    queued, rejected, nothing_queued = 0, [], False
    with open_instance(instance_name()) as ctx:
        size = int(ctx.settings.max_batch)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        with progress("sending", len(items) if len(items) > 1 else None) as bar:
            for chunk in chunks:
                body = {"tenant_id": tenant, "messages": chunk}
                outcome = ctx.run(
                    enqueue.add_messages,
                    body,
                    caller_tenant=None,
                    envelope_tenant=tenant,
                )
                queued += outcome.queued
                rejected += outcome.rejected
                nothing_queued = nothing_queued or outcome.nothing_queued
                bar.advance(len(chunk))
    if json_output:
        if nothing_queued and not queued:
            # The body of the API's 400 answer (reference §6.8).
            print_json(
                {
                    "ok": False,
                    "error": "nothing_queued",
                    "queued": 0,
                    "rejected": rejected,
                    "detail": {"error": None, "rejected": rejected},
                },
                strip=False,
            )
        else:
            print_json({"ok": True, "queued": queued, "rejected": rejected}, strip=False)
    else:
        refused = {r["id"]: r["reason"] for r in rejected if r.get("id") is not None}
        for item in items:
            if item["id"] in refused:
                print(f"{item['id']}: rejected: {refused[item['id']]}")
            else:
                print(f"{item['id']}: queued")
        for r in rejected:
            if r.get("id") is None:
                print(f"rejected: {r['reason']}")
        print(f"queued: {queued}, rejected: {len(rejected)}")
    if rejected:
        raise CliExit(1)
    return 0
