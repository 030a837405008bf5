"""Configuration: one typed, immutable ``Settings`` built once (reference §3).

Precedence for every setting: command-line flag › environment variable ›
configuration file › built-in default. This is the only module that reads
``os.environ``; everything else receives a ``Settings``. Workers get the
resolved object from their supervisor (``to_json``/``from_json``) instead of
re-reading the environment, so a node's processes always agree.

Invalid input stops the start with the exact line of reference §3.1, naming the source
that supplied the value (``GMP_PORT``, ``--port`` or ``config.toml: server.port``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mailproxyd.core import crypto, paths
from mailproxyd.core.smtp_outcome import SMTP_TIMEOUT_SECONDS
from mailproxyd.errors import ConfigError

Mode = Literal["serve", "instance"]
Source = Literal["flag", "env", "file", "default"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PRIORITY_LABELS = {"immediate": 0, "high": 1, "medium": 2, "low": 3}
UNIX_SOCKET_MAX = 107


class _Invalid(ValueError):
    """A value failed its rule; the text is the ``<problem>`` part of reference §3.1."""


# --- value parsers: raw value (str from env/flags, native from TOML) -> typed ---------------


def _bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE:
        return True
    if isinstance(raw, str) and raw.strip().lower() in _FALSE:
        return False
    raise _Invalid("must be a boolean (true, false, 1, 0, yes, no, on, off)")


def _int_between(lo: int | None, hi: int | None) -> Callable[[object], int]:
    if lo is not None and hi is not None:
        problem = f"must be an integer between {lo} and {hi}"
    elif lo is not None:
        problem = f"must be an integer >= {lo}"
    else:
        problem = "must be an integer"

    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise _Invalid(problem)
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
            value = int(raw.strip())
        else:
            raise _Invalid(problem)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(problem)
        return value

    return parse


def _number_between(lo: float | None, hi: float | None) -> Callable[[object], float]:
    if lo is not None and hi is not None:
        problem = f"must be a number between {lo:g} and {hi:g}"
    else:
        problem = f"must be a number >= {lo:g}" if lo is not None else "must be a number"

    def parse(raw: object) -> float:
        if isinstance(raw, bool):
            raise _Invalid(problem)
        if isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise _Invalid(problem) from None
        else:
            raise _Invalid(problem)
        if value != value or value in (float("inf"), float("-inf")):
            raise _Invalid(problem)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(problem)
        return value

    return parse


def _log_level(raw: object) -> str:
    if isinstance(raw, str) and raw.strip().upper() in _LEVELS:
        return raw.strip().upper()
    raise _Invalid("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")


def _priority(raw: object) -> int:
    problem = "must be 0, 1, 2, 3 or one of immediate, high, medium, low"
    if isinstance(raw, bool):
        raise _Invalid(problem)
    if isinstance(raw, int) and 0 <= raw <= 3:
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in {"0", "1", "2", "3"}:
            return int(text)
        if text in _PRIORITY_LABELS:
            return _PRIORITY_LABELS[text]
    raise _Invalid(problem)


def _address(raw: object) -> str:
    text = raw.strip() if isinstance(raw, str) else ""
    if not text or any(c.isspace() for c in text):
        raise _Invalid("must be a host name or IP address")
    return text


def _optional_text(raw: object) -> str | None:
    if not isinstance(raw, str):
        raise _Invalid("must be a string")
    return raw.strip() or None


def _path(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _Invalid("must be a path")
    return raw.strip()


def _db_path(raw: object) -> str:
    text = _path(raw)
    if text in (":memory:", "sqlite::memory:") or text.startswith("file::memory:"):
        raise _Invalid("in-memory databases are not supported")
    return text


def _pg_url(raw: object) -> str:
    text = _path(raw)
    if not text.startswith(("postgresql://", "postgres://")):
        raise _Invalid("must be a PostgreSQL URL (postgresql://…)")
    return text


def _api_token(raw: object) -> str:
    if not isinstance(raw, str) or len(raw) < 8 or any(c.isspace() for c in raw):
        raise _Invalid("must be at least 8 characters without whitespace")
    return raw


def _secret_key(raw: object) -> str:
    if not isinstance(raw, str):
        raise _Invalid("must be 43 URL-safe base64 characters (32 bytes)")
    try:
        crypto.parse_key(raw)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return raw.strip()


def _identifier(raw: object) -> str:
    text = raw.strip() if isinstance(raw, str) else ""
    ok = 1 <= len(text) <= 64 and text[0].isascii() and text[0].isalnum()
    if not ok or not all(c.isascii() and (c.isalnum() or c in "_-./") for c in text):
        raise _Invalid("must be 1-64 characters from A-Z a-z 0-9 _ - . /, starting alphanumeric")
    return text


def _delays(raw: object) -> tuple[int, ...]:
    problem = "must be a non-empty list of whole seconds >= 1"
    if isinstance(raw, str):
        parts: list[object] = [p for p in (s.strip() for s in raw.split(",")) if p]
    elif isinstance(raw, list | tuple):
        parts = list(raw)
    else:
        raise _Invalid(problem)
    if not parts:
        raise _Invalid(problem)
    parse = _int_between(1, None)
    try:
        return tuple(parse(p) for p in parts)
    except _Invalid:
        raise _Invalid(problem) from None


def _fs_roots(raw: object) -> tuple[str, ...]:
    problem = "must be a list of absolute paths"
    if isinstance(raw, str):
        parts: list[object] = [p for p in (s.strip() for s in raw.split(":")) if p]
    elif isinstance(raw, list | tuple):
        parts = list(raw)
    else:
        raise _Invalid(problem)
    if not all(isinstance(p, str) and os.path.isabs(p) for p in parts):
        raise _Invalid(problem)
    return tuple(os.path.normpath(str(p)) for p in parts)


def _control_socket(raw: object) -> str:
    text = _path(raw)
    if len(os.fsencode(text)) > UNIX_SOCKET_MAX:
        raise _Invalid(f"path longer than {UNIX_SOCKET_MAX} bytes")
    return text


# --- the table of settings (reference §3.2) ----------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One setting: where it can come from, how it is parsed, whether reload applies it."""

    name: str
    env: str
    file_key: str | None
    flag: str | None
    parse: Callable[[object], Any]
    default: Any
    secret: bool = False
    reloadable: bool = True


