"""Permission conditions that look at the run so far: CEL expressions and Python predicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite import InvalidInput, Output, Step, ToolCall, ToolResult, UserInput
from gates import Controls, Workspace, decide_call, route_call, route_output
from tests.conftest import RunCli, tree


def _permissions(ws: Workspace, tools_yaml: str) -> Path:
    path = ws.agent_dir("refund-agent") / "permissions.yaml"
    path.write_text("schema_version: 1\nagent: refund-agent\ntools:\n" + tools_yaml)
    return path


AIRLINE = """\
  lookup_order: {allowed: true, risk: low}
  create_ticket: {allowed: true, risk: low}
  send_email: {allowed: true, risk: medium}
  close_account: {allowed: true, risk: critical}
  issue_refund:
    allowed: true
    risk: high
    deny_when:
      - id: not-refundable
        description: Refund only what an earlier lookup in this run shows as refundable.
        expression: >-
          !history.exists(s, s.kind == "tool_result" && s.tool == "lookup_order"
            && s.result.order_id == args.order_id && s.result.refundable == true)
      - id: above-total
        expression: >-
          history.exists(s, s.kind == "tool_result" && s.tool == "lookup_order"
            && s.result.order_id == args.order_id
            && double(args.amount) > double(s.result.total))
    review_when:
      - id: unasked-store-credit
        description: Store credit only when the customer asked for it.
        expression: >-
          args.refund_to.startsWith("store_credit")
            && !user_inputs.exists(m, m.lowerAscii().contains("store credit"))
