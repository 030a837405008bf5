"""The real daemon under measurement: ``mail-proxy serve`` (supervisor + workers) as processes.

``Node`` starts the supervisor with a private home, runtime directory, port and instance key,
waits until ``/health`` answers and ``/status`` shows every worker running, and then reads
every process of the node from ``/proc``: CPU seconds (user + system) and resident memory,
per process and labelled by kind (``supervisor``, ``api``, ``sender-1``, ``reporter``...).
``database(run, backend)`` gives a fresh SQLite file or a fresh PostgreSQL database.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bench.harness import PG_ADMIN_URL, ROOT, Run
from bench.sinks import free_port

TOKEN = "bench-admin-token-" + secrets.token_hex(8)
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@contextlib.contextmanager
def database(run: Run, backend: str) -> Iterator[str]:
    """A fresh database: ``sqlite:/path`` or a ``postgresql://`` URL, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:{run.scratch('db') / 'mail.db'}"
        return
    import psycopg

    name = f"mp_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 when it is gone)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


class Node:
    """One ``mail-proxy serve`` on ``url`` with ``senders`` sender processes."""

    def __init__(
        self,
        run: Run,
        url: str,
        *,
        senders: int = 2,
        active: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.run = run
        self.port = free_port()
        root = run.scratch("node")
        (root / "run").mkdir(mode=0o700)
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GMP_", "MAIL_PROXY_", "NOTIFY_", "WATCHDOG_"))
        }
        environ.update(
            {
                "MAIL_PROXY_HOME": str(root / "home"),
                "XDG_RUNTIME_DIR": str(root / "run"),
                "GMP_API_TOKEN": TOKEN,
                "GMP_SECRET_KEY": base64.urlsafe_b64encode(run.key).rstrip(b"=").decode(),
                "GMP_HOST": "127.0.0.1",
                "GMP_PORT": str(self.port),
                "GMP_SCHEDULER_ACTIVE": "true" if active else "false",
                "GMP_SENDER_PROCESSES": str(senders),
                "GMP_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT),
            }
        )
        if url.startswith("sqlite:"):
            environ["GMP_DB_PATH"] = url.removeprefix("sqlite:")
        else:
            environ["GMP_DATABASE_URL"] = url
        environ.update(env or {})
        self.log_path = root / "node.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailproxyd.cli", "serve"],
                env=environ,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"X-API-Token": TOKEN}, timeout=60
        )
        self.expected = 3 + senders  # supervisor, api, reporter, senders
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/health").status_code == 200:
                    workers = self.http.get("/status").json().get("workers", {})
                    if workers and all(w["running"] == w["expected"] for w in workers.values()):
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node did not become ready:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    # --- HTTP -------------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
        if isinstance(body, bytes):
            r = self.http.post(path, content=body, headers={"Content-Type": "application/json"})
        else:
            r = self.http.post(path, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
        result: dict[str, Any] = r.json()
        return result

    def setup_tenant(self, sink_port: int, tenant_url: str | None, accounts: int = 1) -> None:
        """Tenant ``shop`` (reports to ``tenant_url``) with accounts ``smtp0``… on the sink."""
        tenant: dict[str, Any] = {"id": "shop", "name": "Shop"}
        if tenant_url:
            tenant["client_base_url"] = tenant_url
        self.post("/tenant", tenant)
        for a in range(accounts):
            self.post(
                "/account",
                {
                    "id": f"smtp{a}",
                    "tenant_id": "shop",
                    "host": "127.0.0.1",
                    "port": sink_port,
                    "tls_mode": "none",
                    # Enough sessions that the sender count, not the account, is the limit.
                    "max_concurrent": 8,
                },
            )

    # --- processes --------------------------------------------------------------------------

    def processes(self) -> dict[int, str]:
        """pid → label of the supervisor and every worker it runs."""
        found = {self.proc.pid: "supervisor"}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            fields = _stat(int(entry))
            if not fields or int(fields[1]) != self.proc.pid:
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            module = next((a for a in argv if a.startswith("mailproxyd.workers.")), None)
            if module is None:
                continue
            kind = module.rsplit(".", 1)[1]
            index = argv[argv.index("--index") + 1] if "--index" in argv else "0"
            found[int(entry)] = f"{kind}-{index}" if kind == "sender" else kind
        return found

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of every process, by label."""
        return {label: cpu_seconds(pid) for pid, label in self.processes().items()}

    def rss(self) -> dict[str, int]:
        """Resident memory (kB) of every process, by label."""
        return {label: rss_kb(pid) for pid, label in self.processes().items()}

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {label: after.get(label, 0.0) - before.get(label, 0.0) for label in after}


def message(mail_id: str, account: str = "smtp0") -> dict[str, Any]:
    """The benchmark's message: a small plain-text order confirmation."""
    return {
        "id": mail_id,
        "account_id": account,
        "from": "Shop <orders@acme.example>",
        "to": [f"customer-{mail_id}@example.org"],
        "subject": f"Your order {mail_id}",
        "body": "Hello,\n\nyour order has shipped and will arrive soon.\n\nRegards,\nThe shop\n",
    }