def _s(
    name: str,
    file_key: str | None,
    parse: Callable[[object], Any],
    default: Any,
    *,
    flag: str | None = None,
    env: str | None = None,
    secret: bool = False,
    reloadable: bool = True,
) -> Spec:
    return Spec(
        name, env or f"GMP_{name.upper()}", file_key, flag, parse, default, secret, reloadable
    )


SPECS: tuple[Spec, ...] = (
    _s("log_level", "logging.level", _log_level, "INFO", flag="--log-level"),
    _s("db_path", "server.db_path", _db_path, None, reloadable=False),
    _s(
        "database_url",
        "server.database_url",
        _pg_url,
        None,
        flag="--database-url",
        reloadable=False,
    ),
    _s("host", "server.host", _address, "0.0.0.0", flag="--host", reloadable=False),
    _s("port", "server.port", _int_between(1, 65535), 8000, flag="--port", reloadable=False),
    _s("scheduler_active", "scheduler.active", _bool, None, reloadable=False),
    _s("api_token", None, _api_token, None, secret=True),
    _s("send_loop_interval", "scheduler.send_loop_interval", _number_between(0.05, None), 0.5),
    _s("test_mode", "scheduler.test_mode", _bool, False, flag="--test-mode", reloadable=False),
    _s("default_priority", "scheduler.default_priority", _priority, 2),
    _s(
        "delivery_report_retention_seconds",
        "retention.delivery_report_seconds",
        _int_between(None, None),
        604800,
    ),
    _s("batch_size_per_account", "scheduler.batch_size_per_account", _int_between(1, 10000), 50),
    _s("log_delivery_activity", "logging.delivery_activity", _bool, False),
    _s("cache_disk_dir", "cache.disk_dir", _optional_text, None),
    _s("cache_memory_max_mb", "cache.memory_max_mb", _int_between(0, None), 50),
    _s("cache_disk_max_mb", "cache.disk_max_mb", _int_between(1, None), 500),
    _s("cache_memory_ttl_seconds", "cache.memory_ttl_seconds", _int_between(1, None), 300),
    _s("cache_disk_ttl_seconds", "cache.disk_ttl_seconds", _int_between(1, None), 3600),
    _s("cache_disk_threshold_kb", "cache.disk_threshold_kb", _int_between(0, None), 100),
    _s(
        "sender_processes",
        "scheduler.sender_processes",
        _int_between(1, 64),
        2,
        flag="--sender-processes",
    ),
    _s("claim_lease_seconds", "scheduler.claim_lease_seconds", _int_between(30, 3600), 120),
    _s("max_retries", "retry.max_retries", _int_between(0, 50), 5),
    _s("retry_delays", "retry.delays", _delays, (60, 300, 900, 3600, 7200)),
    _s("retry_jitter", "retry.jitter", _number_between(0, 0.5), 0.1),
    _s("smtp_timeout", "smtp.timeout", _number_between(5, 600), SMTP_TIMEOUT_SECONDS),
    _s("sync_interval", "sync.interval", _number_between(10, None), 300.0),
    _s("sync_timeout", "sync.timeout", _number_between(1, 120), 10.0),
    _s("sync_batch_size", "sync.batch_size", _int_between(1, 1000), 1000),
    _s("sync_concurrency", "sync.concurrency", _int_between(1, 1000), 50),
    _s("max_batch", "api.max_batch", _int_between(1, 100000), 1000),
    _s("max_request_mb", "api.max_request_mb", _int_between(1, 1024), 20),
    _s("max_pending_messages", "api.max_pending_messages", _int_between(1, 10_000_000), 10_000),
    _s("max_pending_mb", "api.max_pending_mb", _int_between(1, 65536), 64),
    _s("metrics_token", "api.metrics_token", _optional_text, None, secret=True),
    _s("attachment_max_mb", "attachments.max_mb", _int_between(1, 2048), 25),
    _s("attachment_timeout", "attachments.timeout", _number_between(1, 600), 30.0),
    _s("attachment_fs_roots", "attachments.filesystem_roots", _fs_roots, ()),
    _s("allow_private_networks", "attachments.allow_private_networks", _bool, False),
    _s(
        "command_log_retention_seconds",
        "retention.command_log_seconds",
        _int_between(None, None),
        2592000,
    ),
    _s("shutdown_grace_seconds", "node.shutdown_grace_seconds", _int_between(1, 600), 30),
    _s("node_id", "node.id", _identifier, None, reloadable=False),
    _s("secret_key", None, _secret_key, None, secret=True, reloadable=False),
    _s("secret_key_file", None, _path, None, reloadable=False),
    _s("control_socket", None, _control_socket, None, reloadable=False),
    _s("config", None, _path, None, flag="--config", reloadable=False),
    _s("mail_proxy_home", None, _path, None, env="MAIL_PROXY_HOME", reloadable=False),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
_FILE_KEYS = {spec.file_key: spec for spec in SPECS if spec.file_key}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one node. Immutable; a reload builds a new one."""

    log_level: str
    db_path: str | None
    database_url: str | None
    host: str
    port: int
    scheduler_active: bool | None
    api_token: str | None
    send_loop_interval: float
    test_mode: bool
    default_priority: int
    delivery_report_retention_seconds: int
    batch_size_per_account: int
    log_delivery_activity: bool
    cache_disk_dir: str | None
    cache_memory_max_mb: int
    cache_disk_max_mb: int
    cache_memory_ttl_seconds: int
    cache_disk_ttl_seconds: int
    cache_disk_threshold_kb: int
    sender_processes: int
    claim_lease_seconds: int
    max_retries: int
    retry_delays: tuple[int, ...]
    retry_jitter: float
    smtp_timeout: float
    sync_interval: float
    sync_timeout: float
    sync_batch_size: int
    sync_concurrency: int
    max_batch: int
    max_request_mb: int
    max_pending_messages: int
    max_pending_mb: int
    metrics_token: str | None
    attachment_max_mb: int
    attachment_timeout: float
    attachment_fs_roots: tuple[str, ...]
    allow_private_networks: bool
    command_log_retention_seconds: int
    shutdown_grace_seconds: int
    node_id: str
    secret_key: str | None
    secret_key_file: str | None
    control_socket: str | None
    config: str | None
    mail_proxy_home: str
    # Derived and bookkeeping fields.
    mode: Mode = "serve"
    instance_name: str | None = None
    instance_dir: str | None = None
    database: str = ""
    # Where the node's processes write their metrics (derived, reference §14; not a setting).
    metrics_dir: str = ""
    sources: Mapping[str, Source] = field(default_factory=dict)
    config_file: str | None = None
    # What the settings were built from, so a reload re-reads the files but not the environment.
    flags: Mapping[str, object] = field(default_factory=dict, repr=False)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_postgres(self) -> bool:
        return self.database.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> str | None:
        return None if self.is_postgres else self.database.removeprefix("sqlite:")

    def to_json(self) -> str:
        """Serialise for a worker process (it must not re-resolve anything itself)."""
        data = dataclasses.asdict(self)
        data["sources"] = dict(self.sources)
        data["flags"] = {k: v for k, v in self.flags.items()}
        data["environ"] = {}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        for name in ("retry_delays", "attachment_fs_roots"):
            data[name] = tuple(data[name])
        return cls(**data)


# --- loading --------------------------------------------------------------------------------


def _raw_display(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, list | tuple):
        return json.dumps(list(raw))
    return str(raw)


def _fail(spec: Spec, origin: str, raw: object, problem: str) -> ConfigError:
    secret = spec.secret or (spec.name in ("database_url", "db_path") and _url_has_password(raw))
    got = f"(got {len(_raw_display(raw))} characters)" if secret else f'(got "{_raw_display(raw)}")'
    return ConfigError(f"configuration error: {origin}: {problem} {got}")


def _url_has_password(raw: object) -> bool:
    if not isinstance(raw, str) or "://" not in raw:
        return False
    netloc = raw.split("://", 1)[1].split("/", 1)[0]
    return "@" in netloc and ":" in netloc.rsplit("@", 1)[0]


def _read_toml(path: Path) -> dict[str, object]:
    """The flattened ``section.key`` values of a config file; unknown keys are errors."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(
            f"configuration error: config.toml: cannot read {path}: {exc.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration error: config.toml: invalid TOML: {exc}") from None
    flat: dict[str, object] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"configuration error: config.toml: {section}: unknown setting")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if dotted not in _FILE_KEYS:
                raise ConfigError(f"configuration error: config.toml: {dotted}: unknown setting")
            flat[dotted] = value
    return flat


