"""A bound written without ``type`` in a refuse-when-it-fails schema is said as a WARNING.

``maximum: 500`` constrains numbers only: the text ``"1250"`` meets it, and an upstream that
reads text as a number runs the call. The gate and ``verify`` say so, and pass no less.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gates import Workspace, approve_loosening, ratchet_status, run_gate
from gates._verdict.check_results import AnyCheckResult
from tests.helpers import ACTOR

pytestmark = pytest.mark.slow

PERMISSION = ("agents/refund-agent/permissions.yaml: tools.issue_refund.arguments.properties."
              "amount: maximum without type: text passes it")
ACCEPTANCE = ("agents/refund-agent/acceptance.yaml: criteria[2].arguments.properties.amount: "
              "exclusiveMinimum without type: text passes it")


def _check(checks: list[AnyCheckResult], name: str) -> AnyCheckResult:
    return next(c for c in checks if c.name == name)


def _warnings(checks: list[AnyCheckResult]) -> list[str]:
    return [f for c in checks for f in c.findings if "without type" in f]


def _untyped(ws: Workspace) -> None:
    """The refund amount's bounds without `type: number`, in both files."""
    agent = ws.root / "agents" / "refund-agent"
    for name, typed, untyped in (
            ("permissions.yaml", "amount: {type: number, exclusiveMinimum: 0, maximum: 500}",
             "amount: {exclusiveMinimum: 0, maximum: 500}"),
            ("acceptance.yaml", "amount: {type: number, exclusiveMinimum: 0}",
             "amount: {exclusiveMinimum: 0}")):
        path: Path = agent / name
        text = path.read_text(encoding="utf-8")
        assert typed in text
        path.write_text(text.replace(typed, untyped), encoding="utf-8")


def _approved(ws: Workspace) -> list[str]:
    """Approve every control rule the edits changed (the ratchet cannot show an edited
    argument schema tighter unless a captured case tells): the rules' paths."""
    found, _ = ratchet_status(ws, "refund-agent")
    for loosening in found:
        approve_loosening(ws, "refund-agent", loosening.case, reason="bounds edited",
                          actor=ACTOR)
    return [f.case for f in found]


def test_bounds_without_type_are_warned_and_the_gate_still_passes(
        restorable: Workspace, inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """The example's own controls warn of nothing; with the amount's `type: number` taken
    out of permissions.yaml and acceptance.yaml, the permission_boundary and
    acceptance_criteria checks each name the place and the keyword, and pass."""
    example = run_gate(restorable, "refund-agent", actor=ACTOR)
    assert example.outcome == "pass"
    assert _warnings(example.checks) == []  # the example's review_when bound is cautious

    _untyped(restorable)
    # Text amounts now pass both schemas: a loosening the ratchet holds until approved.
    assert _approved(restorable) == ["acceptance.refund-positive",
                                     "permissions.tools.issue_refund.arguments"]
    verdict = run_gate(restorable, "refund-agent", actor=ACTOR)
    assert verdict.outcome == "pass", [c.findings for c in verdict.checks]
    boundary = _check(verdict.checks, "permission_boundary")
    acceptance = _check(verdict.checks, "acceptance_criteria")
    assert boundary.outcome == acceptance.outcome == "pass"
    assert [f for f in boundary.findings if f.startswith("WARNING: ")] == [
        f"WARNING: {PERMISSION}",
        f"WARNING: {PERMISSION.replace('maximum', 'exclusiveMinimum')}"]
    assert [f for f in acceptance.findings if f.startswith("WARNING: ")] == [
        f"WARNING: {ACCEPTANCE}"]
    assert "WARNING: 2 bound(s) without type" in boundary.summary
    assert "WARNING: 1 bound(s) without type" in acceptance.summary

    incident = restorable.incidents().ids()[0]
    _, out, _ = inline_cli(restorable, "verify", incident)
    assert f"• WARNING: {PERMISSION}" in out, out
    assert f"• WARNING: {ACCEPTANCE}" in out, out


def test_only_bounds_that_let_text_through_are_warned(restorable: Workspace) -> None:
    """A condition acts when its schema holds: a typeless bound there catches text too
    (cautious, no warning) unless it sits under a `not`, where text slips past it. A bound
    beside `enum`, and any bound in review.yaml's rules, is not warned; nested schemas
    (`anyOf`, `items`) are walked."""
    agent = restorable.root / "agents" / "refund-agent"
    permissions = yaml.safe_load((agent / "permissions.yaml").read_text(encoding="utf-8"))
    refund = permissions["tools"]["issue_refund"]
    refund["deny_when"] += [
        {"id": "huge", "arguments": {"properties": {"amount": {"minimum": 100000}}}},
        {"id": "not-small", "arguments": {"not": {"properties": {"amount": {"maximum": 100000}}}}},
    ]
    refund["arguments"]["properties"]["tags"] = {
        "type": "array", "items": {"anyOf": [{"maxLength": 20}, {"enum": [1], "maximum": 2}]}}
    (agent / "permissions.yaml").write_text(yaml.safe_dump(permissions), encoding="utf-8")
    review = yaml.safe_load((agent / "review.yaml").read_text(encoding="utf-8"))
    review["rules"].append({"id": "big", "applies_to": "tool_call", "tool": "issue_refund",
                            "arguments": {"properties": {"amount": {"minimum": 400}}}})
    (agent / "review.yaml").write_text(yaml.safe_dump(review), encoding="utf-8")

    assert _approved(restorable) == ["permissions.tools.issue_refund.arguments"]
    verdict = run_gate(restorable, "refund-agent", actor=ACTOR)
    assert verdict.outcome == "pass", [c.findings for c in verdict.checks]
    file = "agents/refund-agent/permissions.yaml"
    assert _warnings(verdict.checks) == [
        f"WARNING: {file}: tools.issue_refund.arguments.properties.tags.items.anyOf[0]: "
        f"maxLength without type: a number passes it",
        f"WARNING: {file}: tools.issue_refund.deny_when[2].arguments.not.properties.amount: "
        f"maximum without type: text passes it"]
