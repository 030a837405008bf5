"""Instance commands (reference §15.3): info, stats, config show, suspend/activate, run-now, logs, watch."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

from mailproxyd import __version__, instance
from mailproxyd.cli import daemon
from mailproxyd.cli.apps import group, instance_name
from mailproxyd.cli.apps import instance as instance_app
from mailproxyd.cli.context import (
    control_call,
    existing_instance,
    open_instance,
    running_url,
    socket_path,
)
from mailproxyd.cli.errors import NotRunning, UsageError
from mailproxyd.cli.output import print_fields, print_json, print_table, when
from mailproxyd.services import admin
from mailproxyd.settings import SPEC_BY_NAME, describe, display_value, load_settings

JsonFlag = Annotated[bool, Parameter(name="--json", help="Print one JSON document.")]


@instance_app.command
def info(*, json_output: JsonFlag = False) -> int:
    """Name, directory, state, pid, address, database, scheduler state, test mode, version."""
    name = instance_name()
    with open_instance(name) as ctx:
        state = ctx.run(admin.status)
        settings = ctx.settings
        pid = instance.running_pid(ctx.directory)
        recorded = instance.read_pid_file(ctx.directory) if pid else None
        host = str(recorded.get("host", settings.host)) if recorded else settings.host
        port = recorded.get("port", settings.port) if recorded else settings.port
        doc: dict[str, Any] = {
            "name": name,
            "directory": str(ctx.directory),
            "status": "running" if pid else "stopped",
            "pid": pid,
            "host": host,
            "port": port,
            "url": instance.url_for(host, int(str(port))),
            "database": display_value(SPEC_BY_NAME["database_url"], settings.database),
            "scheduler_active": state["scheduler_active"],
            "test_mode": bool(settings.test_mode),
            "version": __version__,
        }
    if json_output:
        print_json(doc)
        return 0
    print_fields(
        [
            ("name", doc["name"]),
            ("directory", doc["directory"]),
            ("status", doc["status"]),
            ("pid", doc["pid"]),
            ("host", doc["host"]),
            ("port", doc["port"]),
            ("url", doc["url"]),
            ("database", doc["database"]),
            ("scheduler", "active" if doc["scheduler_active"] else "suspended"),
            ("test mode", "on" if doc["test_mode"] else "off"),
            ("version", doc["version"]),
        ]
    )
    print(f"(the admin token is not shown: mail-proxy {name} token prints it)")
    return 0


@instance_app.command
def stats(*, json_output: JsonFlag = False) -> int:
    """Counts of tenants, accounts and messages by status (as GET /stats)."""
    with open_instance(instance_name()) as ctx:
        counts = ctx.run(admin.stats, None)
    if json_output:
        print_json({"ok": True, **counts})
        return 0
    print_stats(counts)
    return 0


def print_stats(counts: dict[str, Any]) -> None:
    messages = counts.get("messages") or {}
    print_fields(
        [
            ("tenants", counts.get("tenants", 0)),
            ("accounts", counts.get("accounts", 0)),
            *((status, messages.get(status, 0)) for status in _STATUSES),
        ]
    )


_STATUSES = ("pending", "deferred", "sending", "sent", "error")


def _scheduler(active: bool, json_output: bool) -> int:
    with open_instance(instance_name()) as ctx:
        state = ctx.run(admin.set_scheduler_active, active)
    if json_output:
        print_json({"ok": True, "scheduler_active": state, "active": state})
    elif state:
        print("scheduler: active")
    else:
        print("scheduler: suspended (nothing is dispatched until 'activate')")
    return 0


@instance_app.command
def suspend(*, json_output: JsonFlag = False) -> int:
    """Suspend the whole scheduler: nothing is dispatched, messages stay queued."""
    return _scheduler(False, json_output)


@instance_app.command
def activate(*, json_output: JsonFlag = False) -> int:
    """Activate the scheduler again."""
    return _scheduler(True, json_output)


@instance_app.command(name="run-now")
def run_now(
    *, tenant: Annotated[str | None, Parameter(help="Also clear this tenant's DND.")] = None
) -> int:
    """Wake every sender and reporter now (needs the running node; exit 3 otherwise)."""
    directory = existing_instance(instance_name())
    control_call(directory, "run_now", {"tenant_id": tenant} if tenant else {})
    print("run-now triggered" + (f" for tenant '{tenant}'" if tenant else ""))
    return 0


config_app = group(instance_app, "config", "The effective configuration.")


@config_app.command(name="show")
def config_show(*, json_output: JsonFlag = False) -> int:
    """Every setting with its value and source (flag, env, file, default); secrets masked.

    Resolved as a start from this shell would resolve them.
    """
    name = instance_name()
    existing_instance(name)
    rows = describe(load_settings("instance", name=name))
    if json_output:
        print_json({"settings": rows})
        return 0
    print_table(
        ("SETTING", "VALUE", "SOURCE", "CONFIG KEY"),
        ((r["setting"], r["value"] or "-", r["source"], r["key"] or "-") for r in rows),
    )
    return 0


@instance_app.command
def logs(
    *,
    follow: Annotated[bool, Parameter(name=["--follow", "-f"], help="Keep printing.")] = False,
    lines: Annotated[int, Parameter(name=["-n", "--lines"], help="Lines to show.")] = 100,
) -> int:
    """The last lines of the node's log file (logs/mail-proxy.log)."""
    name = instance_name()
    directory = existing_instance(name)
    if lines < 0:
        raise UsageError("-n: must be an integer >= 0")
    path = daemon.log_file(directory)
    if not path.exists():
        print(
            f"no log file at {path}: a node run in the foreground logs to its standard error; "
            f"under systemd: journalctl -u mail-proxy@{name}"
        )
        return 0
    with path.open("rb") as fh:
        tail = deque(fh, maxlen=lines) if lines else deque()
        for raw in tail:
            sys.stdout.write(raw.decode("utf-8", errors="replace"))
        sys.stdout.flush()
        if follow:
            _follow(path, fh)
    return 0


