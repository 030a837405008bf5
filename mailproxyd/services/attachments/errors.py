"""The failure of one attachment (reference §11.5): its text and whether it may pass by itself."""

from __future__ import annotations


class AttachmentFailed(Exception):
    """An attachment could not be obtained; ``permanent`` decides retry or error (reference §11.5)."""

    def __init__(self, text: str, *, permanent: bool) -> None:
        super().__init__(text)
        self.text = text
        self.permanent = permanent


def fetch_failed(filename: str, reason: str, *, permanent: bool) -> AttachmentFailed:
    """``Attachment fetch failed for <filename>: <reason>``."""
    return AttachmentFailed(
        f"Attachment fetch failed for {filename}: {reason}", permanent=permanent
    )
