"""Predicate code that raises SystemExit (or KeyboardInterrupt off the main thread) is a
predicate that failed, never the gate's own exit.

Before, ``raise SystemExit(0)`` in a predicate module ended ``reinstate gate`` with exit 0,
no output and no verdict, which a CI job reads as a pass; raised from the predicate
function, it killed a trial's thread and the gate waited for ever."""

from __future__ import annotations

import json

import pytest

from gates import Workspace
from tests.conftest import RunCli
from tests.helpers import GUARD, captured, with_predicate_expectation

AGENT = "refund-agent"


@pytest.fixture
def predicated(example: Workspace) -> Workspace:
    """The example after INC-1's capture, one trial a case, INC-1-1 calling a predicate."""
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text().replace("trials = 3", "trials = 1"))
    captured(example)
    with_predicate_expectation(example.root)
    return Workspace.find(example.root)


@pytest.mark.attack
@pytest.mark.parametrize("raised", ["SystemExit(0)", "SystemExit()"])
def test_a_predicate_module_that_exits_at_import_is_bad_input_not_a_pass(
        predicated: Workspace, cli: RunCli, raised: str) -> None:
    """The module exits while it is imported: the gate says which predicate could not be
    imported and why, exit 2, never exit 0 with no verdict."""
    (predicated.root / GUARD).write_text(f"raise {raised}\n")
    done = cli("gate", AGENT, cwd=predicated.root)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "INC-1-1.yaml" in line and "$.expect[3].predicate" in line
    assert "cannot import guards/refunds.py: SystemExit" in line


@pytest.mark.attack
@pytest.mark.parametrize("raised", ["SystemExit(0)", "KeyboardInterrupt()"])
def test_a_predicate_that_exits_when_called_fails_its_expectation(
        predicated: Workspace, cli: RunCli, raised: str) -> None:
    """The predicate function exits when a trial is judged: the expectation could not be
    evaluated, so the case fails and the gate ends with its verdict (exit 1)."""
    (predicated.root / GUARD).write_text(f"def no_outside_refund(data):\n    raise {raised}\n")
    out = predicated.root / "verdict.json"
    done = cli("gate", AGENT, "--json", str(out), cwd=predicated.root)
    assert done.returncode == 1, done.stdout + done.stderr
    evals = next(c for c in json.loads(out.read_text())["checks"] if c["name"] == "evals")
    case = next(c for c in evals["data"]["cases"] if c["id"] == "INC-1-1")
    assert evals["outcome"] == "fail" and case["outcome"] == "fail"
    assert {"criterion": "no-outside-refund",
            "detail": f"could not evaluate: guards.refunds:no_outside_refund raised "
                      f"{raised}"} in case["failed"]["unmet"]
