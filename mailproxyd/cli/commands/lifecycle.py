"""Top-level lifecycle commands (reference §15.2): start, stop, restart, status, list, delete, serve."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import Parameter

from mailproxyd import instance
from mailproxyd.cli import daemon
from mailproxyd.cli.apps import top
from mailproxyd.cli.errors import EXIT_NOT_RUNNING, CliExit, UsageError, print_error
from mailproxyd.cli.output import progress
from mailproxyd.control import client as control
from mailproxyd.errors import MailProxyError
from mailproxyd.settings import Settings, load_settings

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
# Numbers are taken as text and validated by the settings, so a bad value gets the exact
# `configuration error: --port: …` line of reference §3.1 rather than the argument parser's wording.
Port = Annotated[str | None, Parameter(name=["--port", "-p"], help="HTTP listen port.")]
Host = Annotated[str | None, Parameter(help="HTTP listen address.")]
DatabaseUrl = Annotated[str | None, Parameter(help="PostgreSQL database URL.")]
Senders = Annotated[str | None, Parameter(help="Number of sender processes (1-64).")]
Level = Annotated[str | None, Parameter(help="DEBUG, INFO, WARNING, ERROR or CRITICAL.")]
TestMode = Annotated[bool, Parameter(help="Loops stay idle until run-now.")]
JsonFlag = Annotated[bool, Parameter(name="--json", help="Print one JSON document.")]


def _flags(**given: Any) -> dict[str, object]:
    """The settings given on the command line (``None`` = not given)."""
    if given.get("test_mode") is False:
        given["test_mode"] = None
    return {k: v for k, v in given.items() if v is not None}


def _existing(name: str) -> Path:
    instance.validate_name(name)
    if not instance.instance_exists(name):
        raise MailProxyError(f"instance '{name}' does not exist")
    return instance.instance_dir(name)


@top.command
def start(
    name: str,
    /,
    *,
    host: Host = None,
    port: Port = None,
    database_url: DatabaseUrl = None,
    sender_processes: Senders = None,
    log_level: Level = None,
    test_mode: TestMode = False,
    foreground: Annotated[bool, Parameter(help="Run in this process (systemd).")] = False,
) -> int:
    """Start the instance NAME, creating it first if it does not exist.

    Parameters
    ----------
    name
        Instance name.
    """
    instance.validate_name(name)
    flags = _flags(
        host=host,
        port=port,
        database_url=database_url,
        sender_processes=sender_processes,
        log_level=log_level,
        test_mode=test_mode,
    )
    directory = instance.instance_dir(name)
    running = instance.running_pid(directory)
    if running is not None:
        print(f"already running (pid {running})")
        return 0
    created = None
    if not instance.instance_exists(name):
        # Validate the flags before anything is written (an invalid --port stops with exit 2).
        valid = load_settings("instance", name=name, flags=flags)
        created = instance.create_instance(
            name,
            host=valid.host if host is not None else None,
            port=valid.port if port is not None else None,
            database_url=valid.database_url,
            sender_processes=valid.sender_processes if sender_processes is not None else None,
            log_level=valid.log_level if log_level is not None else None,
            test_mode=test_mode or None,
            now=time.time(),
        )
        if foreground:
            # stdout is the journal here: the token stays in the api_token file.
            print(
                f"Instance '{name}' created in {created.path}; "
                f"its admin token is in {created.path / 'api_token'} "
                f"(mail-proxy {name} token prints it)",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"Instance '{name}' created in {created.path}")
            print(f"Admin token: {created.token}")
            print(f"(stored in {created.path / 'api_token'}; mail-proxy {name} token prints it)")
            sys.stdout.flush()
    settings = load_settings("instance", name=name, flags=flags)
    if foreground:
        return _run_foreground(settings)
    return _start_background(name, settings, _flag_args(flags))


def _flag_args(flags: dict[str, object]) -> list[str]:
    args: list[str] = []
    for key, value in flags.items():
        option = "--" + key.replace("_", "-")
        if value is True:
            args.append(option)
        else:
            args += [option, str(value)]
    return args


def _run_foreground(settings: Settings) -> int:
    from mailproxyd.supervisor import run_node

    log_path = os.environ.pop(daemon.LOG_FILE_ENV, None)
    return run_node(settings, log_file=Path(log_path) if log_path else None)


def _start_background(name: str, settings: Settings, args: list[str]) -> int:
    directory = instance.instance_dir(name)
    try:
        with progress(f"starting '{name}'"):
            pid = daemon.start_background(name, args)
    except daemon.StartFailed as exc:
        print_error(f"instance '{name}' did not start: {exc.message}")
        for line in daemon.last_log_lines(directory):
            print(line, file=sys.stderr)
        raise CliExit(exc.exit_code) from None
    url = instance.url_for(settings.host, settings.port)
    print(f"mail-proxy '{name}' running (pid {pid}) at {url}")
    print(f"Log: {daemon.log_file(directory)} (mail-proxy {name} logs)")
    return 0


@top.command
def stop(
    name: str,
    /,
    *,
    force: Annotated[bool, Parameter(help="Kill the node's process group at once.")] = False,
    timeout: Annotated[
        float | None, Parameter(help="Seconds to wait (default: grace + 30).")
    ] = None,
) -> int:
    """Stop the instance NAME gracefully and wait until it has exited.

    Parameters
    ----------
    name
        Instance name.
    """
    directory = _existing(name)
    pid = instance.running_pid(directory)
    if pid is None:
        print(f"'{name}' is not running")
        return 0
    if force:
        daemon.kill_node(directory, pid)
        daemon.wait_gone(pid, 10)
        print(f"'{name}' killed (pid {pid})")
        return 0
    if timeout is None:
        timeout = float(load_settings("instance", name=name).shutdown_grace_seconds) + 30
    daemon.request_stop(directory, pid)
    with progress(f"stopping '{name}'"):
        gone = daemon.wait_gone(pid, timeout)
    if not gone:
        raise MailProxyError(f"'{name}' (pid {pid}) did not stop within {timeout:g} s")
    print(f"'{name}' stopped")
    return 0


@top.command
def restart(
    name: str,
    /,
    *,
    host: Host = None,
    port: Port = None,
    database_url: DatabaseUrl = None,
    sender_processes: Senders = None,
    log_level: Level = None,
    test_mode: TestMode = False,
) -> int:
    """Stop the instance NAME, then start it again in the background.

    Parameters
    ----------
    name
        Instance name.
    """
    stop(name)
    return start(
        name,
        host=host,
        port=port,
        database_url=database_url,
        sender_processes=sender_processes,
        log_level=log_level,
        test_mode=test_mode,
    )


def _uptime(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


@top.command
def status(name: str, /, *, json_output: JsonFlag = False) -> int:
    """Show whether the instance NAME runs, with its pid, URL, uptime, scheduler and workers.

    Exit code 0 when running, 3 when stopped.

    Parameters
    ----------
    name
        Instance name.
    """
    directory = _existing(name)
    pid = instance.running_pid(directory)
    info: dict[str, Any] | None = None
    path = daemon.socket_of(directory) if pid else None
    if path:
        try:
            info = control.call(path, "status", timeout=5)
        except control.ControlUnavailable:
            info = None
    if pid is None or info is None:
        if json_output:
            print(json.dumps({"name": name, "status": "stopped"}))
        else:
            print(f"{name}: stopped")
        raise CliExit(EXIT_NOT_RUNNING)
    uptime = time.time() - float(info.get("started_at") or time.time())
    doc = {"name": name, "status": "running", "uptime_seconds": int(uptime), **info}
    if json_output:
        print(json.dumps(doc))
        return 0
    workers = info.get("workers") or {}
    shown = ", ".join(
        f"{kind} {w.get('running', 0)}/{w.get('expected', 0)}" for kind, w in workers.items()
    )
    print(f"{name}: running")
    print(f"  pid:        {info.get('pid')}")
    print(f"  url:        {info.get('url')}")
    print(f"  uptime:     {_uptime(uptime)}")
    print(f"  scheduler:  {'active' if info.get('scheduler_active') else 'inactive'}")
    if info.get("test_mode"):
        print("  test mode:  on")
    print(f"  workers:    {shown}")
    return 0


@top.command(name="list")
def list_(*, json_output: JsonFlag = False) -> int:
    """List every instance under the root: name, state, pid, port, URL, database kind."""
    rows = instance.list_instances()
    if json_output:
        print(json.dumps({"instances": rows}))
        return 0
    if not rows:
        print(f"no instances in {instance.home()}")
        return 0
    header = ("NAME", "STATUS", "PID", "PORT", "URL", "DATABASE")
    table = [header] + [
        (
            str(r["name"]),
            str(r["status"]),
            str(r.get("pid", "-")),
            str(r.get("port", "-")),
            str(r.get("url", "-")),
            str(r["database"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


@top.command
def delete(
    name: str,
    /,
    *,
    force: Annotated[bool, Parameter(help="Do not ask for confirmation.")] = False,
) -> int:
    """Stop the instance NAME and remove its directory, SQLite database included.

    Parameters
    ----------
    name
        Instance name.
    """
    directory = _existing(name)
    if not force:
        if not sys.stdin.isatty():
            raise UsageError("missing --force (required when not running interactively)")
        answer = input(f"Delete instance '{name}' and all its data in {directory}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    settings = load_settings("instance", name=name)
    if instance.running_pid(directory) is not None:
        stop(name)
    instance.delete_instance(name)
    print(f"Instance '{name}' deleted")
    if settings.is_postgres:
        print("The PostgreSQL database was left untouched.")
    return 0


@top.command
def serve(
    *,
    host: Host = None,
    port: Port = None,
    database_url: DatabaseUrl = None,
    config: Annotated[str | None, Parameter(help="Configuration file (TOML).")] = None,
    sender_processes: Senders = None,
    log_level: Level = None,
    test_mode: TestMode = False,
) -> int:
    """Run a node in the foreground from the environment only (containers, benchmarks)."""
    from mailproxyd.supervisor import run_node

    flags = _flags(
        host=host,
        port=port,
        database_url=database_url,
        config=config,
        sender_processes=sender_processes,
        log_level=log_level,
        test_mode=test_mode,
    )
    return run_node(load_settings("serve", flags=flags))
