"""Fixtures of the attachment tests: real HTTP servers as attachment sources and tenants."""

from tests.fileservers import file_server  # noqa: F401
from tests.tenantservers import tenant_server  # noqa: F401
