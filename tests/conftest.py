"""Shared pytest configuration: the fixture plugins of each tier, and the order and grouping
of the tests when the suite runs on several pytest-xdist workers (``make test``)."""

import pytest

pytest_plugins = [
    "tests.dbfixtures",
    "tests.smtpservers",
    "tests.tenantservers",
    "tests.apiclient",
    "tests.imapservers",
]

# Tests that must share one worker, in their collection order (``--dist loadgroup``):
# * "api": the in-process API server of ``tests.apiclient`` records every response it gives,
#   and ``test_secrets.py`` (run last) walks all of them: they must be one process's.
# * "faults": the fault suite drives whole daemons into crashes, outages and overload, and
#   times their recovery; one at a time, as ``make test-faults`` runs them.
_FIRST = "tests/system/test_distribution.py::"
_GROUPS = (("tests/integration/api/", "api"), ("tests/system/faults/", "faults"))


def pytest_addoption(parser: pytest.Parser) -> None:
    # The long parameters of tests/system/faults (marked ``faults_long``); see its conftest.
    parser.addoption(
        "--faults-long",
        action="store_true",
        default=False,
        help="run the long fault-suite parameters (make test-faults)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, for runs without pytest-xdist installed (``make test-lowest``).
    config.addinivalue_line("markers", "xdist_group(name): run on the same xdist worker")
    # The long fault run restarts the PostgreSQL cluster under every other connection: it
    # must not share the machine's cluster with tests running on other workers.
    workers = getattr(config.option, "numprocesses", None)
    if config.getoption("--faults-long") and workers:
        raise pytest.UsageError("--faults-long restarts PostgreSQL: run it without -n")


def _group(item: pytest.Item) -> str | None:
    path = item.nodeid.replace("\\", "/")
    for prefix, name in _GROUPS:
        if path.startswith(prefix):
            return name
    if "_api_backend" in getattr(item, "fixturenames", ()):
        return "api"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The longest test first, so that on several workers it does not start last and hold up
    # the end of the run; otherwise the collection order stays. (Only that one: the other
    # slow tests start processes against deadlines, and all of them at once would compete.)
    items.sort(key=lambda item: not item.nodeid.startswith(_FIRST))
    for item in items:
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
