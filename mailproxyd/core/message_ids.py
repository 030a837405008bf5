"""``Message-ID`` values (reference §7): generated ids and client-given ones.

A generated id is ``<`` + 32 lowercase hex digits of a random (version 4) UUID + ``@`` +
the IDNA ASCII domain of ``from`` + ``>``; it is made once, at enqueue, and kept for every
attempt. A client's ``message_id`` gets its angle brackets added when missing.
"""

from __future__ import annotations

import os
import re
from typing import Final

# RFC 5322 line limit minus the header name: a longer Message-ID could not be written.
_MAX_MESSAGE_ID: Final = 900
#: The longest ``Message-ID`` without its angle brackets (public name of the limit above).
MAX_MESSAGE_ID: Final = _MAX_MESSAGE_ID


class _UuidSource:
    """Random UUID4 hex strings, drawing the randomness from the OS in blocks.

    ``uuid.uuid4()`` costs a system call and a ``UUID`` object per message; a request of a
    thousand messages needs a thousand ids, so 16 KiB are read at once and sliced.
    """

    __slots__ = ("_block", "_offset")
    _BLOCK_IDS = 1024

    def __init__(self) -> None:
        self._block = b""
        self._offset = 0

    def reset(self) -> None:
        self._block = b""
        self._offset = 0

    def next_hex(self) -> str:
        if self._offset >= len(self._block):
            self._block = os.urandom(16 * self._BLOCK_IDS)
            self._offset = 0
        start = self._offset
        self._offset = start + 16
        digits = self._block[start : start + 16].hex()
        # Version 4 (13th digit) and the RFC 4122 variant (17th digit is 8, 9, a or b),
        # exactly as uuid.uuid4() sets them.
        return f"{digits[:12]}4{digits[13:16]}{_VARIANT[digits[16]]}{digits[17:]}"


_VARIANT: Final = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_uuids = _UuidSource()
# A forked child must not hand out the parent's remaining random block a second time.
os.register_at_fork(after_in_child=lambda: _uuids.reset())


def new_message_id(ascii_domain: str) -> str:
    """A generated ``Message-ID`` (reference §7): ``<`` 32 hex digits of a UUID4 ``@`` domain ``>``."""
    return f"<{_uuids.next_hex()}@{ascii_domain}>"


def normalise_message_id(value: str) -> str | None:
    """The header form (angle brackets added) of a client ``message_id``, ``None`` if invalid."""
    inner = value[1:-1] if value[:1] == "<" and value[-1:] == ">" else value
    local, at, domain = inner.rpartition("@")
    if not at or not local or not domain or len(inner) > _MAX_MESSAGE_ID:
        return None
    if _FORBIDDEN.search(inner) is not None:
        return None
    return f"<{inner}>"


# Controls, blanks (CR and LF among them: no header can be smuggled in), angle brackets, DEL.
_FORBIDDEN: Final = re.compile("[\x00- <>\x7f]")


__all__ = ["MAX_MESSAGE_ID", "new_message_id", "normalise_message_id"]
