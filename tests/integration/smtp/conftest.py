"""Makes the SMTP server fixtures available to these tests even when the ``tests.smtpservers``
plugin is not registered globally."""

from tests.smtpservers import (  # noqa: F401 - fixtures are found by name
    smtp_ca,
    smtp_ca_file,
    smtp_implicit,
    smtp_plain,
    smtp_server,
    smtp_starttls_auth,
)
