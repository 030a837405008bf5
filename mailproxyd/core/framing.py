"""Newline-delimited JSON framing: one JSON text per line, UTF-8, ``\\n`` after each.

The one framing of the node's two line protocols: the supervisor ↔ worker link
(``mailproxyd.link``) and the control socket (``mailproxyd.control``, reference §17). Pure: it
turns bytes into lines and values into lines; reading and writing sockets is the callers' job.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def encode_line(value: Any) -> bytes:
    """``value`` (a msgspec Struct, dict, list, …) as one compact JSON line."""
    return _encoder.encode(value) + b"\n"


class LineBuffer:
    """Splits a byte stream into lines, refusing any line above ``limit`` bytes.

    ``feed`` returns complete lines (without the newline, a trailing ``\\r`` stripped, blank
    lines dropped); an over-long line is returned as the sentinel ``None`` once and its remainder
    is skipped up to the next newline, so a peer that sent garbage can still be answered.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes | bytearray) -> list[bytes | None]:
        out: list[bytes | None] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self._limit and not self._skipping:
                    out.append(None)
                    self._skipping = True
                if self._skipping:
                    self._buf.clear()
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self._limit:
                out.append(None)
                continue
            line = line.rstrip(b"\r")
            if line.strip():
                out.append(line)
