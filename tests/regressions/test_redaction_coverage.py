"""The one redaction core serves every document: run files, and ids and digests survive it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from evalsuite import (
    EvalCase,
    EvalRunHeader,
    Judgement,
    Output,
    Redactor,
    Run,
    RunFileWriter,
    ToolCall,
    TrialResult,
    UserInput,
    diff_runs,
    read_run_file,
)

CUSTOMER = "dana.whitfield@example.com"
OTHER = "mallory@quickmail.example"  # not in the case: the agent brought it
CARD = "4111 1111 1111 1111"
TOKEN = "sk-proj-Q2xhdWRlQ29kZVJlZGFjdGlvblRlc3Q0Mg"
CASE = EvalCase.model_validate({
    "id": "refund-card", "agent": "refund-agent", "tags": ["refund_request"],
    "input": {"messages": [{"role": "user", "content": f"Refund to card {CARD}, key {TOKEN}"}],
              "context": {"customer_email": CUSTOMER}},
    "tools": [{"tool": "lookup_order", "result": {"email": CUSTOMER}}],
    "expect": [{"kind": "tool_not_called", "tool": "send_email"}],
})


def _trial(number: int, mentions: str) -> TrialResult:
    run = Run(run_id=f"refund-card#{number}", steps=[
        UserInput(content=CASE.input.messages[0].content),
        ToolCall(tool="send_email", arguments={"to": mentions}, call_id="c-1"),
        Output(content=f"Mailed {mentions} about card {CARD}."),
    ])
    return TrialResult(trial=number, passed=False, run=run, judgements=[Judgement(
        criterion="tool_not_called", passed=False, detail=f"called send_email(to='{mentions}')")])


def _write(path: Path, trials: list[TrialResult]) -> Path:
    writer = RunFileWriter(path, EvalRunHeader(
        agent="refund-agent", started_at=datetime(2026, 11, 26, tzinfo=UTC), settings={}))
    for trial in trials:
        writer.trial(CASE, trial)
    return writer.finish()


def test_run_file_is_redacted_and_compares_across_trial_orders(tmp_path: Path) -> None:
    """A run file holds no raw card, key or address, and two runs whose trials finished in
    opposite orders show no behaviour change: the case's own values keep their numbers."""
    one, two = _trial(1, CUSTOMER), _trial(2, OTHER)
    first = _write(tmp_path / "a.jsonl", [one, two])
    second = _write(tmp_path / "b.jsonl", [two, one])
    for path in (first, second):
        text = path.read_text(encoding="utf-8")
        assert not [raw for raw in (CUSTOMER, OTHER, CARD, TOKEN) if raw in text]
        assert "redacted-email-1@example.com" in text and "REDACTED-TOKEN-1" in text
        assert "redacted-email-2@quickmail.example" in text
    assert diff_runs(read_run_file(first)[1], read_run_file(second)[1]) == {}
    assert diff_runs(read_run_file(first)[1],
                     read_run_file(_write(tmp_path / "c.jsonl", [_trial(1, OTHER), two]))[1])


@pytest.mark.parametrize("identifier", [
    "7b4c3b903da50f31cacf58554525088f6ca687144330569605c8de3a404d2ce6",  # a SHA-256
    "61995373-0129-0499-0791-9279f29bd9d7",  # a UUID with all-digit groups
    "26dd0dbc-6e3f-4c80-4374-9885523d6a25",
])
def test_digests_and_ids_are_not_taken_for_card_numbers(identifier: str) -> None:
    """A digest or a UUID whose digits pass the Luhn check stays as it is, so fingerprints
    and ids in a redacted verdict or report are never rewritten."""
    assert Redactor().text(f"sha {identifier} ok") == f"sha {identifier} ok"
