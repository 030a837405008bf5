"""System tests: the real daemon as processes (fixtures from ``tests.daemon``), a real SMTP
server (aiosmtpd) and real tenant HTTP servers (``tests.tenantservers``)."""

from tests.daemon import daemon  # noqa: F401
from tests.fileservers import file_server  # noqa: F401
from tests.system.smtpsink import smtp_sink  # noqa: F401
from tests.tenantservers import tenant_server  # noqa: F401
