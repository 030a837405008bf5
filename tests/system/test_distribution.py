"""The package as users get it: ``python -m build`` makes an sdist and a wheel; the sdist
unpacks, installs with pip into the virtual environment the README documents for systemd,
runs without the optional extras on SQLite, and passes the unit tier from its own copy of
the tests."""

from __future__ import annotations

import email
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

import mailproxyd
from tests.daemon import free_port, wait_for
from tests.system.test_systemd import analyze_verify, make_root

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
# Installs skip the bytecode compilation of every installed module (the test extra alone is
# over a hundred packages): what runs compiles on import, and pip never fails on it anyway.
PIP_QUIET = ("--quiet", "--no-compile", "--disable-pip-version-check")


def run(*command: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))},
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def serve_on_sqlite(command: Path, root: Path) -> None:
    """``mail-proxy serve`` on SQLite answers /health, then stops cleanly on SIGTERM."""
    root.mkdir()
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "MAIL_PROXY_HOME": str(root / "home"),
        "GMP_API_TOKEN": "distribution-test-token",
        "GMP_HOST": "127.0.0.1",
        "GMP_PORT": str(port),
        "GMP_DB_PATH": str(root / "mail.db"),
    }
    log = root / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [command, "serve"], env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 120, interval=0.2, what="/health of the light install")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_sdist_and_wheel_build_install_and_pass_the_unit_tier(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    version = mailproxyd.__version__
    sdist = dist / f"mail_proxy-{version}.tar.gz"
    wheel = dist / f"mail_proxy-{version}-py3-none-any.whl"
    assert sorted(p.name for p in dist.iterdir()) == sorted([sdist.name, wheel.name])

    # The sdist carries what installs, tests, documents and deploys the service.
    prefix = f"mail_proxy-{version}/"
    with tarfile.open(sdist) as tar:
        members = {m.name.removeprefix(prefix) for m in tar.getmembers()}
        tar.extractall(tmp_path / "src", filter="data")
    for name in (
        "LICENSE",
        "README.md",
        "Makefile",
        "setup.cfg",
        "pyproject.toml",
        "Dockerfile",
        "compose.yaml",
        "mkdocs.yml",
        "docs/index.md",
        "docs/reference.md",
        "man/mail-proxy.1",
        "man/mailproxyd.8",
        "systemd/mail-proxy@.service",
        "systemd/mail-proxy@.service.d/venv.conf",
        "systemd/sysusers.d/mail-proxy.conf",
        "etc/mail-proxy.toml",
        "etc/mail-proxy.env",
        "tests/conftest.py",
        "tests/unit/test_settings.py",
        "mailproxyd/sql/schema.sqlite.sql",
        "mailproxyd/sql/schema.postgres.sql",
    ):
        assert name in members, name
    assert not [m for m in members if m.endswith((".pyc", ".db", ".gz")) or ".venv" in m]

    # The wheel: the package with its SQL, and the extras users know.
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = email.message_from_bytes(zf.read(f"mail_proxy-{version}.dist-info/METADATA"))
    assert "mailproxyd/sql/schema.postgres.sql" in names and "mailproxyd/py.typed" in names
    assert any(n.startswith("mailproxyd/sql/migrations/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"postgresql", "large-files", "s3", "gcs", "azure"} <= extras
    requires = metadata.get_all("Requires-Dist") or []
    unconditional = {
        r.split(";")[0].split(">")[0].split("[")[0].strip() for r in requires if ";" not in r
    }
    assert not unconditional & {"psycopg", "psycopg-pool", "fsspec", "s3fs", "platformdirs"}
    assert "LICENSE" in (metadata.get_all("License-File") or [])
    assert "Documentation, docs/index.md" in (metadata.get_all("Project-URL") or [])

    # Install the unpacked sdist as the README says, at the documented path inside a root.
    source = tmp_path / "src" / prefix.rstrip("/")
    system_root = tmp_path / "root"
    venv = system_root / "opt" / "mail-proxy"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", *PIP_QUIET, source)
    assert (venv / "bin" / "mail-proxy").exists() and (venv / "bin" / "mailproxyd").exists()
    assert run(venv / "bin" / "mail-proxy", "--version").strip() == f"mail-proxy {version}"

    # A SQLite-only install: no PostgreSQL driver, and a clear refusal of a PostgreSQL URL.
    probe = subprocess.run(
        [python, "-c", "import psycopg"], capture_output=True, text=True, check=False
    )
    assert probe.returncode != 0
    refused = subprocess.run(
        [venv / "bin" / "mail-proxy", "serve"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "MAIL_PROXY_HOME": str(tmp_path / "home"),
            "GMP_API_TOKEN": "distribution-test-token",
            "GMP_DATABASE_URL": "postgresql://mailproxy@127.0.0.1:5432/mailproxy",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "mail-proxy[postgresql]" in refused.stderr
    serve_on_sqlite(venv / "bin" / "mail-proxy", tmp_path / "light")

    if shutil.which("systemd-analyze"):
        # The unit with its drop-in, against the command pip just installed there.
        done = analyze_verify(
            make_root(system_root, "/opt/mail-proxy/bin/mail-proxy", drop_in=True)
        )
        assert (done.returncode, done.stdout + done.stderr) == (0, "")

    # The unit tier, from the sdist's own tests, against the installed package.
    run(python, "-m", "pip", "install", *PIP_QUIET, f"{source}[test]")
    shutil.rmtree(source / "mailproxyd")
    where = run(python, "-c", "import mailproxyd; print(mailproxyd.__file__)", cwd=source)
    assert where.startswith(str(venv)), where
    out = run(python, "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider", cwd=source)
    assert " passed" in out and " failed" not in out, out[-2000:]
