"""The systemd files as shipped: the template unit, its drop-in for the documented install
path, the sysusers.d entry, and the node running with the unit's environment and memory
restriction (reference §18.1)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import Daemon, free_port, wait_for
from tests.system.smtpsink import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "mail-proxy@.service"
DROP_IN = SYSTEMD / "mail-proxy@.service.d" / "venv.conf"
SYSUSERS = SYSTEMD / "sysusers.d" / "mail-proxy.conf"
#: Where the README installs mail-proxy for systemd (python3 -m venv /opt/mail-proxy).
VENV_COMMAND = "/opt/mail-proxy/bin/mail-proxy"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)


def unit_lines(path: Path, section: str = "Service") -> list[tuple[str, str]]:
    """``(key, value)`` of one section in file order; repeated keys (Environment=) all kept."""
    lines: list[tuple[str, str]] = []
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            lines.append((key.strip(), value.strip()))
    return lines


def service() -> dict[str, str]:
    return dict(unit_lines(UNIT))


def test_unit_has_the_documented_settings_and_hardening() -> None:
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "User": "mail-proxy",
        "Group": "mail-proxy",
        "KillMode": "mixed",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "WatchdogSec": "30",
        "ExecStart": "/usr/bin/mail-proxy start %i --foreground",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectProc": "invisible",
        "ProcSubset": "pid",
        "MemoryDenyWriteExecute": "yes",
        "StateDirectory": "mail-proxy",
        "RuntimeDirectory": "mail-proxy",
        "RuntimeDirectoryPreserve": "yes",
    }
    got = service()
    assert {k: got.get(k) for k in expected} == expected
    # Stopping must outlast the shutdown grace (30 s) plus the API's 10 s.
    assert int(got["TimeoutStopSec"]) > 40
    environment = [v for k, v in unit_lines(UNIT) if k == "Environment"]
    # The control socket lives in the runtime directory through %t, not by overriding
    # XDG_RUNTIME_DIR for the whole process tree.
    assert environment == [
        "MAIL_PROXY_HOME=/var/lib/mail-proxy",
        "GMP_CONTROL_SOCKET=%t/mail-proxy/%i.sock",
    ]


def test_drop_in_only_replaces_the_command() -> None:
    assert unit_lines(DROP_IN) == [
        ("ExecStart", ""),
        ("ExecStart", f"{VENV_COMMAND} start %i --foreground"),
    ]
    # The same arguments as the unit's own command.
    assert service()["ExecStart"].split()[1:] == ["start", "%i", "--foreground"]


def make_root(root: Path, command_at: str, *, drop_in: bool) -> Path:
    """A file-system root for ``systemd-analyze verify --root``: this host's system units, the
    shipped unit in /etc/systemd/system, and an executable ``mail-proxy`` at ``command_at``."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")
    shutil.copy2(shutil.which("kill") or "/bin/kill", root / "usr/bin/kill")
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    shutil.copy2(UNIT, units / UNIT.name)
    if drop_in:
        (units / DROP_IN.parent.name).mkdir()
        shutil.copy2(DROP_IN, units / DROP_IN.parent.name / DROP_IN.name)
    target = root / command_at.lstrip("/")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # A copy, not a symlink: inside the root an absolute link would point elsewhere.
        shutil.copy2(Path(sys.executable).parent / "mail-proxy", target)
    return root


def analyze_verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "mail-proxy@demo.service"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_analyze
def test_systemd_analyze_verify_is_clean_for_the_shipped_unit(tmp_path: Path) -> None:
    done = analyze_verify(make_root(tmp_path, "/usr/bin/mail-proxy", drop_in=False))
    # Anything printed is a complaint about the unit (unknown keys, bad values, missing command).
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_analyze
def test_systemd_analyze_verify_is_clean_with_the_venv_drop_in(tmp_path: Path) -> None:
    # Only the documented install path exists: verify fails if ExecStart still named /usr/bin.
    done = analyze_verify(make_root(tmp_path, VENV_COMMAND, drop_in=True))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_analyze
def test_verify_notices_a_missing_command(tmp_path: Path) -> None:
    # The check above can fail: without the drop-in, /usr/bin/mail-proxy is missing here.
    done = analyze_verify(make_root(tmp_path, VENV_COMMAND, drop_in=False))
    assert "/usr/bin/mail-proxy is not executable" in done.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_creates_the_unit_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    user = users[service()["User"]]
    assert user[5] == "/var/lib/" + service()["StateDirectory"]
    assert int(user[2]) < 1000  # a system user
    groups = (tmp_path / "etc/group").read_text()
    assert groups.startswith(service()["Group"] + ":")


