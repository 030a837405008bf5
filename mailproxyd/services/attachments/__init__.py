"""Attachments (reference §11): fetch modes, network policy, cache, large files."""

from mailproxyd.services.attachments.errors import AttachmentFailed
from mailproxyd.services.attachments.service import AttachmentService, Prepared

__all__ = ["AttachmentFailed", "AttachmentService", "Prepared"]