def mail_proxy_home(environ: Mapping[str, str] | None = None) -> Path:
    """Root of instance directories: ``$MAIL_PROXY_HOME`` or ``~/.mail-proxy`` (reference §2.3)."""
    env = os.environ if environ is None else environ
    root = env.get("MAIL_PROXY_HOME")
    if root:
        return Path(root).expanduser().absolute()
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".mail-proxy"


def load_settings(
    mode: Mode,
    *,
    name: str | None = None,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting from flags › environment › file › defaults.

    ``flags`` maps setting names (``"port"``) to the values given on the command line;
    ``None`` values count as not given. ``environ`` defaults to ``os.environ``.
    Raises ``ConfigError`` with the exact reference §3.1 line on the first invalid value.
    """
    env = dict(os.environ if environ is None else environ)
    given_flags = {k: v for k, v in (flags or {}).items() if v is not None}
    for key in given_flags:
        if key not in SPEC_BY_NAME:
            raise ValueError(f"unknown flag setting {key!r}")

    home = mail_proxy_home(env)
    instance_dir: Path | None = None
    if mode == "instance":
        if not name:
            raise ValueError("instance mode needs a name")
        instance_dir = home / name
        config_path: Path | None = instance_dir / "config.toml"
    else:
        config_flag = given_flags.get("config")
        config_env = env.get("GMP_CONFIG")
        config_path = Path(str(config_flag or config_env)) if (config_flag or config_env) else None
    file_values = _read_toml(config_path) if config_path else {}
    if mode == "serve" and config_path and not config_path.exists():
        raise ConfigError(
            f"configuration error: {'--config' if config_flag else 'GMP_CONFIG'}: "
            f'file not found (got "{config_path}")'
        )

    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for spec in SPECS:
        if spec.name in given_flags and spec.flag:
            raw, origin, source = given_flags[spec.name], spec.flag, "flag"
        elif spec.env in env and env[spec.env] != "":
            raw, origin, source = env[spec.env], spec.env, "env"
        elif spec.file_key and spec.file_key in file_values:
            raw, origin, source = (
                file_values[spec.file_key],
                f"config.toml: {spec.file_key}",
                "file",
            )
        else:
            values[spec.name] = spec.default
            sources[spec.name] = "default"
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except _Invalid as exc:
            raise _fail(spec, origin, raw, str(exc)) from None
        sources[spec.name] = source  # type: ignore[assignment]

    values["config"] = str(config_path) if config_path else None
    values["mail_proxy_home"] = str(home)

    # The admin token: GMP_API_TOKEN, else (instance modes only) the api_token file.
    if values["api_token"] is None and instance_dir is not None:
        token = read_token_file(instance_dir / "api_token")
        if token is not None:
            values["api_token"] = token
            sources["api_token"] = "file"

    hostname = socket.getfqdn() or socket.gethostname()
    if values["node_id"] is None:
        values["node_id"] = f"{hostname}/{name}" if mode == "instance" else hostname
    database = _resolve_database(values, mode, instance_dir)
    metrics_dir = paths.metrics_directory(
        name=str(name) if mode == "instance" else f"serve-{values['port']}",
        instance_dir=str(instance_dir) if instance_dir else None,
        uid=os.getuid(),
        xdg_runtime_dir=env.get("XDG_RUNTIME_DIR") or None,
    )

    return Settings(
        **values,
        mode=mode,
        instance_name=name if mode == "instance" else None,
        instance_dir=str(instance_dir) if instance_dir else None,
        database=database,
        metrics_dir=metrics_dir,
        sources=sources,
        config_file=str(config_path) if config_path else None,
        flags=dict(given_flags),
        environ=env,
    )


def read_token_file(path: Path) -> str | None:
    """The first line of a token file, or None when the file does not exist or is empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"configuration error: cannot read {path}: {exc.strerror}") from None
    return text or None


