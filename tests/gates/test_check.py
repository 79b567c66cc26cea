"""`reinstate check`: a deploy job's yes or no, read from state, never running anything."""

from __future__ import annotations

import json

import pytest

from gates import Workspace, check, contain, open_incident, open_store, run_gate
from gates._demo import apply_fix
from tests.conftest import RunCli, tree
from tests.helpers import ACTOR, captured, resolved


@pytest.mark.slow
def test_cleared_after_restore_and_nothing_written(back_in_full: Workspace,
                                                    cli: RunCli) -> None:
    """A restored agent on a current passing verdict is cleared (exit 0); check writes nothing
    but the facts its next light read relies on, beside the store."""
    store = open_store(back_in_full)
    entries = len(store.audit())
    before = tree(back_in_full.root)
    result = cli("check", "refund-agent", cwd=back_in_full.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refund-agent: cleared for full operation" in result.stdout
    after = tree(back_in_full.root)
    facts = {".reinstate/.state.db.check-inputs.json", ".reinstate/.state.db.mode-inputs.json"}
    assert {k: v for k, v in after.items() if k not in facts} == before
    assert set(after) - set(before) <= facts
    assert len(store.audit()) == entries


@pytest.mark.slow
def test_stale_verdict_is_not_cleared(back_in_full: Workspace, cli: RunCli) -> None:
    """A control file edited after the verdict blocks the deploy, naming the file (exit 1)."""
    review = back_in_full.agent_dir("refund-agent") / "review.yaml"
    review.write_text(review.read_text().replace("exclusiveMinimum: 150",
                                                 "exclusiveMinimum: 1500"))  # loosened later
    result = cli("check", "refund-agent", cwd=back_in_full.root)
    assert result.returncode == 1
    assert "NOT cleared" in result.stdout
    assert "stale: changed since: agents/refund-agent/review.yaml" in result.stdout


def test_open_incident_with_a_failing_verdict_is_not_cleared(example: Workspace) -> None:
    """While an incident is open and the gate fails, every reason is listed and mode is named."""
    captured(example)
    run_gate(example, "refund-agent", actor=ACTOR)
    clearance = check(example, "refund-agent")
    assert not clearance and clearance.mode == "review" and not clearance.restorable
    assert any("no root-cause finding for the eval_coverage layer" in r
               for r in clearance.reasons)
    assert any("the latest verdict" in r and "is fail" in r for r in clearance.reasons)
    assert clearance.reasons[-1].startswith("refund-agent is in review mode (since ")


@pytest.mark.slow
def test_restorable_but_not_restored_is_not_cleared(example: Workspace) -> None:
    """Every condition met but the agent still in review: not cleared, and told to restore."""
    resolved(example, apply_fix)
    assert run_gate(example, "refund-agent", actor=ACTOR)
    clearance = check(example, "refund-agent")
    assert clearance.restorable and not clearance
    assert len(clearance.reasons) == 1
    assert clearance.reasons[0].endswith("run `reinstate restore refund-agent`")


@pytest.mark.slow
def test_never_gated_agent_is_not_cleared(example: Workspace, cli: RunCli) -> None:
    """An agent with a state store but no verdict is not cleared, in JSON too."""
    open_store(example).create()
    result = cli("check", "refund-agent", "--json", cwd=example.root)
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["cleared"] is False and answer["mode"] == "full"
    assert answer["reasons"] == ["no gate verdict for refund-agent: run "
                                 "`reinstate gate refund-agent`"]


@pytest.mark.slow
def test_unreadable_store_is_an_error_not_a_clearance(back_in_full: Workspace,
                                                      cli: RunCli) -> None:
    """A corrupt state store makes check exit 3 with one line, never 0."""
    back_in_full.state_path.write_bytes(b"not a database" * 100)
    result = cli("check", "refund-agent", cwd=back_in_full.root)
    assert result.returncode == 3
    assert "state store" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_unknown_agent_is_bad_input(example: Workspace, cli: RunCli) -> None:
    """A misspelt agent is exit 2 with a suggestion."""
    result = cli("check", "refund-agnet", cwd=example.root)
    assert result.returncode == 2
    assert "did you mean 'refund-agent'" in result.stderr


@pytest.mark.attack
def test_escapes_in_a_reason_are_shown_not_obeyed(example: Workspace, cli: RunCli) -> None:
    """An incident summary someone typed (here a hidden link, a screen clear and a bidi
    override) reaches check's reasons: a deploy job's terminal shows each as its escape."""
    summary = "over-refund \x1b]8;;http://evil\x1b\\here\x1b]8;;\x1b\\ \x1b[2J\u202edeppots"
    incident = open_incident(example, "refund-agent", summary=summary, severity="sev2",
                             actor=ACTOR)
    contain(example, incident.id, mode="review", notify=["legal"], scope=summary, actor=ACTOR)
    result = cli("check", "refund-agent", cwd=example.root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT cleared" in result.stdout
    assert "\\x1b[2J" in result.stdout and "\\u202e" in result.stdout
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
