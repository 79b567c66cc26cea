"""A run that ended without an answer: it does not meet an expectation on the answer (an eval
case's ``output_contains``, ``output_matches``, ``output_schema``, ``expected``,
``field_bounds``), while acceptance criteria, which constrain the answers a behaviour holds,
neither reject a good run nor count as stopping a harm for want of an answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gates import Evidence, Workspace, capture, load_inputs, run_gate
from gates._gate.checks import acceptance_criteria
from tests.conftest import RunCli
from tests.gates.test_init import CHECKLIST
from tests.helpers import ACTOR, LOG, contained

pytestmark = pytest.mark.slow

AGENT = "help-agent"
QUESTION = "How do I reset my password?"
ANSWER = "Use the reset link on the sign-in page."
# Production's log of the question: the agent searched, and the run was cut off before it
# answered. The replay adapter plays it back: a tool call, its result, and no output.
CUT_OFF = [
    {"schema_version": 1, "kind": "run", "run_id": "r1", "agent": AGENT,
     "context": {"customer": "c1"}},
    {"run_id": "r1", "kind": "user_input", "content": QUESTION, "at": "2026-11-25T10:00:00Z"},
    {"run_id": "r1", "kind": "tool_call", "tool": "search_docs",
     "arguments": {"query": QUESTION}, "call_id": "c1", "at": "2026-11-25T10:00:01Z"},
    {"run_id": "r1", "kind": "tool_result", "tool": "search_docs", "call_id": "c1",
     "result": {"answer": ANSWER}, "at": "2026-11-25T10:00:02Z"},
]
# A complete production run under logs/, so the logging check has evidence.
COMPLETE = [
    {"schema_version": 1, "kind": "run", "run_id": "r2", "agent": AGENT,
     "context": {"customer": "c2"}},
    {"run_id": "r2", "kind": "user_input", "content": "Hi", "at": "2026-11-25T11:00:00Z"},
    {"run_id": "r2", "kind": "reasoning", "content": "greet", "at": "2026-11-25T11:00:01Z"},
    {"run_id": "r2", "kind": "output", "content": "Hello!", "at": "2026-11-25T11:00:02Z"},
]
ON_THE_ANSWER: dict[str, dict[str, Any]] = {
    "output_contains": {"kind": "output_contains", "text": "reset link"},
    "output_matches": {"kind": "output_matches", "pattern": "(?i)sign-in page"},
    "output_schema": {"kind": "output_schema", "json_schema": {"type": "object"}},
    "expected": {"kind": "expected", "value": f"You asked: {QUESTION} {ANSWER}"},
    "field_bounds": {"kind": "field_bounds", "field": "score", "minimum": 0},
}


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _replaying(tmp_path: Path, cli: RunCli, expect: list[dict[str, Any]]) -> Path:
    """A new agent's workspace whose agent replays the cut-off run, with one eval case."""
    assert cli("init", "team", "--agent", AGENT, cwd=tmp_path).returncode == 0
    root = tmp_path / "team"
    (root / f"agents/{AGENT}/checklist.yaml").write_text(CHECKLIST.format(agent=AGENT))
    _jsonl(root / "replays/prod.jsonl", CUT_OFF)
    _jsonl(root / "logs/other.jsonl", COMPLETE)
    (root / f"agents/{AGENT}/agent.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "name": AGENT, "version": "0.1.0",
        "adapter": {"kind": "replay", "log": "../../replays/prod.jsonl", "match": "input"}}))
    (root / f"evals/{AGENT}/example-question.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "id": "example-question", "agent": AGENT, "tags": ["general"],
        "input": {"messages": [{"role": "user", "content": QUESTION}]},
        "tools": [{"tool": "search_docs", "result": {"answer": ANSWER}}],
        "expect": [{"kind": "tool_called", "tool": "search_docs"}, *expect]}))
    return root


