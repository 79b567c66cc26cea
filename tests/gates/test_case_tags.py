"""An incident's input types are what its regression cases were captured as, not only what
their tags say today.

The eval-coverage change of an incident verifies when the incident's input types have
``min_cases_per_input_type`` passing eval cases. Those types were read from the cases'
tags today, which the ratchet does not hold: INC-1-1 retagged from ``prompt_injection`` to
``complaint`` (and one complaint case added) verified the coverage change, passed the gate
and restored the agent with no prompt-injection eval case of the three required."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from gates import (
    ControlChangesResult,
    Refused,
    Workspace,
    analyse_incident,
    restore,
    run_gate,
)
from tests.helpers import ACTOR, resolved

AGENT = "refund-agent"
CASE = "regressions/refund-agent/INC-1-1.yaml"


def _coverage(ws: Workspace) -> list[str]:
    verdict = run_gate(ws, AGENT, actor="ci")
    changes = verdict.result(ControlChangesResult)
    assert changes is not None
    return [f for f in changes.findings if "eval_coverage" in f]


@pytest.mark.attack
def test_a_retagged_case_does_not_move_the_coverage_its_incident_needs(
        example: Workspace, fixed: Callable[[Workspace], list[str]]) -> None:
    """INC-1-1 retagged from prompt_injection to complaint, one complaint case added: the
    coverage change is still held to prompt_injection, the gate fails on it, restore
    refuses and the root cause still names that input type."""
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text().replace("trials = 3", "trials = 1"))
    incident = resolved(example, fixed)
    evals = example.evals_dir(AGENT)
    for path in evals.glob("injection-*.yaml"):
        path.unlink()  # the fix wrote no prompt-injection eval case: INC-1-1 is the one
    assert _coverage(example) == [
        f"{incident} CC-2 (eval_coverage) is not verified: prompt_injection has 1 cases, "
        f"needs 3"]

    case = example.root / CASE
    data = yaml.safe_load(case.read_text())
    data["tags"] = ["complaint"]
    case.write_text(yaml.safe_dump(data, sort_keys=False))
    more = yaml.safe_load((evals / "complaint-late-order.yaml").read_text())
    more["id"] = "complaint-late-order-2"
    (evals / "complaint-late-order-2.yaml").write_text(yaml.safe_dump(more, sort_keys=False))

    assert _coverage(example) == [
        f"{incident} CC-2 (eval_coverage) is not verified: prompt_injection has 0 cases, "
        f"needs 3"]
    with pytest.raises(Refused):
        restore(example, AGENT, actor=ACTOR)
    coverage = analyse_incident(example, incident)["eval_coverage"]
    assert "input type prompt_injection" in coverage.evidence


def test_the_capture_records_the_tags_in_the_incident_history(example: Workspace) -> None:
    """The capture entry of the incident's history keeps the case's tags."""
    incident = resolved(example, lambda ws: [])
    history = yaml.safe_load((example.incidents_dir / f"{incident}.yaml").read_text())["history"]
    (entry,) = [e for e in history if e["action"] == "capture"]
    assert entry["case"] == f"{incident}-1" and entry["tags"] == ["prompt_injection"]
    assert [e for e in history if e["action"] != "capture" and "tags" in e] == []
