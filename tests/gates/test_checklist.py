"""The operating checklist: complete, consistent with the permissions, or full mode is blocked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gates import Refused, Workspace, restore, run_gate
from tests.helpers import ACTOR, resolved

Fix = Callable[[Workspace], list[str]]


def _checklist_findings(ws: Workspace) -> tuple[str, list[str]]:
    verdict = run_gate(ws, "refund-agent", actor=ACTOR)
    check = next(c for c in verdict.checks if c.name == "operating_checklist")
    return check.outcome, check.findings


def _edit(ws: Workspace, old: str, new: str) -> None:
    path = ws.agent_dir("refund-agent") / "checklist.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_tool_allowed_in_one_file_only_is_a_finding(example: Workspace) -> None:
    """Dropping a tool from the checklist while permissions allow it is inconsistent."""
    _edit(example, "allowed_tools: [lookup_order, create_ticket, send_email, issue_refund, "
                   "close_account]", "allowed_tools: [lookup_order, create_ticket, send_email, "
                   "issue_refund, close_account, wire_transfer]")
    outcome, findings = _checklist_findings(example)
    assert outcome == "fail"
    assert findings == ["checklist.yaml allows wire_transfer, permissions.yaml does not"]


def test_a_risk_rating_that_disagrees_is_a_finding(example: Workspace) -> None:
    """The checklist and the permissions must rate each tool the same."""
    _edit(example, "  issue_refund: high", "  issue_refund: medium")
    outcome, findings = _checklist_findings(example)
    assert outcome == "fail"
    assert findings == ["issue_refund: checklist.yaml rates it medium, permissions.yaml high"]


@pytest.mark.slow
def test_missing_rollback_plan_blocks_full_mode(example: Workspace, fixed: Fix) -> None:
    """An incomplete checklist fails the gate, so restore to full operation is refused."""
    resolved(example, fixed)
    path = example.agent_dir("refund-agent") / "checklist.yaml"
    text = path.read_text()
    path.write_text(text[:text.index("rollback_plan:")] + 'rollback_plan: ""\n')
    outcome, findings = _checklist_findings(example)
    assert (outcome, findings) == ("fail", ["checklist.yaml: rollback_plan is empty"])
    with pytest.raises(Refused) as caught:
        restore(example, "refund-agent", actor=ACTOR)
    assert any("operating_checklist did not pass" in r for r in caught.value.reasons)
