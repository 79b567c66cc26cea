"""Hostile input: generated documents for every loader, paths that try to leave the
workspace, data that tries to run code. The session ends with how many inputs were tried.

Hypothesis runs derandomized (the same examples every run, so CI is deterministic) with
no example database, and with example counts small enough to keep the suite fast.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "reinstate", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("reinstate")

_TRIED: dict[str, int] = {}


class Tried:
    """Counts the hostile inputs one test tried."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self) -> None:
        """Count one input."""
        _TRIED[self._name] = _TRIED.get(self._name, 0) + 1


@pytest.fixture
def tried(request: pytest.FixtureRequest) -> Tried:
    """The test's counter of hostile inputs."""
    return Tried(request.node.name)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how many hostile inputs were tried, so the figure can be quoted."""
    if _TRIED:
        terminalreporter.write_sep("-", "hostile input")
        terminalreporter.write_line(
            f"hostile inputs tried: {sum(_TRIED.values())} across {len(_TRIED)} tests "
            f"(each a clean error or a valid load; no traceback, nothing written)")
