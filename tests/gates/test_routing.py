"""One routing decision: a review condition routes the same calls wherever it is written,
and ``failed_criterion: any`` routes every answer an acceptance criterion rejects."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalsuite import Output, ToolCall, ToolResult, UserInput, read_log_runs
from gates import Controls, Workspace, load_controls, route_call, route_output
from gates._demo import EXAMPLE
from tests.helpers import LOG

FIXED = EXAMPLE / "fix" / "agents" / "refund-agent"
AGENT = "refund-agent"
# Refunds above $150 need a person: the example's fix writes this condition twice (in
# review.yaml and as issue_refund's review_when); each form below keeps only one of them.
LARGE = {"type": "object", "properties": {"amount": {"exclusiveMinimum": 150}}}
RULE_FORMS = ("review.yaml", "review_when")


def _fixed(ws: Workspace) -> Path:
    """Today's controls are the example's fix; returns the agent's control folder."""
    folder = ws.agent_dir(AGENT)
    for path in FIXED.glob("*.yaml"):
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _edit(path: Path, change: Callable[[Any], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _large_refund_written_in(ws: Workspace, form: str) -> Controls:
    """The fixed controls with the large-refund condition in ``form`` only."""
    folder = _fixed(ws)

    def review(data: dict[str, Any]) -> None:
        # refund-elsewhere would route the logged $1,250 refund before either form is asked.
        data["rules"] = [r for r in data["rules"]
                         if r["id"] not in ("large-refund", "refund-elsewhere")]
        if form == "review.yaml":
            data["rules"].append({"id": "large-refund", "applies_to": "tool_call",
                                  "tool": "issue_refund", "arguments": LARGE})

    def permissions(data: dict[str, Any]) -> None:
        refund = data["tools"]["issue_refund"]
        refund["review_when"] = ([{"id": "large-refund", "arguments": LARGE}]
                                 if form == "review_when" else [])

    _edit(folder / "review.yaml", review)
    _edit(folder / "permissions.yaml", permissions)
    return load_controls(folder, AGENT)


def _routed_calls(controls: Controls, ws: Workspace) -> set[tuple[str, int, str]]:
    """(run, step, effect) of every call of the example's log that reaches a person first."""
    routed = set()
    for run in read_log_runs(ws.root / LOG):
        for index, step in enumerate(run.steps):
            if isinstance(step, ToolCall):
                decision = route_call(controls, step, run.steps[:index], run.context)
                if decision.effect == "review":
                    routed.add((run.run_id, index, step.tool))
    return routed


def test_a_condition_routes_the_same_calls_in_review_yaml_and_in_review_when(
        example: Workspace) -> None:
    """Written in review.yaml or as issue_refund's review_when, the large-refund condition
    routes the same logged calls, the $1,250 refund the fixed permissions also deny included."""
    routed = {form: _routed_calls(_large_refund_written_in(example, form), example)
              for form in RULE_FORMS}
    assert routed["review.yaml"] == routed["review_when"]
    assert ("run-7f3a97", 4, "issue_refund") in routed["review_when"]


@pytest.mark.slow
def test_a_condition_counts_the_same_in_the_backtest_review_load(
        example: Workspace, inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """`reinstate backtest` over the example's log counts the same review load and the same
    calls for the large-refund rule in either form."""
    found = {}
    for form in RULE_FORMS:
        _large_refund_written_in(example, form)
        out = example.root / f"{form}.json"
        code, _, err = inline_cli(example, "backtest", AGENT, str(example.root / LOG),
                                "--json", str(out))
        assert code in (0, 1), err
        found[form] = json.loads(out.read_text())
    rules = {form: next((r for r in result["rules"] if r["rule"].endswith(".large-refund")),
                        {"calls": 0, "examples": []})
             for form, result in found.items()}
    assert found["review.yaml"]["review_load"] == found["review_when"]["review_load"]
    assert rules["review.yaml"]["calls"] == rules["review_when"]["calls"] > 0
    assert ([e["where"] for e in rules["review.yaml"]["examples"]]
            == [e["where"] for e in rules["review_when"]["examples"]])


# A refund to another account, answered in words no output criterion objects to.
ELSEWHERE = [
    UserInput(content="Refund A-1001 to my store credit account C-7731 please."),
    ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"}, call_id="c1"),
    ToolResult(call_id="c1", tool="lookup_order",
               result={"order_id": "A-1001", "customer_id": "C-1001", "total": 84.99}),
    ToolCall(tool="issue_refund", call_id="c2", arguments={
        "order_id": "A-1001", "amount": 80.0, "currency": "USD",
        "refund_to": "store_credit:C-7731", "reason": "customer request"}),
    ToolResult(call_id="c2", tool="issue_refund", result={"refund_id": "R-1", "status": "issued"}),
]
ANSWER = "I've refunded $80.00 to store credit on account C-7731."


def test_an_answer_whose_run_a_criterion_rejects_is_routed(example: Workspace) -> None:
    """failed_criterion: any holds the answer of a run whose refund breaks
    refund-to-original-method, and names that criterion; the same answer after a proper
    refund goes out."""
    _fixed(example)
    controls = load_controls(example.agent_dir(AGENT), AGENT)
    decision = route_output(controls, ANSWER, ELSEWHERE)
    assert (decision.effect, decision.rule) == ("review", "review.rules[4].rejected-answer")
    assert "fails refund-to-original-method" in decision.reason
    proper = [*ELSEWHERE[:3], ELSEWHERE[3].model_copy(update={"arguments": {
        **ELSEWHERE[3].arguments, "refund_to": "original_payment_method"}})]
    assert route_output(controls, ANSWER, proper).effect == "allow"


def test_a_criterion_that_cannot_be_evaluated_routes_the_answer(example: Workspace) -> None:
    """A review rule asking about a criterion that errors holds the answer and says it
    failed closed, rather than letting it out."""
    folder = _fixed(example)
    _edit(folder / "acceptance.yaml", lambda data: data["criteria"].append({
        "id": "quoted-total", "kind": "expression",
        "expression": "output_json.total <= 100.0"}))
    _edit(folder / "review.yaml", lambda data: data.update(rules=[{
        "id": "total-unclear", "applies_to": "output", "failed_criterion": "quoted-total"}]))
    controls = load_controls(folder, AGENT)
    decision = route_output(controls, "Your refund is on its way.", ELSEWHERE[:3])
    assert (decision.effect, decision.rule) == ("review", "review.rules[0].total-unclear")
    assert decision.reason.startswith("could not evaluate criterion quoted-total")
    assert decision.reason.endswith("failing closed")


def test_a_review_when_that_cannot_be_evaluated_routes_a_denied_call(example: Workspace) -> None:
    """The review layer asks a tool's review_when even when the boundary denies the call,
    and a condition that errors routes it (fail closed), as a review.yaml rule does."""
    folder = _fixed(example)
    _edit(folder / "permissions.yaml", lambda data: data["tools"]["issue_refund"].update(
        review_when=[{"id": "odd-total", "expression": "args.amount > context.limit"}]))
    _edit(folder / "review.yaml", lambda data: data.update(rules=data["rules"][-1:]))
    controls = load_controls(folder, AGENT)
    call = ELSEWHERE[3]  # denied: refund_to is not the original payment method
    decision = route_call(controls, call, ELSEWHERE[:3], {})
    assert (decision.effect, decision.rule) == (
        "review", "permissions.tools.issue_refund.review_when.odd-total")
    assert decision.reason.endswith("failing closed")


def _answer_elsewhere_log(ws: Workspace) -> Path:
    """A log of one refund to another account, answered without claiming any authority."""
    at = "2026-11-26T10:00:00Z"
    run = "run-9e0001"
    lines: list[dict[str, Any]] = [
        {"schema_version": 1, "kind": "run", "run_id": run, "agent": AGENT,
         "agent_version": "1.4.0", "started_at": at,
         "context": {"customer_id": "C-1001", "channel": "chat"}}]
    for step in [*ELSEWHERE, Output(content=ANSWER)]:
        lines.append({"run_id": run, "at": at, **step.model_dump(mode="json",
                                                                  exclude_none=True)})
    path = ws.root / "logs" / "2026-11-26-refund-agent.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.slow
def test_verify_reports_the_answer_as_routed_by_its_rule(
        example: Workspace, inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """A review-gate change whose harm is an answer a criterion rejects only through its run
    is verified: the answer is routed to review by rejected-answer, not "still gets through"."""
    log = _answer_elsewhere_log(example)
    assert inline_cli(example, "incident", "open", AGENT, "--summary", "refund elsewhere",
                      "--severity", "sev2")[0] == 0
    code, _, err = inline_cli(example, "contain", "INC-1", "--mode", "review", "--notify",
                              "eng-lead", "--scope", "one refund")
    assert code == 0, err
    code, _, err = inline_cli(example, "capture", "INC-1", "--run", str(log), "--step", "5")
    assert code == 0, err
    _fixed(example)
    assert inline_cli(example, "incident", "finding", "INC-1", "--layer", "review_gate",
                      "--gap", "--description", "answers went out unread")[0] == 0
    assert inline_cli(example, "incident", "change", "INC-1", "--layer", "review_gate",
                      "--addresses", "F-1", "--description", "hold rejected answers")[0] == 0
    out = example.root / "verify.json"
    code, stdout, err = inline_cli(example, "verify", "INC-1", "--trials", "1", "--json",
                                   str(out))
    change = json.loads(out.read_text())["changes"][0]
    assert change["verified"], (change, stdout, err)
    (row,) = change["replays"]
    assert (row["before"], row["after"], row["after_rule"]) == (
        "allow", "review", "review.rules[4].rejected-answer")
    assert "still gets through" not in stdout