"""


def _lookup(refundable: bool, total: float = 80.0) -> list[Step]:
    return [
        UserInput(content="Please refund A-1001, it broke."),
        ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"}, call_id="c1"),
        ToolResult(call_id="c1", result={"order_id": "A-1001", "total": total,
                                         "refundable": refundable}),
    ]


def _refund(amount: float = 50.0, to: str = "original_payment_method") -> ToolCall:
    return ToolCall(tool="issue_refund",
                    arguments={"order_id": "A-1001", "amount": amount, "refund_to": to})


@pytest.fixture
def controls(example: Workspace) -> Controls:
    """The example agent with history-dependent refund rules."""
    _permissions(example, AIRLINE)
    return example.controls("refund-agent")


def test_refund_allowed_after_a_refundable_lookup(controls: Controls) -> None:
    """A refund within the total, after a lookup showing the order refundable, is allowed."""
    decision = decide_call(controls, _refund(), _lookup(refundable=True))
    assert (decision.effect, decision.rule) == ("allow", "permissions.tools.issue_refund")


def test_refund_denied_without_an_earlier_lookup(controls: Controls) -> None:
    """The same refund with no lookup earlier in the run is denied by the history rule."""
    decision = decide_call(controls, _refund(), [UserInput(content="refund A-1001")])
    assert decision.effect == "deny"
    assert decision.rule == "permissions.tools.issue_refund.deny_when.not-refundable"
    assert decision.reason.startswith("Refund only what an earlier lookup")


def test_refund_denied_when_the_lookup_says_not_refundable(controls: Controls) -> None:
    """A lookup that shows the order is not refundable makes the refund a denial."""
    decision = decide_call(controls, _refund(), _lookup(refundable=False))
    assert decision.rule.endswith("deny_when.not-refundable")


def test_refund_above_the_looked_up_total_is_denied(controls: Controls) -> None:
    """A refund larger than the total the lookup returned is denied by the second rule."""
    decision = decide_call(controls, _refund(amount=120.0), _lookup(refundable=True))
    assert decision.rule.endswith("deny_when.above-total")


def test_unasked_store_credit_goes_to_review(controls: Controls) -> None:
    """Store credit the customer never asked for goes to a person; asked for, it is allowed."""
    unasked = decide_call(controls, _refund(to="store_credit:C-1001"), _lookup(True))
    assert unasked.rule.endswith("review_when.unasked-store-credit")
    asked = [UserInput(content="Store credit is fine for A-1001."), *_lookup(True)[1:]]
    assert decide_call(controls, _refund(to="store_credit:C-1001"), asked).effect == "allow"


def test_expression_that_cannot_be_evaluated_fails_closed(example: Workspace) -> None:
    """A rule reading a field the call lacks denies the call and says why."""
    _permissions(example, AIRLINE.replace("args.refund_to.startsWith",
                                          "args.destination.startsWith"))
    controls = example.controls("refund-agent")
    decision = decide_call(controls, _refund(), _lookup(True))
    assert decision.effect == "review"
    assert "could not evaluate unasked-store-credit" in decision.reason
    assert "failing closed" in decision.reason


def test_predicate_by_import_path(example: Workspace) -> None:
    """A Python predicate from an allowed workspace module decides like an expression."""
    (example.root / "refund_rules.py").write_text(
        "def weekend_refund(data):\n"
        "    return data['context'].get('channel') == 'weekend-chat'\n")
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["refund_rules"]\n')
    _permissions(example, AIRLINE + "      - id: weekend\n"
                                    "        predicate: refund_rules:weekend_refund\n")
    controls = Workspace.find(example.root).controls("refund-agent")
    weekend = decide_call(controls, _refund(), _lookup(True), {"channel": "weekend-chat"})
    assert weekend.rule.endswith("review_when.weekend")
    assert decide_call(controls, _refund(), _lookup(True), {"channel": "chat"}).effect == "allow"


def test_predicate_not_allowed_by_the_workspace_is_refused(example: Workspace) -> None:
    """A predicate from a module the configuration does not list is never imported."""
    marker = example.root / "imported.txt"
    (example.root / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\ndef ok(data):\n    return True\n")
    path = _permissions(example, AIRLINE + "      - id: x\n        predicate: evil:ok\n")
    with pytest.raises(InvalidInput) as caught:
        example.controls("refund-agent")
    assert caught.value.path == path
    assert caught.value.place == "$.tools.issue_refund.review_when[1].predicate"
    assert "not in predicate_modules" in caught.value.expected
    assert not marker.exists()


def test_review_rule_expression_on_outputs(example: Workspace) -> None:
    """An output rule with an expression routes answers that mention a refund id."""
    review = example.agent_dir("refund-agent") / "review.yaml"
    review.write_text(review.read_text() + (
        "  - id: refund-confirmations\n    applies_to: output\n"
        "    expression: output.matches('R-[0-9]+') && size(history) > 2\n"))
    controls = example.controls("refund-agent")
    long = _lookup(True)
    assert route_output(controls, "Refund R-5 is on its way.", long).rule.endswith(
        "refund-confirmations")
    assert route_output(controls, "Refund R-5 is on its way.", long[:1]).effect == "allow"
    assert route_call(controls, _refund(), long).effect == "allow"


@pytest.mark.parametrize(("edit", "place", "reason"), [
    ("expression: >-\n          !history.exists(", "$.tools.issue_refund.deny_when[0].expression",
     "invalid CEL expression"),
    ("expression: >-\n          !history.exists(s,", "$.tools.issue_refund.deny_when[0]",
     "unknown variable 'histroy'"),
])
@pytest.mark.slow
def test_invalid_expressions_are_named_with_file_and_place(
        example: Workspace, cli: RunCli, edit: str, place: str, reason: str) -> None:
    """A broken or misspelt expression stops the gate with exit 2 before anything runs."""
    bad = (AIRLINE.replace("!history.exists(s,", "!history.exists(s,,")
           if "invalid" in reason else AIRLINE.replace("!history.exists(", "!histroy.exists("))
    _permissions(example, bad)
    before = tree(example.root)
    result = cli("gate", "refund-agent", cwd=example.root)
    assert result.returncode == 2, result.stderr
    assert "permissions.yaml:" in result.stderr and place in result.stderr
    assert reason in result.stderr and "Traceback" not in result.stderr
    assert tree(example.root) == before


def test_condition_needs_exactly_one_kind(example: Workspace) -> None:
    """A condition with both a schema and an expression is ambiguous and refused."""
    _permissions(example, AIRLINE.replace(
        "      - id: above-total\n", "      - id: above-total\n        arguments: {}\n"))
    with pytest.raises(InvalidInput, match="exactly one of arguments, expression or predicate"):
        example.controls("refund-agent")


def test_history_rule_uses_paired_results(controls: Controls) -> None:
    """A result that names no tool is attributed to its call, so tool-based rules still see it."""
    history = _lookup(True)
    assert isinstance(history[2], ToolResult) and history[2].tool is None
    assert decide_call(controls, _refund(), history).effect == "allow"
    assert isinstance(Output(content="x"), Output)


def test_unknown_function_is_caught_when_the_file_is_read(example: Workspace) -> None:
    """A misspelt CEL function is an error at load time, with a suggestion, not a runtime miss."""
    path = _permissions(example, AIRLINE.replace("lowerAscii()", "lowerAscci()"))
    with pytest.raises(InvalidInput) as caught:
        example.controls("refund-agent")
    assert caught.value.path == path
    assert caught.value.place == "$.tools.issue_refund.review_when[0].expression"
    assert "unknown function 'lowerAscci'" in caught.value.expected
    assert "did you mean 'lowerAscii'" in caught.value.expected
