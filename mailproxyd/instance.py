"""Instance directories, their files, and the instance key (reference §2.3–§2.5).

An instance is a directory under ``$MAIL_PROXY_HOME`` (default ``~/.mail-proxy``)
holding ``config.toml``, ``api_token``, ``secret.key``, the SQLite database, the
``server.pid`` of a running node and, when daemonised, its logs. Everything
here is created private to the user: directories 0700, files 0600.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailproxyd.core import crypto
from mailproxyd.core.paths import choose_control_socket, control_socket_candidates
from mailproxyd.errors import ConfigError, MailProxyError, StartRefused
from mailproxyd.settings import Settings, mail_proxy_home, read_token_file

RESERVED_NAMES = frozenset(
    {"start", "stop", "restart", "status", "list", "delete", "serve", "help", "version"}
)
PID_FILE = "server.pid"
FIRST_PORT = 8000


class InstanceError(MailProxyError):
    """The instance operation failed."""


@dataclass(frozen=True)
class CreatedInstance:
    """A freshly created instance and its admin token (shown once)."""

    name: str
    path: Path
    token: str
    port: int


def validate_name(name: str) -> str:
    """Instance names follow the identifier rule of reference §0 and are not command words."""
    ok = 1 <= len(name) <= 64 and name[0].isascii() and name[0].isalnum()
    if not ok or not all(c.isascii() and (c.isalnum() or c in "_-.") for c in name):
        raise ConfigError(
            f"invalid instance name '{name}': 1-64 characters from A-Z a-z 0-9 _ - ., "
            "starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"invalid instance name '{name}': it is a command word")
    return name


def home(environ: Mapping[str, str] | None = None) -> Path:
    return mail_proxy_home(environ)


def instance_dir(name: str, environ: Mapping[str, str] | None = None) -> Path:
    return home(environ) / name


def instance_exists(name: str, environ: Mapping[str, str] | None = None) -> bool:
    return (instance_dir(name, environ) / "config.toml").is_file()


def _write_private(path: Path, text: str) -> None:
    """Write a file that is 0600 from its first byte (no window with wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


_TEMPLATE = """\
# mail-proxy instance "{name}" — created {created}
[server]
{host}
{port}
{db_path}
{database_url}

[scheduler]
{active}
{send_loop_interval}
{batch_size_per_account}
{default_priority}
{sender_processes}
{claim_lease_seconds}
{test_mode}

[retry]
# max_retries = 5
# delays = [60, 300, 900, 3600, 7200]
# jitter = 0.1

[smtp]
# timeout = 30

[sync]
# interval = 300
# timeout = 10
# batch_size = 1000
# concurrency = 50

[retention]
# delivery_report_seconds = 604800
# command_log_seconds = 2592000

[attachments]
# max_mb = 25
# timeout = 30
# filesystem_roots = ["/srv/mail-attachments"]
# allow_private_networks = false

[cache]
# disk_dir = "/var/cache/mail-proxy"
# memory_max_mb = 50
# memory_ttl_seconds = 300
# disk_max_mb = 500
# disk_ttl_seconds = 3600
# disk_threshold_kb = 100

[api]
# max_batch = 1000
# max_request_mb = 20
# max_pending_messages = 10000
# max_pending_mb = 64
# metrics_token = ""

[logging]
{log_level}
# delivery_activity = false

[node]
# id = ""
# shutdown_grace_seconds = 30
"""


def _line(key: str, value: object | None, example: str) -> str:
    """``key = value`` when chosen at creation, else the commented example."""
    if value is None:
        return f"# {key} = {example}"
    if isinstance(value, bool):
        rendered = "true" if value else "false"
    elif isinstance(value, int | float):
        rendered = str(value)
    else:
        rendered = json.dumps(str(value))
    return f"{key} = {rendered}"


def render_config(
    name: str,
    *,
    host: str,
    port: int,
    database_url: str | None = None,
    sender_processes: int | None = None,
    log_level: str | None = None,
    test_mode: bool | None = None,
    now: float,
) -> str:
    """The ``config.toml`` of a new instance (reference §3.3): every key present, chosen ones uncommented."""
    created = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _TEMPLATE.format(
        name=name,
        created=created,
        host=_line("host", host, '"0.0.0.0"'),
        port=_line("port", port, "8000"),
        db_path=_line("db_path", None, '"/srv/mail-proxy/mail_service.db"'),
        database_url=_line(
            "database_url", database_url, '"postgresql://mailproxy@db.internal/mailproxy"'
        ),
        active=_line("active", None, "true"),
        send_loop_interval=_line("send_loop_interval", None, "0.5"),
        batch_size_per_account=_line("batch_size_per_account", None, "50"),
        default_priority=_line("default_priority", None, "2"),
        sender_processes=_line("sender_processes", sender_processes, "2"),
        claim_lease_seconds=_line("claim_lease_seconds", None, "120"),
        test_mode=_line("test_mode", test_mode or None, "false"),
        log_level=_line("level", log_level, '"INFO"'),
    )


def _configured_port(path: Path) -> int | None:
    import tomllib

    try:
        with (path / "config.toml").open("rb") as fh:
            port = tomllib.load(fh).get("server", {}).get("port")
    except (OSError, ValueError):
        return None
    return port if isinstance(port, int) else None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def choose_port(environ: Mapping[str, str] | None = None) -> int:
    """The first port ≥ 8000 that no other instance uses and that is free now."""
    root = home(environ)
    used = set()
    if root.is_dir():
        for child in root.iterdir():
            port = _configured_port(child)
            if port is not None:
                used.add(port)
    port = FIRST_PORT
    while port in used or not _port_free(port):
        port += 1
        if port > 65535:
            raise InstanceError("no free port at or above 8000")
    return port


def create_instance(
    name: str,
    *,
    host: str | None = None,
    port: int | None = None,
    database_url: str | None = None,
    sender_processes: int | None = None,
    log_level: str | None = None,
    test_mode: bool | None = None,
    environ: Mapping[str, str] | None = None,
    now: float,
) -> CreatedInstance:
    """Create ``<root>/<name>/`` with ``config.toml``, ``api_token`` and ``secret.key``.

    The database is created by the first start (which also marks the scheduler
    active for instances created this way, reference §3.2).
    """
    validate_name(name)
    path = instance_dir(name, environ)
    if (path / "config.toml").exists():
        raise InstanceError(f"instance '{name}' already exists")
    root = path.parent
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    chosen_port = port if port is not None else choose_port(environ)
    token = crypto.new_token()
    _write_private(path / "api_token", token + "\n")
    _write_private(path / "secret.key", crypto.new_token() + "\n")
    # config.toml last: its presence is what makes the instance exist.
    _write_private(
        path / "config.toml",
        render_config(
            name,
            host=host or "0.0.0.0",
            port=chosen_port,
            database_url=database_url,
            sender_processes=sender_processes,
            log_level=log_level,
            test_mode=test_mode,
            now=now,
        ),
    )
    return CreatedInstance(name=name, path=path, token=token, port=chosen_port)


def delete_instance(name: str, environ: Mapping[str, str] | None = None) -> None:
    """Remove the instance directory (the SQLite database with it)."""
    path = instance_dir(name, environ)
    if not path.exists():
        raise InstanceError(f"instance '{name}' does not exist")
    shutil.rmtree(path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid_file(path: Path) -> dict[str, object] | None:
    """``server.pid`` of the instance directory ``path``, or None when absent or unreadable."""
    try:
        data = json.loads((path / PID_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def running_pid(path: Path) -> int | None:
    """The pid of the node serving this instance directory, when it is alive."""
    data = read_pid_file(path)
    pid = data.get("pid") if data else None
    return pid if isinstance(pid, int) and pid_alive(pid) else None


def write_pid_file(
    path: Path, *, pid: int, host: str, port: int, socket_path: str, started_at: int
) -> None:
    payload = {
        "pid": pid,
        "host": host,
        "port": port,
        "socket": socket_path,
        "started_at": started_at,
    }
    tmp = path / (PID_FILE + ".tmp")
    _write_private(tmp, json.dumps(payload) + "\n")
    os.replace(tmp, path / PID_FILE)


def remove_pid_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (path / PID_FILE).unlink()


def url_for(host: str, port: int) -> str:
    """The URL a client on this machine uses (a wildcard bind is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def list_instances(environ: Mapping[str, str] | None = None) -> list[dict[str, object]]:
    """Every instance under the root with its state (``mail-proxy list``)."""
    root = home(environ)
    out: list[dict[str, object]] = []
    if not root.is_dir():
        return out
    for child in sorted(root.iterdir()):
        if not (child / "config.toml").is_file():
            continue
        port = _configured_port(child)
        pid = running_pid(child)
        info = read_pid_file(child) if pid else None
        recorded = info.get("port") if info else None
        if isinstance(recorded, int):
            port = recorded
        entry: dict[str, object] = {
            "name": child.name,
            "status": "running" if pid else "stopped",
            "database": _database_kind(child),
        }
        if pid:
            entry["pid"] = pid
        if port is not None:
            entry["port"] = port
            host = str(info.get("host", "0.0.0.0")) if info else "0.0.0.0"
            entry["url"] = url_for(host, port)
        out.append(entry)
    return out


def _database_kind(path: Path) -> str:
    import tomllib

    try:
        with (path / "config.toml").open("rb") as fh:
            server = tomllib.load(fh).get("server", {})
    except (OSError, ValueError):
        return "sqlite"
    url = str(server.get("database_url") or server.get("db_path") or "")
    return "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"


# --- the instance key (reference §2.5) -----------------------------------------------------------------


def key_file_path(settings: Settings) -> Path:
    """Where the instance key file is read from (or created) when no key is given directly."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file)
    if settings.mode == "instance" and settings.instance_dir:
        return Path(settings.instance_dir) / "secret.key"
    if settings.sqlite_path:
        return Path(settings.sqlite_path).parent / "secret.key"
    return Path(settings.mail_proxy_home) / "secret.key"


def resolve_instance_key(
    settings: Settings, stored_fingerprint: str | None, *, create: bool = True
) -> bytes:
    """The instance key, checked against the database's fingerprint.

    First match wins: ``GMP_SECRET_KEY`` › ``GMP_SECRET_KEY_FILE`` › the default key
    file. The default file is created only while the database has no fingerprint (and only
    when ``create``: without it this is a dry run that writes nothing). Raises
    ``StartRefused`` (exit 2) when the key does not match or cannot be found.
    """
    mismatch = StartRefused(
        f"secret key does not match the database (expected fingerprint {stored_fingerprint})"
    )
    if settings.secret_key:
        key = crypto.parse_key(settings.secret_key)
    else:
        path = key_file_path(settings)
        text = read_token_file(path)
        if text is None:
            if settings.secret_key_file or stored_fingerprint is not None:
                if stored_fingerprint is None:
                    raise ConfigError(
                        f"configuration error: GMP_SECRET_KEY_FILE: file not found "
                        f'(got "{settings.secret_key_file}")'
                    )
                raise mismatch
            text = crypto.new_token()
            if not create:
                return crypto.parse_key(text)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_private(path, text + "\n")
        try:
            key = crypto.parse_key(text)
        except ValueError as exc:
            raise ConfigError(
                f"configuration error: {path}: {exc} (got {len(text)} characters)"
            ) from None
    if stored_fingerprint is not None and crypto.fingerprint(key) != stored_fingerprint:
        raise mismatch
    return key


# --- the control socket (reference §2.4) ---------------------------------------------------------------


def _usable_socket_dir(directory: str) -> bool:
    """Create the directory (0700) if needed; usable only when it is ours and private."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return False
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
        return False
    return True


def control_socket_path(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The control socket of this node, by the candidates of reference §2.4."""
    if settings.control_socket:
        return settings.control_socket
    env = settings.environ if environ is None else environ
    if settings.mode == "instance":
        name = str(settings.instance_name)
        directory = settings.instance_dir
    else:
        name, directory = f"serve-{settings.port}", None
    candidates = control_socket_candidates(
        name=name,
        instance_dir=directory,
        uid=os.getuid(),
        xdg_runtime_dir=env.get("XDG_RUNTIME_DIR") or None,
        serve_port=settings.port,
    )
    chosen = choose_control_socket(candidates, _usable_socket_dir)
    if chosen is None:
        raise ConfigError("configuration error: no usable control socket location (reference §2.4)")
    return chosen
