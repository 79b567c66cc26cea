"""Answers an untrusted agent shapes to pass criteria they break, through the engine."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from evalsuite import AgentSpec, CaseResult, Engine, EvalCase, RunSettings, build_adapter, run_sync

REFUND_AT_MOST_500: list[dict[str, Any]] = [
    {"kind": "output_schema", "id": "refund-shape",
     "json_schema": {"type": "object", "required": ["amount"],
                     "properties": {"amount": {"type": "number", "maximum": 500}}}},
    {"kind": "field_bounds", "id": "refund-cap", "field": "amount", "maximum": 500},
]


def _run(tmp_path: Path, source: str, expect: list[dict[str, Any]]) -> CaseResult:
    (tmp_path / "agent.py").write_text(textwrap.dedent(source), "utf-8")
    spec = AgentSpec.model_validate({
        "name": "refunds", "version": "1.0.0",
        "adapter": {"kind": "python", "target": "agent:respond", "path": ".",
                    "isolation": "in-process"}})  # our own agent: no worker to start
    case = EvalCase.model_validate({
        "id": "refund-json", "agent": "refunds", "tags": ["refund_request"],
        "input": {"messages": [{"role": "user", "content": "Refund order A-1 as JSON."}]},
        "tools": [{"tool": "issue_refund", "result": {"refund_id": "R-1"}}],
        "expect": expect})
    return run_sync(Engine(build_adapter(spec, tmp_path / "agent.yaml"),
                           RunSettings(trials=1)).run_case(case))


@pytest.mark.attack
@pytest.mark.parametrize("number", ["NaN", "-Infinity"])
def test_an_answer_with_nan_is_not_json_within_bounds(tmp_path: Path, number: str) -> None:
    """``{"amount": NaN}`` is not JSON, and a NaN compares false with every bound (and
    ``-Infinity`` is below any maximum): Python's parser took them, and both criteria held."""
    result = _run(tmp_path, f"""
        def respond(session):
            return '{{"amount": {number}}}'
    """, REFUND_AT_MOST_500)
    judgements = result.trials[0].judgements
    assert result.outcome == "fail"
    assert [(j.passed, j.detail) for j in judgements] == [
        (False, "the output is not JSON"), (False, "the output is not JSON")]


@pytest.mark.attack
def test_a_nan_argument_is_not_within_a_tools_bounds(tmp_path: Path) -> None:
    """A call's NaN amount is no number: ``field_bounds`` on the tool fails naming it."""
    result = _run(tmp_path, """
        def respond(session):
            session.call_tool("issue_refund", {"order_id": "A-1", "amount": float("nan")})
            return "Refunded."
    """, [{"kind": "field_bounds", "id": "refund-cap", "tool": "issue_refund",
           "field": "amount", "maximum": 500}])
    (judgement,) = result.trials[0].judgements
    assert result.outcome == "fail"
    assert judgement.detail.endswith("amount is nan, not a number")


def test_an_answer_within_bounds_still_passes(tmp_path: Path) -> None:
    """The strict parse refuses only what JSON has not: a plain refund of 84.99 passes."""
    result = _run(tmp_path, """
        def respond(session):
            return '{"amount": 84.99}'
    """, REFUND_AT_MOST_500)
    assert result.outcome == "pass"
