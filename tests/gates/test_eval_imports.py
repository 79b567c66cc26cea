"""What `reinstate eval` loads, in a fresh interpreter: a module's import is resident
memory for the whole run, so one eval never reads with is a cost at every size.

Structural, never timed.
"""

from __future__ import annotations

import pytest

from gates import Workspace
from tests.gates.test_startup_imports import command_line, loaded, run_entry

# Each test starts a fresh interpreter and runs an agent.
pytestmark = pytest.mark.slow


def test_eval_loads_no_log_reader_and_no_incident_scope_search(
        back_in_full: Workspace) -> None:
    """`reinstate eval` runs a case having imported neither the log readers nor the scope
    search that only the gate's replays of logged harm use."""
    found, out = run_entry(command_line("eval", "refund-agent", "--cases",
                                        "address-change-account"), back_in_full.root)
    assert found["code"] == 0 and "eval: PASS" in out
    assert "gates._gate.checks" in found["modules"]  # the case rows' helpers were used
    assert loaded(found["modules"], ("evalsuite._logs", "evalsuite._otel",
                                     "gates._gate.scope_replay", "regressions._scope")) == []
