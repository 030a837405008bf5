"""A real SMTP server (aiosmtpd) that records every message with its arrival time."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import free_port


@dataclasses.dataclass
class Received:
    at: float  # time.time() when DATA completed
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._sink.in_data += 1
        if self._sink.delay:
            await asyncio.sleep(self._sink.delay)
        self._sink._add(
            Received(time.time(), envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 2.0.0 queued"


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Received] = []
        # Seconds each DATA is held before the answer (a slow server); transactions under way.
        self.delay = 0.0
        self.in_data = 0
        self._lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def _add(self, item: Received) -> None:
        with self._lock:
            self.messages.append(item)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
