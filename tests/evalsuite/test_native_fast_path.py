"""The native format's fast path: lines counted without building a model per step, read
with the same values, accepted and refused exactly as the step models accept and refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from evalsuite import InvalidInput, ToolResult, read_log
from gates import ingest

HEADER = {"schema_version": 1, "kind": "run", "run_id": "r-1", "agent": "refund-agent"}
CALL = {"run_id": "r-1", "kind": "tool_call", "tool": "issue_refund",
        "at": "2026-11-25T21:00:00.300Z", "call_id": "c-1", "arguments": {"amount": 5}}
RESULT = {"run_id": "r-1", "kind": "tool_result", "tool": "issue_refund", "call_id": "c-1",
          "at": "2026-11-25T21:00:00.400Z", "result": '{"refund_id": "R-1"}'}
FIELDS = ("kind", "run_id", "content", "tool", "arguments", "call_id", "at", "raw_arguments",
          "arguments_logged", "error", "blocked")


def _log(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines), encoding="utf-8")
    return path


def _same(record: Any, step: Any) -> None:
    """A record the summary counts carries the values of the model built from its line."""
    for name in FIELDS:
        assert getattr(record, name, None) == getattr(step, name, None), name
    if isinstance(step, ToolResult):
        # The record keeps a JSON text result as logged; the model holds it parsed.
        assert record.result == (step.result_text if step.result_text is not None
                                 and record.result_text is None else step.result)


def test_native_steps_are_counted_before_any_model_is_built(tmp_path: Path) -> None:
    """With deferred steps a native part hands its steps' records to a counter and builds
    the models only when its steps are read, with the same values; without, they are built
    as they are read."""
    path = _log(tmp_path / "run.jsonl", HEADER, CALL, RESULT)
    [eager] = read_log(path)
    assert all(isinstance(r, BaseModel) for r in eager.records)
    [part] = read_log(path, defer_steps=True)
    records = list(part.records)
    assert [r.kind for r in records] == ["tool_call", "tool_result"]
    assert not any(isinstance(r, BaseModel) for r in records)
    assert part.header is not None and part.header.agent == "refund-agent"
    steps = part.steps
    assert all(isinstance(s, BaseModel) for s in steps) and part.places == [2, 3]
    for record, step in zip(records, steps, strict=True):
        _same(record, step)
    assert steps[1].result == {"refund_id": "R-1"}  # type: ignore[union-attr]
    assert list(part.records) == steps  # once built, the counter reads the models
    assert part == eager


def test_lax_lines_are_read_as_the_models_read_them(tmp_path: Path) -> None:
    """Lines only the step models accept (a number as text, a Unix time, nanosecond times)
    are read, counted and timed exactly as the models read them."""
    path = _log(tmp_path / "lax.jsonl",
                {**HEADER, "usage": {"input_tokens": "40"}},
                {"run_id": "r-1", "kind": "user_input", "content": "refund me", "at": 1795000000},
                {**CALL, "arguments_logged": 1},
                {**RESULT, "at": "2026-11-25T21:00:09.9999999Z"})
    [summary] = ingest([path]).files
    assert (summary.steps, summary.tool_calls, summary.answered) == (3, 1, 1)
    # The models truncate a nanosecond time (msgspec alone would round it to 21:00:10).
    assert summary.last_at == datetime(2026, 11, 25, 21, 0, 9, 999999, tzinfo=UTC)
    assert summary.first_at == datetime.fromtimestamp(1795000000, UTC)
    [part] = read_log(path)
    assert part.header is not None and part.header.usage is not None
    assert part.header.usage.input_tokens == 40


@pytest.mark.parametrize(("line", "place", "expected"), [
    ({**CALL, "extra": 1}, "$.extra", "Extra inputs are not permitted"),
    ({**CALL, "run_id": ""}, "$.run_id", "the run's id as a string"),
    ({**CALL, "tool": 7}, "$.tool", "valid string"),
    ({**HEADER, "usage": {"input_tokens": -1}}, "$.usage.input_tokens", "greater than or equal"),
    ({**HEADER, "schema_version": 2}, "$.schema_version", "expected 1"),
    ({**RESULT, "kind": "tool_answer"}, "$.kind", "expected 'run' or one of"),
    ({**CALL, "at": "2026-13-25T21:00:00Z"}, "$.at", "datetime"),
])
def test_lines_the_models_refuse_are_refused_with_their_error(
        tmp_path: Path, line: dict[str, Any], place: str, expected: str) -> None:
    """A line the step models refuse stops ingest with the models' own error: file, line,
    JSON path and what was expected."""
    path = _log(tmp_path / "bad.jsonl", HEADER, CALL, line)
    with pytest.raises(InvalidInput) as caught:
        ingest([path])
    assert (caught.value.line, caught.value.place) == (3, place)
    assert expected in caught.value.expected


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.just(1.5),
                    st.sampled_from(["", "x", "2026-11-25T21:00:00Z", "2026-11-25T21:00:00",
                                     "2026-11-25 21:00:00.123456789+05:30", "1795000000",
                                     '{"a": 1}', "[1]", "true"]),
                    st.just({"a": 1}), st.just([1]))
_KEYS = st.sampled_from(["content", "tool", "arguments", "call_id", "at", "raw_arguments",
                         "arguments_logged", "result", "error", "blocked", "result_text",
                         "extra"])


@pytest.mark.slow
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["user_input", "reasoning", "tool_call", "tool_result", "output"]),
       fields=st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_any_step_line_is_decided_as_the_models_decide(
        tmp_path: Path, kind: str, fields: dict[str, Any]) -> None:
    """Whatever a step line holds, it is refused when its model refuses it, and otherwise
    counted with the values of the model built from it."""
    path = _log(tmp_path / "any.jsonl", {"run_id": "r-1", "kind": kind, **fields})
    try:
        [part] = read_log(path, defer_steps=True)
        records = list(part.records)
    except InvalidInput:  # only the models refuse a line: the fast path hands it over
        return
    [step] = part.steps
    _same(records[0], step)
