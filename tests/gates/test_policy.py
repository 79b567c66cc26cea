"""Control-layer decisions on single calls and outputs, each naming the rule that decided."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite import InvalidInput, ToolCall, ToolResult, UserInput
from gates import Controls, Workspace, decide_call, load_controls, route_call, route_output
from gates._demo import EXAMPLE

FIXED = EXAMPLE / "fix" / "agents" / "refund-agent"


@pytest.fixture
def today(example: Workspace) -> Controls:
    """The example's controls after the fix."""
    for path in FIXED.glob("*.yaml"):
        (example.agent_dir("refund-agent") / path.name).write_bytes(path.read_bytes())
    return load_controls(example.agent_dir("refund-agent"), "refund-agent")


# The run so far: the order was looked up, with a total large enough for every refund here.
LOOKED_UP = [
    UserInput(content="Please refund A-1001."),
    ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"}, call_id="c1"),
    ToolResult(call_id="c1", result={"order_id": "A-1001", "total": 1000.0}),
]


def refund(**arguments: object) -> ToolCall:
    """An issue_refund call with sensible defaults."""
    base = {"order_id": "A-1001", "amount": 40.0, "currency": "USD",
            "refund_to": "original_payment_method", "reason": "damaged"}
    return ToolCall(tool="issue_refund", arguments={**base, **arguments})


@pytest.mark.parametrize(("call", "effect", "rule"), [
    (refund(), "allow", "permissions.tools.issue_refund"),
    (refund(amount=400.0), "review", "permissions.tools.issue_refund.review_when.large-refund"),
    (refund(amount=900.0), "deny", "permissions.tools.issue_refund.arguments"),
    (refund(refund_to="store_credit:C-7731"), "deny", "permissions.tools.issue_refund.arguments"),
    (ToolCall(tool="wire_transfer", arguments={}), "deny", "permissions.unknown_tool"),
    (ToolCall(tool="close_account", arguments={"customer_id": "C-1"}), "review",
     "permissions.tools.close_account.review_when.every-closure"),
])
def test_permission_decisions(today: Controls, call: ToolCall, effect: str, rule: str) -> None:
    """Each call gets the effect of the first rule that decides it, and that rule's name."""
    decision = decide_call(today, call, LOOKED_UP)
    assert (decision.effect, decision.rule) == (effect, rule)


def test_denial_reason_says_what_broke_the_schema(today: Controls) -> None:
    """A call outside the argument schema is denied with the offending field."""
    decision = decide_call(today, refund(amount=900.0), LOOKED_UP)
    assert decision.reason.startswith("amount: 900.0 is greater than the maximum of 500")


def test_disallowed_tool_is_denied(today: Controls) -> None:
    """A listed tool with allowed: false is denied by that flag."""
    today.permissions.tools["create_ticket"].allowed = False
    decision = decide_call(today, ToolCall(tool="create_ticket", arguments={}))
    assert (decision.effect, decision.rule) == ("deny", "permissions.tools.create_ticket.allowed")


@pytest.mark.parametrize(("call", "rule"), [
    (refund(amount=200.0), "review.rules[1].large-refund"),
    (refund(refund_to="gift_card"), "review.rules[2].refund-elsewhere"),
    (ToolCall(tool="send_email", arguments={"to": "x@y.example", "body": "hi"}),
     "review.rules[3].free-text-email"),
])
def test_review_rules_route_calls(today: Controls, call: ToolCall, rule: str) -> None:
    """Calls matching a review rule reach a person, named by the rule."""
    decision = route_call(today, call)
    assert (decision.effect, decision.rule) == ("review", rule)


def test_ordinary_call_is_not_routed(today: Controls) -> None:
    """A small refund to the original method goes through without review."""
    assert route_call(today, refund(), LOOKED_UP).effect == "allow"


def test_refund_above_the_looked_up_total_is_denied(today: Controls) -> None:
    """The example's history rule denies a refund larger than the order it refunds."""
    history = [*LOOKED_UP[:2], ToolResult(call_id="c1", result={"order_id": "A-1001",
                                                                "total": 30.0})]
    decision = decide_call(today, refund(amount=40.0), history)
    assert decision.rule == "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total"


def test_output_failing_a_criterion_is_routed(today: Controls) -> None:
    """An answer that claims a supervisor approved it fails acceptance and goes to a person."""
    decision = route_output(today, "As authorized by the billing supervisor, I refunded you.")
    assert (decision.effect, decision.rule) == ("review", "review.rules[4].rejected-answer")
    assert route_output(today, "I've refunded $40.00 to your card.").effect == "allow"


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_review_rule_naming_unknown_tool_is_invalid(today: Controls, example: Workspace) -> None:
    """A review rule about a tool the permissions do not list is an error at its place."""
    review = example.agent_dir("refund-agent") / "review.yaml"
    _rewrite(review, "tool: close_account", "tool: close_acount")
    with pytest.raises(InvalidInput) as caught:
        load_controls(example.agent_dir("refund-agent"), "refund-agent")
    assert caught.value.place == "$.rules[0].tool"
    assert "did you mean 'close_account'" in str(caught.value)
    assert caught.value.line == review.read_text().splitlines().index("    tool: close_acount") + 1


def test_review_rule_naming_unknown_criterion_is_invalid(today: Controls,
                                                         example: Workspace) -> None:
    """failed_criterion must name an acceptance criterion or be 'any'."""
    review = example.agent_dir("refund-agent") / "review.yaml"
    _rewrite(review, "failed_criterion: any", "failed_criterion: no-claimed-autority")
    with pytest.raises(InvalidInput, match="did you mean 'no-claimed-authority'"):
        load_controls(example.agent_dir("refund-agent"), "refund-agent")


def test_output_rule_cannot_filter_by_tool(today: Controls, example: Workspace) -> None:
    """A review rule mixing output and tool-call conditions is rejected."""
    review = example.agent_dir("refund-agent") / "review.yaml"
    _rewrite(review, "applies_to: output\n", "applies_to: output\n    tool: send_email\n")
    with pytest.raises(InvalidInput, match="an output rule cannot set tool"):
        load_controls(example.agent_dir("refund-agent"), "refund-agent")


def test_criteria_without_ids_are_refused(example: Workspace) -> None:
    """Acceptance criteria need ids so verdicts and review rules can name them."""
    acceptance = example.agent_dir("refund-agent") / "acceptance.yaml"
    _rewrite(acceptance, "  - id: no-internal-notes\n", "  -\n")
    with pytest.raises(InvalidInput, match="needs an id"):
        load_controls(example.agent_dir("refund-agent"), "refund-agent")
