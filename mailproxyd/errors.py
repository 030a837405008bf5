"""The exception tree of mail-proxy.

Every failure that crosses a layer boundary is one of these; driver exceptions
(``sqlite3``, ``psycopg``, ``smtplib``, ``httpx``) are translated once, where
they are caught, and never leak upward. A class docstring is its default message.
"""

from __future__ import annotations


class MailProxyError(Exception):
    """mail-proxy failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(MailProxyError):
    """Invalid configuration.

    The message is the complete user-facing line (reference §3.1), e.g.
    ``configuration error: GMP_PORT: must be an integer between 1 and 65535 (got "abc")``.
    The node exits with code 2.
    """


class StartRefused(MailProxyError):
    """The node refuses to start (exit code 2): key mismatch, newer schema, node id in use."""


class DatabaseUnavailable(MailProxyError):
    """database unreachable"""


class StoreError(MailProxyError):
    """The store could not complete an operation."""


class NotFound(MailProxyError):
    """A named resource does not exist (HTTP 404, exit code 1, control code -32001).

    ``code`` is the reference error code: ``tenant_not_found``, ``account_not_found``,
    ``message_not_found``.
    """

    def __init__(self, message: str | None = None, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code


class Conflict(MailProxyError):
    """The request conflicts with the current state (HTTP 409, control code -32002)."""


class ValidationFailed(MailProxyError):
    """Input violates a field rule (HTTP 422, exit code 2).

    ``errors`` lists every problem as ``(field, message)``; the first is the headline.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        field, message = self.errors[0]
        super().__init__(f"{field}: {message}" if field else message)

    @property
    def field(self) -> str:
        return self.errors[0][0]
