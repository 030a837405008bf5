"""The container image and compose file, without a container engine: the image's exact command,
environment, working directory and health check run as a plain process (reference §2.1, §18.3).

Only the paths change: ``/data`` becomes a private directory and the port a free one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.daemon import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
TOKEN = "container-test-admin-token"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the final stage, continuation lines joined."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        pending = ""
        if word.upper() == "FROM":
            lines.clear()  # only the last stage ships
        lines.append((word.upper(), rest.strip()))
    return lines


def image() -> dict[str, Any]:
    got: dict[str, Any] = {"ENV": {}}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                got["ENV"][key] = value
        elif word in {"CMD", "VOLUME"}:
            got[word] = json.loads(rest)
        elif word == "HEALTHCHECK":
            options, _, command = rest.partition("CMD ")
            got[word] = {"options": options.split(), "CMD": json.loads(command)}
        else:
            got[word] = rest
    return got


def test_image_is_slim_non_root_serve_with_a_data_volume() -> None:
    spec = image()
    assert spec["FROM"].startswith("python:3.11-slim")
    assert spec["USER"] not in {"", "root", "0"}
    assert spec["CMD"] == ["mail-proxy", "serve"]
    assert spec["VOLUME"] == ["/data"] and spec["WORKDIR"] == "/data"
    assert spec["EXPOSE"] == spec["ENV"]["GMP_PORT"] == "8000"
    assert spec["STOPSIGNAL"] == "SIGTERM"
    assert "/health" in " ".join(spec["HEALTHCHECK"]["CMD"])
    # Configured by GMP_* variables only (plus where the instance key file lives).
    settings = {k for k in spec["ENV"] if not k.startswith("PYTHON")}
    assert settings == {"MAIL_PROXY_HOME", "GMP_HOST", "GMP_PORT", "GMP_DB_PATH"}
    assert all(v.startswith("/data") for k, v in spec["ENV"].items() if "/" in v)


class Container:
    """The image's command as a plain process: its ENV, its WORKDIR, its CMD."""

    def __init__(self, data: Path, extra: Mapping[str, str]) -> None:
        spec = image()
        self.port = free_port()
        self.data = data
        bin_dir = str(Path(sys.executable).parent)
        # A container starts with the image's environment only: nothing of this shell's GMP_*,
        # no XDG_RUNTIME_DIR, HOME is the user's home (/data).
        self.env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(data),
            **{k: v.replace("/data", str(data)) for k, v in spec["ENV"].items()},
            "GMP_PORT": str(self.port),
            **extra,
        }
        self.command = [shutil.which(spec["CMD"][0], path=bin_dir), *spec["CMD"][1:]]
        self.health = spec["HEALTHCHECK"]["CMD"]
        self.log = data.parent / f"container-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(part) for part in self.command],
                env=self.env,
                cwd=self.data,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def healthcheck(self) -> bool:
        """The image's HEALTHCHECK command, with this environment (``python`` of the image)."""
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"exited with {self.process.returncode}:\n{self.log.read_text()}")
        command = [sys.executable if self.health[0] == "python" else self.health[0]]
        done = subprocess.run(
            command + self.health[1:], env=self.env, capture_output=True, timeout=10, check=False
        )
        return done.returncode == 0

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"http://127.0.0.1:{self.port}{path}"
        return httpx.request(method, url, headers={"X-API-Token": TOKEN}, timeout=10, **kwargs)

    def stop(self) -> int:
        """``docker stop``: SIGTERM to the command, then wait (compose: stop_grace_period)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []
    data = tmp_path / "data"
    data.mkdir(mode=0o700)

    def make(**extra: str) -> Container:
        box = Container(data, extra)
        made.append(box)
        box.start()
        return box

    yield make
    for box in made:
        box.kill()


def test_the_image_command_serves_and_stops_on_sigterm(
    container: Callable[..., Container],
) -> None:
    node = container(GMP_API_TOKEN=TOKEN)
    wait_for(node.healthcheck, 60, interval=0.2, what="the image's HEALTHCHECK")
    assert node.http("GET", "/status").json()["workers"]["sender"]["running"] >= 1
    r = node.http("POST", "/tenant", json={"id": "acme"})
    assert r.status_code == 200, r.text
    # Everything the node keeps is in the volume, private to the user.
    for name in ("mail_service.db", "secret.key"):
        assert stat.S_IMODE((node.data / name).stat().st_mode) == 0o600, name
    assert node.stop() == 0, node.log.read_text()

    # A new container on the same volume finds its data and its key.
    again = container(GMP_API_TOKEN=TOKEN)
    wait_for(again.healthcheck, 60, interval=0.2, what="the HEALTHCHECK after a restart")
    assert again.http("GET", "/tenant/acme").status_code == 200
    assert again.stop() == 0, again.log.read_text()


def test_the_image_refuses_to_start_without_an_admin_token(
    container: Callable[..., Container],
) -> None:
    node = container()
    assert node.process is not None
    assert node.process.wait(timeout=60) == 2
    assert "no admin token configured" in node.log.read_text()


def compose_service() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    service: dict[str, Any] = document["services"]["mail-proxy"]
    return service


def test_compose_runs_the_image_on_postgresql_with_a_long_enough_stop() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    service = compose_service()
    assert service["build"] == "." and service["image"] == "mail-proxy"
    assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "mail-data:/data" in service["volumes"] and "8000:8000" in service["ports"]
    assert all(key.startswith("GMP_") for key in service["environment"])
    assert service["environment"]["GMP_DATABASE_URL"].startswith("postgresql://")
    grace = int(service["stop_grace_period"].rstrip("s"))
    assert grace > 30 + 10  # GMP_SHUTDOWN_GRACE_SECONDS plus the API's 10 s
    assert document["services"]["postgres"]["image"].startswith("postgres:")


@pytest.mark.postgres
def test_compose_environment_serves_on_postgresql(
    container: Callable[..., Container], pg_database_factory: Callable[[], str]
) -> None:
    environment = dict(compose_service()["environment"])
    environment["GMP_API_TOKEN"] = TOKEN
    environment["GMP_DATABASE_URL"] = pg_database_factory()  # the compose "postgres" service
    node = container(**environment)
    wait_for(node.healthcheck, 60, interval=0.2, what="the HEALTHCHECK on PostgreSQL")
    assert node.http("GET", "/status").json()["node"] == environment["GMP_NODE_ID"]
    assert stat.S_IMODE((node.data / "secret.key").stat().st_mode) == 0o600
    assert not (node.data / "mail_service.db").exists()
    assert node.stop() == 0, node.log.read_text()
