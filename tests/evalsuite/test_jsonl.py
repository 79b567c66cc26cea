"""The native JSONL run format: round trips, grouping of interleaved runs, and line-exact errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evalsuite import (
    InvalidInput,
    Output,
    Reasoning,
    Run,
    ToolCall,
    ToolResult,
    UserInput,
    dump_runs,
    read_runs,
    write_runs,
)


def _refund_run(run_id: str = "run-7f3a97") -> Run:
    return Run(
        run_id=run_id,
        agent="refund-agent",
        agent_version="1.4.0",
        started_at=datetime(2026, 11, 25, 21, 9, 0, tzinfo=UTC),
        context={"customer_id": "C-1001", "channel": "chat"},
        steps=[
            UserInput(content="My order A-1001 arrived damaged.",
                      at=datetime(2026, 11, 25, 21, 9, 11, tzinfo=UTC)),
            Reasoning(content="Look the order up first."),
            ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"}, call_id="c-1"),
            ToolResult(tool="lookup_order", call_id="c-1",
                       result={"order_id": "A-1001", "total": 84.99, "items": ["kettle"]}),
            ToolCall(tool="issue_refund", call_id="c-2",
                     arguments={"order_id": "A-1001", "amount": 1250.0,
                                "refund_to": "store_credit:C-7731", "note": None}),
            ToolResult(tool="issue_refund", call_id="c-2", error="limit exceeded"),
            Output(content="I've issued a refund of $1,250.00 — anything else?"),
        ],
    )


def _lines(path: Path, *records: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


def _error(path: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        read_runs(path)
    return info.value


HEADER = {"schema_version": 1, "kind": "run", "run_id": "r1", "agent": "refund-agent"}
INPUT = {"run_id": "r1", "kind": "user_input", "content": "refund please"}


def test_dump_and_read_round_trip(tmp_path: Path) -> None:
    """A run written with dump_runs reads back as an equal model."""
    run = _refund_run()
    path = tmp_path / "log.jsonl"
    path.write_text(dump_runs([run]), encoding="utf-8")
    assert read_runs(path) == [run]


def test_write_runs_round_trips_several_runs(tmp_path: Path) -> None:
    """write_runs writes every run, and read_runs gives them back equal and in order."""
    runs = [_refund_run("run-b"), Run(run_id="run-a"), _refund_run("run-c")]
    path = tmp_path / "logs" / "runs.jsonl"
    write_runs(runs, path)
    assert read_runs(path) == runs
    assert [p.name for p in path.parent.iterdir()] == ["runs.jsonl"]


def test_dump_writes_one_header_then_steps_naming_their_run() -> None:
    """Each run is a header line followed by one line per step, each carrying the run id."""
    run = _refund_run()
    records = [json.loads(line) for line in dump_runs([run]).splitlines()]
    assert len(records) == 1 + len(run.steps)
    assert records[0]["kind"] == "run" and records[0]["schema_version"] == 1
    assert all(r["run_id"] == run.run_id for r in records)
    assert [r["kind"] for r in records[1:]] == [s.kind for s in run.steps]


def test_interleaved_runs_are_grouped_in_first_appearance_order(tmp_path: Path) -> None:
    """Lines of several runs that interleave come back as runs in first-appearance order."""
    path = _lines(
        tmp_path / "log.jsonl",
        {"run_id": "zeta", "kind": "user_input", "content": "z0"},
        {"kind": "run", "run_id": "alpha", "agent": "refund-agent"},
        {"run_id": "alpha", "kind": "user_input", "content": "a0"},
        "",
        {"run_id": "zeta", "kind": "tool_call", "tool": "lookup_order",
         "arguments": {"order_id": "A-1"}},
        {"run_id": "mid", "kind": "output", "content": "m0"},
        {"run_id": "alpha", "kind": "output", "content": "a1"},
        {"kind": "run", "run_id": "zeta", "agent_version": "2.0"},
        {"run_id": "zeta", "kind": "output", "content": "z2"},
    )
    runs = read_runs(path)
    assert [r.run_id for r in runs] == ["zeta", "alpha", "mid"]
    zeta, alpha, mid = runs
    assert [s.kind for s in zeta.steps] == ["user_input", "tool_call", "output"]
    assert zeta.agent_version == "2.0"
    assert zeta.final_output() == "z2"
    assert alpha.agent == "refund-agent"
    assert [getattr(s, "content", None) for s in alpha.steps] == ["a0", "a1"]
    assert mid.steps == [Output(content="m0")]


def test_invalid_json_names_its_line(tmp_path: Path) -> None:
    """A line that is not JSON is reported with its line number."""
    path = _lines(tmp_path / "log.jsonl", HEADER, INPUT, '{"run_id": "r1", "kind": ')
    error = _error(path)
    assert error.line == 3
    assert "not valid JSON" in error.expected
    assert "log.jsonl:3:" in str(error)


def test_non_object_line_names_its_line(tmp_path: Path) -> None:
    """A JSON line that is not an object is reported with its line number."""
    error = _error(_lines(tmp_path / "log.jsonl", HEADER, "[1, 2]"))
    assert error.line == 2
    assert "expected a JSON object" in error.expected


def test_line_without_run_id_names_its_line(tmp_path: Path) -> None:
    """A step that names no run is reported at $.run_id on its line."""
    path = _lines(tmp_path / "log.jsonl", HEADER, INPUT,
                  {"kind": "output", "content": "done"})
    error = _error(path)
    assert (error.line, error.place) == (3, "$.run_id")


def test_unknown_kind_names_its_line(tmp_path: Path) -> None:
    """A step of an unknown kind is reported at $.kind on its line, naming the kinds allowed."""
    path = _lines(tmp_path / "log.jsonl", HEADER, INPUT,
                  {"run_id": "r1", "kind": "thought", "content": "hmm"})
    error = _error(path)
    assert (error.line, error.place) == (3, "$.kind")
    assert "'thought'" in error.expected and "tool_call" in error.expected


def test_step_with_wrong_type_names_field_and_line(tmp_path: Path) -> None:
    """Tool-call arguments given as a list are reported at $.arguments on their line."""
    path = _lines(
        tmp_path / "log.jsonl", HEADER, INPUT,
        {"run_id": "r1", "kind": "tool_call", "tool": "issue_refund",
         "arguments": ["A-1001", 1250.0]},
    )
    error = _error(path)
    assert (error.line, error.place) == (3, "$.arguments")
    assert "tool_call step" in error.expected


def test_step_with_unknown_field_names_its_line(tmp_path: Path) -> None:
    """A step with a field its kind does not have is reported on its line."""
    path = _lines(tmp_path / "log.jsonl", HEADER,
                  {"run_id": "r1", "kind": "output", "content": "ok", "tone": "warm"})
    error = _error(path)
    assert (error.line, error.place) == (2, "$.tone")


def test_header_with_schema_version_2_names_its_line(tmp_path: Path) -> None:
    """A run header of a future schema version is refused on its line."""
    path = _lines(tmp_path / "log.jsonl", INPUT, {**HEADER, "schema_version": 2})
    error = _error(path)
    assert (error.line, error.place) == (2, "$.schema_version")
    assert "got 2" in error.expected


def test_header_with_unknown_field_names_its_line(tmp_path: Path) -> None:
    """A run header with a field a run does not have is refused on its line."""
    path = _lines(tmp_path / "log.jsonl", {**HEADER, "model": "gpt"}, INPUT)
    error = _error(path)
    assert (error.line, error.place) == (1, "$.model")


def test_header_with_wrong_type_names_its_line(tmp_path: Path) -> None:
    """A run header whose started_at is not a time is refused with the header's line."""
    path = _lines(tmp_path / "log.jsonl", INPUT, {**HEADER, "started_at": "yesterday"},
                  {"run_id": "r1", "kind": "output", "content": "ok"})
    error = _error(path)
    assert error.place == "$.started_at"
    assert error.line == 2


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    """A file with no runs in it is an InvalidInput, not an empty list."""
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    error = _error(path)
    assert error.path == path
    assert "no runs" in error.expected


def test_missing_file_is_invalid_input(tmp_path: Path) -> None:
    """A run log that does not exist is an InvalidInput naming it, not an OSError."""
    path = tmp_path / "nowhere.jsonl"
    error = _error(path)
    assert error.path == path
    assert "cannot read the run log" in error.expected


def test_non_utf8_file_is_invalid_input(tmp_path: Path) -> None:
    """A run log that is not UTF-8 is an InvalidInput, not a UnicodeDecodeError traceback."""
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"run_id": "r1", "kind": "output", "content": "caf\xe9"}\n')
    error = _error(path)
    assert error.path == path
