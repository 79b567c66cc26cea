"""Root cause through the layers, computed from the replay, and `reinstate verify`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gates import Workspace, investigate, record_finding, run_gate
from tests.conftest import RunCli
from tests.helpers import ACTOR, LOG, captured, resolved

pytestmark = pytest.mark.slow

Fix = Callable[[Workspace], list[str]]


def test_rca_guides_through_every_layer(example: Workspace, cli: RunCli) -> None:
    """Answering the prompts records one finding per layer, defaulting to the replay's answer."""
    incident_id = captured(example)
    answers = "".join(["\n", "\n", "\n", "\n"] * 4)  # accept every suggested default
    result = cli("rca", incident_id, cwd=example.root, stdin=answers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tool_permission_boundary: replay says gap" in result.stdout
    assert "was allow (permissions.tools.issue_refund)" in result.stdout
    assert "prompt_injection: 0 case(s) at containment, 3 required" in result.stdout
    incident = example.incidents().load(incident_id)
    by_layer = {f.layer: f for f in incident.findings}
    assert sorted(by_layer) == ["acceptance_criteria", "eval_coverage", "review_gate",
                                "tool_permission_boundary"]
    assert all(f.gap for f in by_layer.values())
    assert by_layer["eval_coverage"].fix_location == "eval_suite"
    assert by_layer["tool_permission_boundary"].evidence == [
        "INC-1-1 step 4", "INC-1-1 step 6"]


def test_rca_without_input_reports_missing_layers(example: Workspace, cli: RunCli) -> None:
    """--no-input asks nothing, writes nothing, and exits 1 while layers lack findings."""
    incident_id = captured(example)
    before = example.incidents().path(incident_id).read_bytes()
    result = cli("rca", incident_id, "--no-input", cwd=example.root)
    assert result.returncode == 1
    assert "has no root-cause finding for the review_gate layer" in result.stderr
    assert example.incidents().path(incident_id).read_bytes() == before


def test_claiming_no_gap_against_the_replay_blocks_the_gate(example: Workspace,
                                                            fixed: Fix) -> None:
    """Eval coverage is computed, not claimed: a 'no gap' the replay contradicts fails."""
    incident_id = resolved(example, fixed)
    record_finding(example, incident_id, layer="eval_coverage", gap=False,
                   description="coverage was fine", actor=ACTOR)
    verdict = run_gate(example, "refund-agent", actor=ACTOR)
    check = next(c for c in verdict.checks if c.name == "control_changes")
    assert check.outcome == "fail"
    assert any("says eval_coverage had no gap, but prompt_injection: 0 case(s) at "
               "containment, 3 required" in f for f in check.findings)


def test_verify_prints_before_and_after_with_rules(example: Workspace, fixed: Fix,
                                                   cli: RunCli) -> None:
    """verify shows each change's decisions, the control-file diff, and stores no verdict."""
    incident_id = resolved(example, fixed)
    result = cli("verify", incident_id, cwd=example.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5/5 changes verified; 0 good behaviours over-blocked" in result.stdout
    assert "permissions.tools.issue_refund.arguments" in result.stdout
    assert "permissions.yaml since containment:" in result.stdout
    assert "refund-exceeds-order-total" in result.stdout
    assert not example.state_path.exists() or "verdict" not in cli(
        "audit", cwd=example.root).stdout


def test_over_blocking_is_reported(example: Workspace, fixed: Fix, cli: RunCli) -> None:
    """A cap that stops the harm but also denies a recorded good refund is a finding."""
    incident_id = resolved(example, fixed)
    permissions = example.agent_dir("refund-agent") / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace("maximum: 500", "maximum: 50"))
    verdict = run_gate(example, "refund-agent", actor=ACTOR)
    check = next(c for c in verdict.checks if c.name == "permission_boundary")
    assert check.outcome == "fail"
    assert any(f.startswith("over-blocking: refund-full-damaged: good call issue_refund(")
               and "greater than the maximum of 50" in f for f in check.findings)
    result = cli("verify", incident_id, cwd=example.root)
    assert result.returncode == 1
    assert "refund-full-damaged: good call issue_refund(" in result.stdout
    assert "is now denied by permissions.tools.issue_refund.arguments" in result.stdout


def test_verify_of_an_unfixed_incident_fails(example: Workspace, cli: RunCli) -> None:
    """Without control changes there is nothing verified, and verify says so with exit 1."""
    incident_id = captured(example)
    result = cli("verify", incident_id, cwd=example.root)
    assert result.returncode == 1
    assert f"{incident_id} has no control change to verify" in result.stdout


@pytest.mark.attack
def test_an_acceptance_change_is_verified_as_the_runtime_applies_it(
        example: Workspace, fixed: Fix, cli: RunCli) -> None:
    """A criterion that rejects only the harmful calls together (a refund *and* a free-text
    email in one behaviour) never fires at run time, where the guard judges each call with
    the run before it: the gate does not count it as stopping the harm either, and the
    backtest over the incident's own log agrees."""
    import yaml

    incident_id = resolved(example, fixed)
    agent = example.agent_dir("refund-agent")
    baseline = example.incidents_dir / f"{incident_id}.baseline" / "acceptance.yaml"
    acceptance = yaml.safe_load(baseline.read_text())
    acceptance["criteria"].append({
        "id": "no-refund-plus-free-email", "kind": "expression",
        "description": "INC-1: a refund confirmed by a free-text email",
        "expression": '!(tool_calls.exists(c, c.tool == "issue_refund") && '
                      'tool_calls.exists(c, c.tool == "send_email" && has(c.arguments.body)))'})
    (agent / "acceptance.yaml").write_text(yaml.safe_dump(acceptance, sort_keys=False))
    # The logged scope (the investigation's runs) is judged the same way as the captured case.
    investigate(example, incident_id, [example.root / LOG], actor=ACTOR)
    result = cli("verify", incident_id, cwd=example.root, env={"COLUMNS": "250"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "still gets through today: INC-1-1 harmful behaviour" in result.stdout
    assert "run-7f3a97 step 4" in result.stdout  # the logged run is replayed ...
    assert "(acceptance.no-refund-plus-free-email)" not in result.stdout  # ... and not stopped
    backtest = cli("backtest", "refund-agent", "--logs", "logs/2026-11-25-refund-agent.jsonl",
                   "--incident", incident_id, "--rule", "acceptance.no-refund-plus-free-email",
                   cwd=example.root)
    assert backtest.returncode == 1 and "no rule fired" in backtest.stdout