def deny_write_execute() -> None:
    """What ``MemoryDenyWriteExecute=yes`` enforces, as the kernel's PR_SET_MDWE (inherited
    by every child): no mapping may be writable and executable, or become executable."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "pass"], preexec_fn=deny_write_execute, check=False
    )
    return probe.returncode == 0


@pytest.fixture
def mdwe() -> Iterator[None]:
    try:
        available = _mdwe_available()
    except (OSError, subprocess.SubprocessError):
        available = False
    if not available:
        pytest.skip("the kernel has no PR_SET_MDWE (Linux 6.3 and later)")
    yield


def test_the_restriction_is_real(mdwe: None) -> None:
    code = (
        "import mmap\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    print('allowed')\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=deny_write_execute,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.strip() == "refused"


@pytest.mark.slow
def test_node_runs_with_the_unit_environment_and_no_writable_executable_memory(
    daemon: Daemon, smtp_sink: SmtpSink, mdwe: None
) -> None:
    """``mail-proxy start NAME --foreground`` with the unit's Environment= lines (%t and %i
    expanded) under the unit's memory restriction: every worker starts, a message goes out
    over SMTP, secrets are encrypted, the socket is where the unit puts it, SIGTERM stops it."""
    name = "prod"
    runtime = daemon.root / "run-system"  # stands for %t (/run)
    (runtime / "mail-proxy").mkdir(parents=True, mode=0o700)  # RuntimeDirectory=mail-proxy
    state = daemon.root / "state"  # stands for /var/lib/mail-proxy (StateDirectory)
    state.mkdir(mode=0o700)
    env = daemon.environment()
    del env["XDG_RUNTIME_DIR"]  # a system unit gets none
    for key, value in unit_lines(UNIT):
        if key == "Environment":
            var, _, text = value.partition("=")
            text = text.replace("%t", str(runtime)).replace("%i", name)
            env[var] = text.replace("/var/lib/mail-proxy", str(state))
    port = free_port()
    env.update({"GMP_PORT": str(port), "GMP_HOST": "127.0.0.1"})  # as /etc/mail-proxy/prod.env
    log = daemon.root / "unit.log"
    command = [str(Path(sys.executable).parent / "mail-proxy"), "start", name, "--foreground"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=deny_write_execute,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"node exited with {process.returncode}:\n{log.read_text()}")
            try:
                return httpx.get(url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, what="/health")
        token = (state / name / "api_token").read_text().strip()
        admin = httpx.Client(base_url=url, headers={"X-API-Token": token}, timeout=10)

        def all_workers() -> bool:
            workers = admin.get("/status").json()["workers"]
            return all(w["running"] == w["expected"] for w in workers.values())

        wait_for(all_workers, 30, what="every worker running")
        socket_path = runtime / "mail-proxy" / f"{name}.sock"
        assert socket_path.is_socket()
        r = admin.post(
            "/tenant",
            json={"id": "acme", "client_auth": {"method": "none", "signing_secret": "s" * 20}},
        )
        assert r.status_code == 200, r.text
        r = admin.post(
            "/account",
            json={
                "id": "smtp1",
                "tenant_id": "acme",
                "host": "127.0.0.1",
                "port": smtp_sink.port,
                "tls_mode": "none",
                "password": "p4ssw0rd-secret",
            },
        )
        assert r.status_code == 200, r.text
        r = admin.post(
            "/commands/add-messages",
            json={
                "tenant_id": "acme",
                "messages": [
                    {"id": "m1", "from": "a@acme.example", "to": ["b@example.org"], "subject": "s"}
                ],
            },
        )
        assert r.status_code == 200 and r.json()["queued"] == 1, r.text
        wait_for(smtp_sink.received, 30, what="the message at the SMTP server")
        assert b"p4ssw0rd-secret" not in (state / name / "mail_service.db").read_bytes()
        # The CLI of an operator's shell finds the node through server.pid.
        cli_env = {k: v for k, v in env.items() if k != "GMP_CONTROL_SOCKET"}
        status = subprocess.run(
            [command[0], "status", name],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        admin.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert not socket_path.exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
