"""HTTP error answers (reference §4.4) and the one place exceptions become them.

Handlers never build error bodies themselves: they raise :class:`ApiError` (or let a
:class:`~mailproxyd.errors.MailProxyError` from a service escape) and
:func:`error_response_for` turns it into ``{"ok": false, "error", "detail", …}``.
Anything else is a defect: it is logged with a reference and answered 500 without a
traceback.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from mailproxyd.core.messages import TooManyMessages
from mailproxyd.core.redact import escape_control
from mailproxyd.errors import (
    Conflict,
    DatabaseUnavailable,
    MailProxyError,
    NotFound,
    ValidationFailed,
)
from mailproxyd.services import ingest
from mailproxyd.services.admin import SupervisorUnavailable

UNAUTHORIZED_DETAIL = "Invalid or missing API token"
ADMIN_REQUIRED_DETAIL = "Admin token required, tenant tokens not allowed for this operation"


class ApiError(Exception):
    """A complete non-2xx answer: status, reference error code, detail and extra keys."""

    def __init__(
        self, status: int, code: str, detail: Any, *, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra
        #: Seconds of the ``Retry-After`` header of a 503 (the usual wait unless given).
        self.retry_after = RETRY_AFTER_SECONDS if retry_after is None else retry_after

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.code, "detail": self.detail, **self.extra}

    def headers(self) -> dict[str, str]:
        """Headers of the answer: a 503 tells the client when to try again (reference §4.4)."""
        return {"Retry-After": str(self.retry_after)} if self.status == 503 else {}


# Seconds a client is asked to wait after a 503 (outage, shutdown), unless the refusal says
# otherwise (ingest over capacity: ``ingest.RETRY_AFTER_SECONDS``).
RETRY_AFTER_SECONDS = 5


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", UNAUTHORIZED_DETAIL)


def admin_required() -> ApiError:
    return ApiError(403, "admin_required", ADMIN_REQUIRED_DETAIL)


def forbidden_tenant(tenant_id: object) -> ApiError:
    return ApiError(403, "forbidden_tenant", f"Token not authorized for tenant '{tenant_id}'")


def invalid_json(detail: str = "Request body must be a UTF-8 JSON object") -> ApiError:
    return ApiError(400, "invalid_json", detail)


def request_too_large(limit_mb: int) -> ApiError:
    return ApiError(413, "request_too_large", f"Request body larger than {limit_mb} MB")


def validation_error(field: str, message: str) -> ApiError:
    return from_validation(ValidationFailed([(field, message)]))


def from_validation(exc: ValidationFailed) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        exc.message,
        field=exc.field,
        errors=[{"field": f, "message": m} for f, m in exc.errors],
    )


def translate(exc: BaseException, logger: logging.Logger) -> ApiError:
    """Map any exception escaping a handler to its reference answer.

    Unknown exceptions are defects: the traceback goes to the log under a short
    reference that the client also gets, so an operator can find it.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationFailed):
        return from_validation(exc)
    if isinstance(exc, TooManyMessages):
        return ApiError(413, "too_many_messages", exc.message)
    if isinstance(exc, NotFound):
        return ApiError(404, exc.code, exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", exc.message)
    if isinstance(exc, DatabaseUnavailable):
        logger.warning("database unavailable: %s", escape_control(exc.message))
        return ApiError(503, "unavailable", "database unreachable")
    if isinstance(exc, ingest.Overloaded):
        # Over the ingest capacity limit: nothing of the request was applied (reference §4.4).
        return ApiError(503, "unavailable", exc.message, retry_after=ingest.RETRY_AFTER_SECONDS)
    if isinstance(exc, SupervisorUnavailable):
        logger.warning("%s", escape_control(exc.message))
        return ApiError(503, "unavailable", "node is shutting down")
    ref = secrets.token_hex(6)
    if isinstance(exc, MailProxyError):
        logger.error("internal error (ref %s): %s", ref, escape_control(exc.message))
    else:
        logger.error("internal error (ref %s)", ref, exc_info=exc)
    return ApiError(500, "internal_error", f"Internal error (ref {ref})")
