"""Configuration precedence and validation (reference §3.1, §3.2), one case per setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailproxyd.errors import ConfigError
from mailproxyd.settings import SPECS, describe, load_settings, reload_settings

# For every setting: two valid raw values (as text) and the parsed value of each, plus
# one invalid raw value. Values differ from the default so a silent fallback shows.
KEY_A = "A" * 43
KEY_B = "B" * 43
CASES: dict[str, tuple[str, object, str, object, str]] = {
    "log_level": ("debug", "DEBUG", "ERROR", "ERROR", "LOUD"),
    "db_path": ("/tmp/a.db", "/tmp/a.db", "/tmp/b.db", "/tmp/b.db", ":memory:"),
    "database_url": (
        "postgresql://u@h1/db",
        "postgresql://u@h1/db",
        "postgres://u@h2/db",
        "postgres://u@h2/db",
        "mysql://x",
    ),
    "host": ("127.0.0.1", "127.0.0.1", "::1", "::1", "bad host"),
    "port": ("8100", 8100, "8200", 8200, "abc"),
    "scheduler_active": ("yes", True, "off", False, "maybe"),
    "api_token": ("token-aaaa", "token-aaaa", "token-bbbb", "token-bbbb", "short"),
    "send_loop_interval": ("1.5", 1.5, "0.05", 0.05, "0.01"),
    "test_mode": ("true", True, "1", True, "sometimes"),
    "default_priority": ("high", 1, "0", 0, "urgent"),
    "delivery_report_retention_seconds": ("100", 100, "0", 0, "1.5"),
    "batch_size_per_account": ("10", 10, "10000", 10000, "10001"),
    "log_delivery_activity": ("on", True, "YES", True, "2"),
    "cache_disk_dir": ("/var/cache/a", "/var/cache/a", "/var/cache/b", "/var/cache/b", None),
    "cache_memory_max_mb": ("0", 0, "7", 7, "-1"),
    "cache_disk_max_mb": ("1", 1, "9", 9, "0"),
    "cache_memory_ttl_seconds": ("1", 1, "60", 60, "0"),
    "cache_disk_ttl_seconds": ("2", 2, "99", 99, "x"),
    "cache_disk_threshold_kb": ("0", 0, "5", 5, "-5"),
    "sender_processes": ("1", 1, "64", 64, "65"),
    "claim_lease_seconds": ("30", 30, "3600", 3600, "29"),
    "max_retries": ("0", 0, "50", 50, "51"),
    "retry_delays": ("5,10", (5, 10), "1", (1,), "5,x"),
    "retry_jitter": ("0", 0.0, "0.5", 0.5, "0.6"),
    "smtp_timeout": ("5", 5.0, "600", 600.0, "4"),
    "sync_interval": ("10", 10.0, "60", 60.0, "9"),
    "sync_timeout": ("1", 1.0, "120", 120.0, "121"),
    "sync_batch_size": ("1", 1, "999", 999, "1001"),
    "sync_concurrency": ("1", 1, "1000", 1000, "0"),
    "max_batch": ("1", 1, "100000", 100000, "100001"),
    "max_request_mb": ("1", 1, "1024", 1024, "1025"),
    "max_pending_messages": ("1", 1, "10000000", 10000000, "0"),
    "max_pending_mb": ("1", 1, "65536", 65536, "65537"),
    "metrics_token": ("m-token-1", "m-token-1", "m-token-2", "m-token-2", None),
    "attachment_max_mb": ("1", 1, "2048", 2048, "2049"),
    "attachment_timeout": ("1", 1.0, "600", 600.0, "0"),
    "attachment_fs_roots": ("/srv/a:/srv/b", ("/srv/a", "/srv/b"), "/x", ("/x",), "rel/path"),
    "allow_private_networks": ("true", True, "1", True, "nope"),
    "command_log_retention_seconds": ("-1", -1, "60", 60, "ten"),
    "shutdown_grace_seconds": ("1", 1, "600", 600, "601"),
    "node_id": ("node-a", "node-a", "node.b", "node.b", "-bad"),
    "secret_key": (KEY_A, KEY_A, KEY_B, KEY_B, "tooshort"),
    "secret_key_file": ("/etc/a.key", "/etc/a.key", "/etc/b.key", "/etc/b.key", None),
    "control_socket": ("/run/a.sock", "/run/a.sock", "/run/b.sock", "/run/b.sock", "/" + "s" * 120),
    "config": None,  # covered by test_serve_config_file
    "mail_proxy_home": None,  # covered by test_mail_proxy_home
}
SECRET = {"api_token", "secret_key", "metrics_token"}


def test_every_setting_has_a_case() -> None:
    assert set(CASES) == {spec.name for spec in SPECS}


def _toml_value(spec_name: str, raw: str) -> str:
    """The raw text as a TOML value of the natural type."""
    import json

    spec_parse = {s.name: s.parse for s in SPECS}[spec_name]
    value = spec_parse(raw)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def _write_config(path: Path, file_key: str, toml_value: str) -> None:
    section, key = file_key.split(".")
    path.write_text(f"[{section}]\n{key} = {toml_value}\n")


SPEC_CASES = [s for s in SPECS if CASES[s.name] is not None]


@pytest.mark.parametrize("spec", SPEC_CASES, ids=lambda s: s.name)
def test_env_beats_file_and_flag_beats_env(spec, tmp_path: Path) -> None:
    raw_a, val_a, raw_b, val_b, _ = CASES[spec.name]  # type: ignore[misc]
    environ: dict[str, str] = {"HOME": str(tmp_path)}
    conf = tmp_path / "mp.toml"
    if spec.file_key:
        _write_config(conf, spec.file_key, _toml_value(spec.name, raw_a))
        environ["GMP_CONFIG"] = str(conf)
        s = load_settings("serve", environ=environ)
        assert getattr(s, spec.name) == val_a
        assert s.sources[spec.name] == "file"
    environ[spec.env] = raw_b
    s = load_settings("serve", environ=environ)
    assert getattr(s, spec.name) == val_b
    assert s.sources[spec.name] == "env"
    if spec.flag:
        s = load_settings("serve", environ=environ, flags={spec.name: raw_a})
        assert getattr(s, spec.name) == val_a
        assert s.sources[spec.name] == "flag"


@pytest.mark.parametrize(
    "spec", [s for s in SPEC_CASES if CASES[s.name][4] is not None], ids=lambda s: s.name
)
def test_invalid_value_names_its_source(spec, tmp_path: Path) -> None:
    bad = CASES[spec.name][4]  # type: ignore[index]
    environ = {"HOME": str(tmp_path), spec.env: bad}
    with pytest.raises(ConfigError) as info:
        load_settings("serve", environ=environ)
    message = str(info.value)
    assert message.startswith(f"configuration error: {spec.env}: ")
    if spec.name in SECRET:
        assert message.endswith(f"(got {len(bad)} characters)")
        assert bad not in message
    else:
        assert message.endswith(f'(got "{bad}")')
    if spec.flag:
        with pytest.raises(ConfigError) as info:
            load_settings("serve", environ={"HOME": str(tmp_path)}, flags={spec.name: bad})
        assert str(info.value).startswith(f"configuration error: {spec.flag}: ")
    if spec.file_key and bad != "":
        conf = tmp_path / "bad.toml"
        _write_config(conf, spec.file_key, '"' + bad.replace('"', '\\"') + '"')
        with pytest.raises(ConfigError) as info:
            load_settings("serve", environ={"HOME": str(tmp_path), "GMP_CONFIG": str(conf)})
        assert str(info.value).startswith(f"configuration error: config.toml: {spec.file_key}: ")


def test_contract_example_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("serve", environ={"HOME": str(tmp_path), "GMP_PORT": "abc"})
    assert str(info.value) == (
        'configuration error: GMP_PORT: must be an integer between 1 and 65535 (got "abc")'
    )


def test_numbers_from_file_are_quoted_in_messages(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[server]\nport = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_settings("serve", environ={"HOME": str(tmp_path), "GMP_CONFIG": str(conf)})
    assert str(info.value) == (
        "configuration error: config.toml: server.port: "
        'must be an integer between 1 and 65535 (got "70000")'
    )


def test_unknown_file_key(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings("serve", environ={"HOME": str(tmp_path), "GMP_CONFIG": str(conf)})
    assert str(info.value) == "configuration error: config.toml: server.prot: unknown setting"


def test_database_url_with_password_is_not_echoed(tmp_path: Path) -> None:
    url = "mysql://user:hunter22@db/x"
    with pytest.raises(ConfigError) as info:
        load_settings("serve", environ={"HOME": str(tmp_path), "GMP_DATABASE_URL": url})
    assert "hunter22" not in str(info.value)
    assert str(info.value).endswith(f"(got {len(url)} characters)")


def test_defaults_and_database_resolution(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings("serve", environ={"HOME": str(tmp_path)})
    assert s.port == 8000 and s.host == "0.0.0.0" and s.sender_processes == 2
    assert s.database == f"sqlite:{tmp_path}/mail_service.db"
    assert all(source == "default" for source in s.sources.values())
    s = load_settings(
        "serve",
        environ={
            "HOME": str(tmp_path),
            "GMP_DB_PATH": "/tmp/x.db",
            "GMP_DATABASE_URL": "postgresql://p@h/d",
        },
    )
    assert s.database == "postgresql://p@h/d"
    s = load_settings("serve", environ={"HOME": str(tmp_path), "GMP_DB_PATH": "postgres://q@h/d"})
    assert s.database == "postgres://q@h/d" and s.is_postgres


def test_instance_mode_reads_instance_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inst = home / "prod"
    inst.mkdir(parents=True)
    (inst / "config.toml").write_text('[server]\nport = 8123\nhost = "127.0.0.1"\n')
    (inst / "api_token").write_text("file-token-123\n")
    env = {"MAIL_PROXY_HOME": str(home)}
    s = load_settings("instance", name="prod", environ=env)
    assert (s.port, s.host, s.api_token) == (8123, "127.0.0.1", "file-token-123")
    assert s.sources["api_token"] == "file"
    assert s.database == f"sqlite:{inst}/mail_service.db"
    assert s.node_id.endswith("/prod")
    # The environment token wins over the file.
    s = load_settings("instance", name="prod", environ={**env, "GMP_API_TOKEN": "env-token-1"})
    assert s.api_token == "env-token-1"


def test_serve_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "serve.toml"
    conf.write_text("[server]\nport = 8300\n")
    s = load_settings("serve", environ={"HOME": str(tmp_path)}, flags={"config": str(conf)})
    assert s.port == 8300 and s.sources["port"] == "file"
    with pytest.raises(ConfigError):
        load_settings("serve", environ={"HOME": str(tmp_path), "GMP_CONFIG": str(tmp_path / "x")})


def test_mail_proxy_home(tmp_path: Path) -> None:
    s = load_settings("serve", environ={"HOME": str(tmp_path)})
    assert s.mail_proxy_home == str(tmp_path / ".mail-proxy")
    s = load_settings("serve", environ={"HOME": str(tmp_path), "MAIL_PROXY_HOME": "/srv/mp"})
    assert s.mail_proxy_home == "/srv/mp"


def test_reload_applies_file_changes_and_names_restart_ones(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inst = home / "prod"
    inst.mkdir(parents=True)
    conf = inst / "config.toml"
    conf.write_text('[server]\nport = 8123\n[logging]\nlevel = "INFO"\n')
    env = {"MAIL_PROXY_HOME": str(home), "GMP_SMTP_TIMEOUT": "40"}
    s = load_settings("instance", name="prod", environ=env)
    conf.write_text('[server]\nport = 9999\n[logging]\nlevel = "DEBUG"\n[smtp]\ntimeout = 50\n')
    new, changed, restart = reload_settings(s)
    assert new.log_level == "DEBUG" and "log_level" in changed
    assert new.port == 8123 and restart == ["port"]  # kept until a restart
    assert new.smtp_timeout == 40.0  # the environment still wins and is not re-read
    conf.write_text("[server]\nport = 'x'\n")
    with pytest.raises(ConfigError):
        reload_settings(s)


def test_to_json_round_trip(tmp_path: Path) -> None:
    s = load_settings("serve", environ={"HOME": str(tmp_path), "GMP_RETRY_DELAYS": "1,2"})
    back = type(s).from_json(s.to_json())
    assert back.retry_delays == (1, 2) and back.sources == s.sources and back.database == s.database


def test_describe_masks_secrets(tmp_path: Path) -> None:
    s = load_settings(
        "serve",
        environ={
            "HOME": str(tmp_path),
            "GMP_API_TOKEN": "super-secret-token",
            "GMP_DATABASE_URL": "postgresql://u:pw-secret@h/d",
        },
    )
    rows = {row["setting"]: row for row in describe(s)}
    assert rows["GMP_API_TOKEN"]["value"] == "********"
    assert rows["GMP_API_TOKEN"]["source"] == "env"
    assert "pw-secret" not in rows["GMP_DATABASE_URL"]["value"]
    assert rows["GMP_PORT"] == {
        "setting": "GMP_PORT",
        "key": "server.port",
        "value": "8000",
        "source": "default",
    }
