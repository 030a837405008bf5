"""The systemd unit and the manual pages as shipped (contract §18.1; issue: make man)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "mail-proxy@.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_has_the_contract_settings_and_hardening() -> None:
    service = _unit()["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "KillMode": "mixed",
        "Restart": "on-failure",
        "WatchdogSec": "30",
        "ExecStart": "/usr/bin/mail-proxy start %i --foreground",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "mail-proxy",
        "RuntimeDirectory": "mail-proxy",
    }
    assert {k: service.get(k) for k in expected} == expected
    # Stopping must outlast the shutdown grace (30 s) plus the API's 10 s.
    assert int(service["TimeoutStopSec"]) > 40


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: point a copy at this checkout's command.
    command = Path(sys.executable).parent / "mail-proxy"
    assert command.exists()
    copy = tmp_path / "mail-proxy@.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/mail-proxy", str(command)))
    instance = tmp_path / "mail-proxy@demo.service"
    os.symlink(copy, instance)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy), str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Anything printed is a complaint about the unit (unknown keys, bad values).
    assert done.stderr.strip() == "" and done.stdout.strip() == ""


def test_environment_file_only_names_known_variables() -> None:
    from mailproxyd.settings import SPECS

    known = {spec.env for spec in SPECS} | {"SSL_CERT_FILE"}
    text = (ROOT / "etc" / "mail-proxy.env").read_text()
    names = [line.lstrip("#").split("=", 1)[0] for line in text.splitlines() if "=" in line]
    assert names and set(names) <= known


@pytest.mark.skipif(shutil.which("groff") is None or shutil.which("man") is None, reason="no man")
def test_make_man_builds_pages_that_render_without_warnings(tmp_path: Path) -> None:
    build = tmp_path / "man"
    shutil.copytree(ROOT / "man", build)
    made = subprocess.run(["make", "-C", str(build)], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    for page, title in (("mail-proxy.1", "MAIL-PROXY(1)"), ("mailproxyd.8", "MAILPROXYD(8)")):
        assert (build / f"{page}.gz").stat().st_size > 500
        shown = subprocess.run(
            ["man", "--warnings", "-l", str(build / f"{page}.gz")],
            capture_output=True,
            text=True,
            env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"},
            check=False,
        )
        assert shown.returncode == 0 and shown.stderr == "", shown.stderr
        assert shown.stdout.lstrip().startswith(title)