def _follow(path: Path, fh: Any) -> None:
    """Print what is appended, following the file across rotations, until Ctrl-C."""
    inode = os.fstat(fh.fileno()).st_ino
    try:
        while True:
            chunk = fh.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
                continue
            time.sleep(0.25)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue
            if info.st_ino != inode or info.st_size < fh.tell():
                fh.close()
                fh = path.open("rb")
                inode = os.fstat(fh.fileno()).st_ino
    except KeyboardInterrupt:
        return
    finally:
        fh.close()


@instance_app.command
def watch(
    tenant: Annotated[str | None, Parameter(help="Only this tenant's events.")] = None,
    /,
    *,
    json_output: Annotated[bool, Parameter(name="--json", help="Print the JSON frames.")] = False,
) -> int:
    """Live delivery events, one line each, until interrupted (needs the running node)."""
    import trio

    name = instance_name()
    directory = existing_instance(name)
    url = running_url(directory)
    if url is None or socket_path(directory) is None:
        raise NotRunning()
    token = load_settings("instance", name=name).api_token or ""
    try:
        trio.run(_watch, url, token, tenant, json_output)
    except BaseException as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, KeyboardInterrupt):
            return 0
        raise _watch_error(leaf) from None
    return 0


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _watch_error(exc: BaseException) -> BaseException:
    import trio_websocket

    from mailproxyd.errors import MailProxyError

    if isinstance(exc, trio_websocket.HandshakeError):
        return MailProxyError(f"the event stream was refused: {_handshake_detail(exc)}")
    if isinstance(exc, trio_websocket.ConnectionClosed):
        return MailProxyError("the event stream was closed by the node")
    if isinstance(exc, OSError):
        return NotRunning()
    return exc


async def _watch(url: str, token: str, tenant: str | None, json_output: bool) -> None:
    from urllib.parse import quote

    import trio_websocket

    target = "ws" + url.removeprefix("http") + "/events"
    if tenant:
        target += "?tenant_id=" + quote(tenant, safe="")
    headers = [(b"X-API-Token", token.encode("utf-8"))]
    async with trio_websocket.open_websocket_url(
        target, extra_headers=headers, connect_timeout=10
    ) as ws:
        while True:
            text = await ws.get_message()
            frame = json.loads(text)
            print(text if json_output else event_line(frame), flush=True)


def _handshake_detail(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    status = getattr(exc, "status_code", None)
    try:
        detail = json.loads(body).get("detail") if body else None
    except ValueError:
        detail = None
    return f"HTTP {status}" + (f": {detail}" if detail else "")


def event_line(frame: dict[str, Any]) -> str:
    """``2026-01-01 00:00:05 acme MSG-001 sent account=smtp1`` (and the reason of failures)."""
    event = str(frame.get("event") or "")
    ts = {
        "sent": frame.get("sent_ts"),
        "error": frame.get("error_ts"),
        "bounce": frame.get("bounce_ts"),
    }.get(event)
    parts = [
        when(ts if ts is not None else time.time()),
        str(frame.get("tenant_id")),
        str(frame.get("id")),
        event,
    ]
    if frame.get("account_id"):
        parts.append(f"account={frame['account_id']}")
    if event == "deferred":
        parts.append(f"until={when(frame.get('deferred_ts')).replace(' ', 'T')}")
        if frame.get("deferred_reason"):
            parts.append(f"reason={json.dumps(frame['deferred_reason'])}")
    if event == "error" and frame.get("error"):
        parts.append(f"reason={json.dumps(frame['error'])}")
    if event == "bounce" and frame.get("bounce_type"):
        parts.append(f"type={frame['bounce_type']}")
    return " ".join(parts)
