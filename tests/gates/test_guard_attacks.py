"""Attacks on the runtime guard by the code it wraps: what is decided live must be what the
run log says was decided, so the gate's replay of the same controls over that log agrees."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from evalsuite import History, ToolCall, read_log_runs
from gates import Guard, Workspace

AGENT = "refund-agent"
REFUND = {"order_id": "A-1001", "refund_to": "original_payment_method"}


def _replayed(guard: Guard, log: Path) -> dict[int, tuple[str, str]]:
    """Each logged call of the log's one run decided again from the log alone, as the gate
    and the backtest replay it: (effect, rule) by step."""
    [run] = read_log_runs(log)
    return {index: (again.effect, again.rule) for index, step in enumerate(run.steps)
            if isinstance(step, ToolCall)
            for again in [guard.decide(step, History(run.steps[:index]), run.context)]}


def _logged(log: Path) -> dict[int, tuple[str, str]]:
    [run] = read_log_runs(log)
    return {int(key.rsplit(".", 1)[1]): (value["effect"], value["rule"])
            for key, value in run.metadata.items() if key.startswith("guard.step.")}


@pytest.mark.attack
@pytest.mark.slow
def test_an_answer_the_caller_changes_after_logging_it_changes_no_decision(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """An agent keeps the order it logged as the lookup's answer and raises its total
    afterwards (or changes the arguments of a call already decided): the guard's history
    held the caller's objects, so a refund of 140 on an order of 100 was allowed while the
    log said total 100 and a replay of the log denies it."""
    log = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=log)
    with guard.run("mutated", goal="refund A-1001", context={"customer_id": "C-1001"}) as run:
        looked = run.call("lookup_order", {"order_id": "A-1001"})
        order: dict[str, Any] = {"order_id": "A-1001", "total": 100.0}
        run.result(looked.call_id or "", order)
        assert run.call("issue_refund", {**REFUND, "amount": 140}).effect == "deny"
        order["total"] = 10000.0  # the agent's own bookkeeping, after the answer was logged
        again = run.call("issue_refund", {**REFUND, "amount": 140})
        assert (again.effect, again.rule) == (
            "deny", "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total")
        nested: dict[str, Any] = {"order_id": "A-1001", "summary": "x", "tags": ["a"]}
        ticket = run.call("create_ticket", nested)
        nested["tags"].append("b")
        assert run.history[ticket.step].arguments["tags"] == ["a"]  # type: ignore[union-attr]
    guard.close()
    assert _logged(log) == _replayed(guard, log)


class _Amount(int):
    """An int whose own comparisons lie: never above a bound, below 150 and up."""

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return isinstance(other, int | float) and other >= 150

    def __lt__(self, other: object) -> bool:
        return isinstance(other, int | float) and other >= 150


@pytest.mark.attack
@pytest.mark.slow
def test_arguments_whose_comparisons_lie_are_decided_by_their_value(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A refund of 900 (`maximum: 500`, over $150 to review) as an int subclass whose `>`
    and `<=` lie was allowed outright, logged as `"amount": 900`. It is decided as the 900
    it is; what has no JSON of its own (a Decimal, logged as text) is denied, naming it."""
    log = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=log)
    with guard.run("liar", goal="refund A-1001", context={"customer_id": "C-1001"}) as run:
        looked = run.call("lookup_order", {"order_id": "A-1001"})
        run.result(looked.call_id or "", {"order_id": "A-1001", "total": 2000.0})
        lying = run.call("issue_refund", {**REFUND, "amount": _Amount(900)})
        decimal = run.call("issue_refund", {**REFUND, "amount": Decimal("900")})
        keyed = run.call("create_ticket", {"order_id": "A-1001", "summary": {1: "x"}})
    guard.close()
    assert (lying.effect, lying.rule) == ("deny", "permissions.tools.issue_refund.arguments")
    assert (decimal.effect, decimal.rule) == ("deny", "guard.arguments")
    assert decimal.reason.startswith("amount: a Decimal: the arguments are not JSON data")
    assert (keyed.effect, keyed.rule) == ("deny", "guard.arguments")
    assert "summary: the key 1 is no string" in keyed.reason
    replayed = _replayed(guard, log)
    assert replayed[lying.step] == _logged(log)[lying.step]
