"""The fault suite: the daemon as real processes under crashes, kills, broken peers, database
outages, two nodes, overload and hostile input.

CI runs the short version. ``--faults-long`` (``make test-faults``) runs the long parameters
(marked ``faults_long``), which are skipped otherwise.
"""

from __future__ import annotations

import dataclasses

import pytest


@dataclasses.dataclass(frozen=True)
class Scale:
    """How hard one run pushes: messages of the crash drain, kill rounds, and so on."""

    name: str
    crash_messages: int
    crash_rounds: int
    ingest_seconds: float
    two_node_messages: int
    overload_seconds: float
    overload_clients: int
    event_clients: int
    slowloris: int
    fuzz_examples: int


# The short scale is CI's: small enough that the whole suite runs in a few minutes.
SHORT = Scale("short", 200, 1, 2.0, 300, 5.0, 12, 20, 50, 15)
LONG = Scale("long", 5000, 3, 15.0, 10000, 60.0, 50, 200, 500, 400)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--faults-long"):
        return
    skip = pytest.mark.skip(reason="long fault run: use --faults-long (make test-faults)")
    for item in items:
        if "faults_long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(
    params=[
        pytest.param(SHORT, id="short"),
        pytest.param(LONG, id="long", marks=pytest.mark.faults_long),
    ]
)
def scale(request: pytest.FixtureRequest) -> Scale:
    """Each scaled test runs once per scale; the long one only with ``--faults-long``."""
    value: Scale = request.param
    return value