def _resolve_database(values: dict[str, Any], mode: Mode, instance_dir: Path | None) -> str:
    """``postgresql://…`` or ``sqlite:/absolute/path`` (reference §2.6)."""
    if values["database_url"]:
        return str(values["database_url"])
    db_path = values["db_path"]
    if db_path and str(db_path).startswith(("postgresql://", "postgres://")):
        return str(db_path)
    if db_path:
        path = str(db_path).removeprefix("sqlite:")
        return "sqlite:" + str(Path(path).expanduser().absolute())
    if instance_dir is not None:
        return "sqlite:" + str(instance_dir / "mail_service.db")
    return "sqlite:" + str(Path.cwd() / "mail_service.db")


def reload_settings(current: Settings) -> tuple[Settings, list[str], list[str]]:
    """Re-read the configuration and token files (reference §3.4); the environment is not re-read.

    Returns the settings to run with, the names of applied changes, and the names of
    changed settings that need a restart (those keep their running value). Raises
    ``ConfigError`` when the file is invalid; the caller keeps ``current``.
    """
    fresh = load_settings(
        current.mode, name=current.instance_name, flags=current.flags, environ=current.environ
    )
    changed: list[str] = []
    restart: list[str] = []
    kept: dict[str, Any] = {}
    for spec in SPECS:
        old, new = getattr(current, spec.name), getattr(fresh, spec.name)
        if old == new:
            continue
        if spec.reloadable:
            changed.append(spec.name)
        else:
            restart.append(spec.name)
            kept[spec.name] = old
    if current.database != fresh.database:
        kept["database"] = current.database
    kept["metrics_dir"] = current.metrics_dir  # the workers write there until the node stops
    sources = dict(fresh.sources)
    for key in kept:
        if key in current.sources:
            sources[key] = current.sources[key]
    return dataclasses.replace(fresh, **kept, sources=sources), changed, restart


def masked_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``********``."""
    if not _url_has_password(url):
        return url
    scheme, rest = url.split("://", 1)
    netloc, slash, path = rest.partition("/")
    userinfo, host = netloc.rsplit("@", 1)
    return f"{scheme}://{userinfo.split(':', 1)[0]}:********@{host}{slash}{path}"


def display_value(spec: Spec, value: object) -> str:
    """A value as ``config show`` prints it: secrets masked, passwords in URLs hidden."""
    if value is None:
        return ""
    if spec.secret:
        return "********"
    if isinstance(value, str) and _url_has_password(value):
        return masked_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def describe(settings: Settings) -> list[dict[str, str]]:
    """Every effective setting with its source, secrets masked (for ``config show``)."""
    rows = []
    for spec in SPECS:
        rows.append(
            {
                "setting": spec.env,
                "key": spec.file_key or "",
                "value": display_value(spec, getattr(settings, spec.name)),
                "source": settings.sources.get(spec.name, "default"),
            }
        )
    return rows
