"""A 200 MB attachment does not make the sender grow (reference §11.5): the fetch streams to a
temporary file and the SMTP driver encodes it while sending. Measured as the growth of the
sender's peak RSS (``VmHWM``) over a warmed-up baseline."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.daemon import Daemon, free_port, wait_for
from tests.fileservers import FileServer, Serve

SIZE = 200 * 1_048_576
MAX_GROWTH = 50 * 1_048_576


class _BigSink:
    """An SMTP server without a data size limit that keeps only what the test checks."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[int, str | None]] = []  # (data size, md5 of the big part)
        self._lock = threading.Lock()
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, data_size_limit=None
        )

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.content
        md5 = await asyncio.get_running_loop().run_in_executor(None, _big_part_md5, data)
        with self._lock:
            self.received.append((len(data), md5))
        return "250 2.0.0 queued"


def _big_part_md5(data: bytes) -> str | None:
    marker = b'filename="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    start = data.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = data.find(b"\r\n--", start)
    return hashlib.md5(base64.b64decode(data[start:end].replace(b"\r\n", b""))).hexdigest()


@pytest.fixture
def big_sink() -> Iterator[_BigSink]:
    sink = _BigSink()
    sink._controller.start()
    yield sink
    sink._controller.stop()


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_a_200_mb_attachment_keeps_the_sender_small(
    daemon: Daemon, big_sink: _BigSink, file_server: Callable[..., FileServer]
) -> None:
    files = file_server({"/big": Serve(stream_size=SIZE), "/small": Serve(body=b"warm-up")})
    node = daemon.serve(
        env={
            "GMP_ATTACHMENT_MAX_MB": "300",
            "GMP_ATTACHMENT_TIMEOUT": "300",
            "GMP_ALLOW_PRIVATE_NETWORKS": "true",
            "GMP_SENDER_PROCESSES": "1",
        }
    )
    assert node.http("POST", "/tenant", json={"id": "acme"}).status_code == 200
    account = {
        "id": "smtp1",
        "tenant_id": "acme",
        "host": "127.0.0.1",
        "port": big_sink.port,
        "tls_mode": "none",
        "is_default": True,
    }
    assert node.http("POST", "/account", json=account).status_code == 200
    [sender] = [w for w in node.workers() if w.get("kind") == "sender"]

    def send(message_id: str, name: str, path: str) -> None:
        message = {
            "id": message_id,
            "from": "a@acme.example",
            "to": ["b@example.org"],
            "subject": "big",
            "body": "see attached",
            "attachments": [{"filename": name, "storage_path": files.url(path)}],
        }
        answer = node.http(
            "POST", "/commands/add-messages", json={"tenant_id": "acme", "messages": [message]}
        )
        assert answer.json()["queued"] == 1, answer.text

    # Warm up every code path (HTTP client, cache, SMTP session) before the baseline.
    send("warm", "small.txt", "/small")
    wait_for(lambda: len(big_sink.received) == 1, 30, what="the warm-up message")
    baseline = _peak_rss(int(sender["pid"]))
    send("big", "big.bin", "/big")
    wait_for(lambda: len(big_sink.received) == 2, 180, what="the 200 MB message")
    growth = _peak_rss(int(sender["pid"])) - baseline
    expected = hashlib.md5()
    chunk = b"x" * 1_048_576
    for _ in range(SIZE // len(chunk)):
        expected.update(chunk)
    size, md5 = big_sink.received[1]
    assert md5 == expected.hexdigest()
    assert size > SIZE * 4 // 3
    print(f"sender peak RSS growth for a 200 MB attachment: {growth / 1_048_576:.1f} MB")
    assert growth < MAX_GROWTH, f"{growth / 1_048_576:.1f} MB"