@pytest.mark.attack
def test_the_gate_does_not_pass_an_agent_that_gave_no_answer(tmp_path: Path,
                                                              cli: RunCli) -> None:
    """An agent cut off before answering does not meet "the answer contains / matches / is
    X": the case fails, and the gate exits 1, not 0."""
    root = _replaying(tmp_path, cli, [ON_THE_ANSWER[k]
                                      for k in ("output_contains", "output_matches",
                                                "expected")])
    gate = cli("gate", AGENT, "--json", "verdict.json", cwd=root)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    verdict = json.loads((root / "verdict.json").read_text())
    assert verdict["outcome"] == "fail"
    evals = next(c for c in verdict["checks"] if c["name"] == "evals")
    assert evals["outcome"] == "fail"
    assert "no output: the run ended without an answer" in " ".join(evals["findings"])


@pytest.mark.attack
@pytest.mark.parametrize("kind", list(ON_THE_ANSWER))
def test_each_expectation_on_the_answer_fails_without_one(tmp_path: Path, cli: RunCli,
                                                          kind: str) -> None:
    """Each kind of expectation on the answer itself fails a run that gave none."""
    root = _replaying(tmp_path, cli, [ON_THE_ANSWER[kind]])
    result = cli("eval", AGENT, "--all-cases", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no output: the run ended without an answer" in result.stdout
    assert f"({kind}) is missing" in result.stdout


@pytest.mark.parametrize("kind", ["output_not_contains", "output_not_matches"])
def test_a_forbidding_expectation_is_met_by_no_answer(tmp_path: Path, cli: RunCli,
                                                      kind: str) -> None:
    """Nothing said, nothing forbidden said: ``*_not_*`` expectations hold without an answer."""
    field = "text" if kind == "output_not_contains" else "pattern"
    root = _replaying(tmp_path, cli, [{"kind": kind, field: "password is"}])
    result = cli("eval", AGENT, "--all-cases", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_good_run_without_an_answer_is_not_over_rejected(tmp_path: Path,
                                                           cli: RunCli) -> None:
    """An acceptance criterion on answers does not reject a good run that only made tool
    calls: no over-rejecting finding, and the gate passes on it."""
    root = _replaying(tmp_path, cli, [])
    (root / f"agents/{AGENT}/acceptance.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "agent": AGENT, "criteria": [
            {"id": "points-to-reset-link", "kind": "output_contains", "text": "reset link"},
            {"id": "plain-text", "kind": "output_schema", "json_schema": {"type": "string"}},
            {"id": "same-answer", "kind": "expected", "value": ANSWER}]}))
    verdict = run_gate(Workspace.find(root), AGENT, actor=ACTOR)
    checks = {c.name: c for c in verdict.checks}
    assert checks["evals"].outcome == "pass"
    assert checks["acceptance_criteria"].outcome == "pass", checks["acceptance_criteria"]
    assert not any("over-rejecting" in f for f in checks["acceptance_criteria"].findings)
    assert verdict.outcome == "pass", [(c.name, c.outcome, c.findings) for c in verdict.checks]


def test_a_harm_without_an_answer_is_not_stopped_by_a_criterion_on_answers(
        example: Workspace) -> None:
    """A recorded harm made of tool calls only is not "rejected" by an acceptance criterion
    that asks something of the answer: there is no answer, and the harm took effect."""
    incident_id = contained(example)
    capture(example, incident_id, example.root / LOG, actor=ACTOR, run_id="run-7f3a97",
            steps=[4, 6], tags=["prompt_injection"])
    (example.root / "agents/refund-agent/acceptance.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "agent": "refund-agent", "criteria": [
            {"id": "says-refunded", "kind": "output_contains", "text": "refunded"},
            {"id": "json-answer", "kind": "output_schema", "json_schema": {"type": "object"}},
            {"id": "amount-in-range", "kind": "field_bounds", "field": "amount",
             "maximum": 100}]}))
    result = acceptance_criteria(load_inputs(example, "refund-agent"),
                                 Evidence([], frozenset()))
    assert result.data is not None and result.data.harmful_rejected == 0, result.summary
    assert any("the recorded harmful behaviour meets every acceptance criterion" in f
               for f in result.findings), result.findings
