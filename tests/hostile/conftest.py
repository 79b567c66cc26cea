"""Hostile input: generated documents for every loader, paths that try to leave the
workspace, data that tries to run code. The session ends with how many inputs were tried.

Hypothesis runs derandomized (the same examples every run, so CI is deterministic) with
no example database, and with example counts small enough to keep the suite fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "reinstate", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("reinstate")


class Tried:
    """Counts the hostile inputs one test tried."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        """Count one input."""
        self.count += 1


@pytest.fixture
def tried(request: pytest.FixtureRequest) -> Iterator[Tried]:
    """The test's counter of hostile inputs, left on its report for the tally at the end
    (printed by the root conftest, so it holds under pytest-xdist too)."""
    counter = Tried()
    yield counter
    request.node.user_properties.append(("hostile inputs", counter.count))
