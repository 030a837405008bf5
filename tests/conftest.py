"""Shared pytest configuration: the fixture plugins of each tier."""

import pytest

pytest_plugins = [
    "tests.dbfixtures",
    "tests.smtpservers",
    "tests.tenantservers",
    "tests.apiclient",
    "tests.imapservers",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    # The long parameters of tests/system/faults (marked ``faults_long``); see its conftest.
    parser.addoption(
        "--faults-long",
        action="store_true",
        default=False,
        help="run the long fault-suite parameters (make test-faults)",
    )
