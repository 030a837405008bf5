"""Shared pytest configuration: the fixture plugins of each tier."""

pytest_plugins = [
    "tests.dbfixtures",
    "tests.smtpservers",
    "tests.tenantservers",
    "tests.apiclient",
    "tests.imapservers",
]
