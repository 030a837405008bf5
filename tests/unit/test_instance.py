"""Instance directories and the instance key (reference §2.3, §2.5, §3.3)."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from mailproxyd import instance
from mailproxyd.core import crypto
from mailproxyd.errors import ConfigError, StartRefused
from mailproxyd.settings import SPECS, load_settings

NOW = 1767225600.0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_private_files(tmp_path: Path) -> None:
    env = {"MAIL_PROXY_HOME": str(tmp_path / "root")}
    created = instance.create_instance("prod", port=8123, environ=env, now=NOW)
    path = tmp_path / "root" / "prod"
    assert created.path == path and created.port == 8123
    assert _mode(path) == 0o700
    for name in ("config.toml", "api_token", "secret.key"):
        assert _mode(path / name) == 0o600, name
    token = (path / "api_token").read_text()
    assert token == created.token + "\n" and len(created.token) == 43
    assert len(crypto.parse_key((path / "secret.key").read_text())) == 32
    assert instance.instance_exists("prod", env)
    with pytest.raises(instance.InstanceError):
        instance.create_instance("prod", environ=env, now=NOW)


def test_config_toml_has_every_key_commented(tmp_path: Path) -> None:
    env = {"MAIL_PROXY_HOME": str(tmp_path)}
    instance.create_instance(
        "prod",
        port=8123,
        database_url="postgresql://u@h/d",
        sender_processes=4,
        environ=env,
        now=NOW,
    )
    text = (tmp_path / "prod" / "config.toml").read_text()
    assert text.startswith('# mail-proxy instance "prod" — created 2026-01-01T00:00:00Z\n')
    data = tomllib.loads(text)
    assert data["server"] == {"host": "0.0.0.0", "port": 8123, "database_url": "postgresql://u@h/d"}
    assert data["scheduler"] == {"sender_processes": 4}
    for spec in SPECS:
        if spec.file_key:
            section, key = spec.file_key.split(".")
            assert f"[{section}]" in text
            assert f"# {key} = " in text or f"\n{key} = " in text, spec.file_key
    # The file is readable by the settings loader as it was written.
    s = load_settings("instance", name="prod", environ=env)
    assert s.port == 8123 and s.sender_processes == 4 and s.api_token


@pytest.mark.parametrize("name", ["start", "list", "-x", "a b", "x" * 65, ""])
def test_bad_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        instance.create_instance(name, environ={"MAIL_PROXY_HOME": str(tmp_path)}, now=NOW)


def test_list_and_delete(tmp_path: Path) -> None:
    env = {"MAIL_PROXY_HOME": str(tmp_path)}
    instance.create_instance("a", port=8101, environ=env, now=NOW)
    instance.create_instance("b", port=8102, environ=env, now=NOW)
    listed = instance.list_instances(env)
    assert [(i["name"], i["status"], i["port"]) for i in listed] == [
        ("a", "stopped", 8101),
        ("b", "stopped", 8102),
    ]
    instance.delete_instance("a", env)
    assert [i["name"] for i in instance.list_instances(env)] == ["b"]


def test_choose_port_skips_ports_of_other_instances(tmp_path: Path) -> None:
    env = {"MAIL_PROXY_HOME": str(tmp_path)}
    first = instance.create_instance("a", environ=env, now=NOW).port
    second = instance.create_instance("b", environ=env, now=NOW).port
    assert first >= 8000 and second > first


def test_pid_file(tmp_path: Path) -> None:
    instance.write_pid_file(
        tmp_path, pid=1, host="0.0.0.0", port=8000, socket_path="/s", started_at=5
    )
    assert _mode(tmp_path / "server.pid") == 0o600
    assert instance.read_pid_file(tmp_path) == {
        "pid": 1,
        "host": "0.0.0.0",
        "port": 8000,
        "socket": "/s",
        "started_at": 5,
    }
    instance.remove_pid_file(tmp_path)
    assert instance.read_pid_file(tmp_path) is None


def test_instance_key_resolution(tmp_path: Path) -> None:
    db = tmp_path / "data" / "mail_service.db"
    env = {"HOME": str(tmp_path), "GMP_DB_PATH": str(db)}
    s = load_settings("serve", environ=env)
    key = instance.resolve_instance_key(s, None)  # created next to the database
    key_file = tmp_path / "data" / "secret.key"
    assert _mode(key_file) == 0o600 and crypto.parse_key(key_file.read_text()) == key
    fp = crypto.fingerprint(key)
    assert instance.resolve_instance_key(s, fp) == key
    other = crypto.new_token()
    s2 = load_settings("serve", environ={**env, "GMP_SECRET_KEY": other})
    with pytest.raises(StartRefused) as info:
        instance.resolve_instance_key(s2, fp)
    assert str(info.value) == f"secret key does not match the database (expected fingerprint {fp})"
    key_file.unlink()
    with pytest.raises(StartRefused):  # never re-created once the database has a fingerprint
        instance.resolve_instance_key(s, fp)
    assert not key_file.exists()
