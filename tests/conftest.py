"""Shared pytest configuration: the fixture plugins of each tier, and the order and grouping
of the tests when the suite runs on several pytest-xdist workers (``make test``)."""

from typing import Any

import pytest

pytest_plugins = [
    "tests.dbfixtures",
    "tests.smtpservers",
    "tests.tenantservers",
    "tests.apiclient",
    "tests.imapservers",
]

_FIRST = "tests/system/test_distribution.py::"
# Tests that must share one worker, in their collection order (``--dist loadgroup``):
# * "api": the in-process API server of ``tests.apiclient`` records every response it gives,
#   and ``test_secrets.py`` (run last) walks all of them: they must be one process's.
# * "faults": the fault suite drives whole daemons into crashes, outages and overload, and
#   times their recovery; one at a time, as ``make test-faults`` runs them.
# * "instances": these start background instances without ``--port``, so each takes the first
#   free port at or above 8000; two workers starting one at the same moment would pick the same.
# (pytest-xdist's own ``xdist_group`` marker does not group under pytest 9, whose node ids
# cannot be rewritten any more: the scheduler below groups by these prefixes instead.)
_GROUPS = (
    ("tests/integration/api/", "api"),
    ("tests/system/faults/", "faults"),
    *(
        (f"tests/system/{name}.py::", "instances")
        for name in (
            "test_cli_commands",
            "test_cli_interactive",
            "test_new_user",
            "test_token",
            "test_worker_secrets",
        )
    ),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    # The long parameters of tests/system/faults (marked ``faults_long``); see its conftest.
    parser.addoption(
        "--faults-long",
        action="store_true",
        default=False,
        help="run the long fault-suite parameters (make test-faults)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The long fault run restarts the PostgreSQL cluster under every other connection: it
    # must not share the machine's cluster with tests running on other workers.
    workers = getattr(config.option, "numprocesses", None)
    if config.getoption("--faults-long") and workers:
        raise pytest.UsageError("--faults-long restarts PostgreSQL: run it without -n")


def test_group(nodeid: str) -> str | None:
    """The worker group of a test (see ``_GROUPS``), or None for a test that may run anywhere."""
    for prefix, name in _GROUPS:
        if nodeid.startswith(prefix):
            return name
    return None


test_group.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The longest test first, so that on several workers it does not start last and hold up
    # the end of the run; otherwise the collection order stays. (Only that one: the other
    # slow tests start processes against deadlines, and all of them at once would compete.)
    items.sort(key=lambda item: not item.nodeid.startswith(_FIRST))


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: each group of ``_GROUPS`` is one unit of work (one worker, in
    collection order); every other test is a unit of its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid) or nodeid

    return GroupScheduling(config, log)
