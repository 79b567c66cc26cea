"""Inputs that crash a parser rather than fail its grammar: integers longer than Python will
convert, JSON nested deeper than its recursion limit, bytes that are not UTF-8. Each is one
error line naming the file and its line, exit 2, and nothing written."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gates import Workspace
from gates._cli import main
from tests.conftest import tree
from tests.helpers import ACTOR, LOG, contained

AGENT = "refund-agent"
CASE = "evals/refund-agent/greeting.yaml"
DATA = Path(__file__).parent.parent / "data" / "logs"
LONG = "9" * 5000
DEEP = "[" * 200_000 + "]" * 200_000


def refused(ws: Workspace, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI and check it refused cleanly: exit 2, one error line, nothing written."""
    before = tree(ws.root)
    capsys.readouterr()
    code = main(["-C", str(ws.root), "--actor", ACTOR, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert tree(ws.root) == before
    return err


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_long_integer_in_a_case(example: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A 5,000-digit integer in an eval case stops the gate with the case file and line."""
    _append(example.root / CASE, f"\ntrials: {LONG}\n")
    line = (example.root / CASE).read_text().splitlines().index(f"trials: {LONG}") + 1
    err = refused(example, capsys, "gate", AGENT)
    assert f"greeting.yaml:{line}: malformed YAML: number too long" in err


def test_long_hexadecimal_integer_in_a_case(example: Workspace,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A hexadecimal integer too long to print is refused as it is read, not when shown."""
    _append(example.root / CASE, f"\ntrials: 0x{'f' * 4000}\n")
    err = refused(example, capsys, "gate", AGENT)
    assert "greeting.yaml:" in err and "number too long" in err


@pytest.mark.slow
def test_deeply_nested_case(example: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A case file nesting lists 5,000 deep is refused naming the file and line, not a
    RecursionError."""
    _append(example.root / CASE, f"\nextra: {'[' * 5000}{']' * 5000}\n")
    line = (example.root / CASE).read_text().count("\n")
    err = refused(example, capsys, "gate", AGENT)
    assert f"greeting.yaml:{line}: malformed YAML: nested too deeply" in err


def test_long_integer_in_an_incident(example: Workspace,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A 5,000-digit integer in an incident file is refused naming the file and line."""
    incident_id = contained(example)
    path = example.incidents().path(incident_id)
    path.write_text(path.read_text().replace("target_hours: 4.0", f"target_hours: {LONG}"))
    err = refused(example, capsys, "incident", "show", incident_id)
    assert f"{incident_id}.yaml:" in err and "number too long" in err


def _with_extra(line: str, body: str) -> str:
    """A JSON object line with one more field whose value is ``body``."""
    return json.dumps({**json.loads(line), "extra": "BODY"}).replace('"BODY"', body)


def _native_line(ws: Workspace, body: str) -> Path:
    """The example log with ``body`` in its second line."""
    path = ws.root / LOG
    lines = path.read_text().splitlines()
    lines[1] = _with_extra(lines[1], body)
    path.write_text("\n".join(lines) + "\n")
    return path


def _otel_line(ws: Workspace, body: str) -> Path:
    """An OTLP/JSON export with ``body`` in its first request."""
    path = ws.root / "logs/otel.jsonl"
    lines = (DATA / "refund-agent.otlp.jsonl").read_text().splitlines()
    lines[0] = _with_extra(lines[0], body)
    path.write_text("\n".join(lines) + "\n")
    return path


def _openai_document(ws: Workspace, body: str) -> Path:
    """A JSON document of two OpenAI conversations, ``body`` in the second."""
    path = ws.root / "logs/chats.json"
    first = json.loads((DATA / "refund-agent.openai.jsonl").read_text().splitlines()[0])
    text = json.dumps([first, {**first, "extra": "BODY"}], indent=1)
    path.write_text(text.replace('"BODY"', body))
    return path


LOGS: dict[str, Callable[[Workspace, str], Path]] = {
    "jsonl": _native_line, "otel": _otel_line, "openai": _openai_document}


@pytest.mark.parametrize("body", [LONG, DEEP], ids=["long-integer", "deep-nesting"])
@pytest.mark.parametrize("fmt", LOGS)
def test_log_that_breaks_the_json_parser(example: Workspace, capsys: pytest.CaptureFixture[str],
                                         fmt: str, body: str) -> None:
    """A log with a 5,000-digit integer or JSON nested 200,000 deep is refused naming the
    file and the line, in every format."""
    path = LOGS[fmt](example, body)
    text = path.read_text()
    line = text[:text.index(body[:50])].count("\n") + 1
    err = refused(example, capsys, "ingest", str(path), "--format", fmt)
    assert f"{path.name}:{line}" in err, err


@pytest.mark.parametrize("body", [LONG, DEEP], ids=["long-integer", "deep-nesting"])
def test_log_detected_automatically(example: Workspace, capsys: pytest.CaptureFixture[str],
                                    body: str) -> None:
    """Detecting a log's format from a first line that breaks the parser is a clean refusal."""
    path = example.root / LOG
    lines = path.read_text().splitlines()
    lines[0] = _with_extra(lines[0], body)
    path.write_text("\n".join(lines) + "\n")
    err = refused(example, capsys, "ingest", str(path))
    assert f"{path.name}:1" in err


@pytest.mark.parametrize("setting", [f"[logging]\nrecent_runs = {LONG}",
                                     f"[logging]\nrecent_runs = 0x{'f' * 4000}",
                                     f"nested = {'[' * 5000}{']' * 5000}"],
                         ids=["long-integer", "long-hexadecimal", "deep-nesting"])
def test_config_that_breaks_the_toml_parser(example: Workspace,
                                            capsys: pytest.CaptureFixture[str],
                                            setting: str) -> None:
    """reinstate.toml with an integer too long to convert or print, or arrays nested too
    deep, is refused naming the file."""
    _append(example.root / "reinstate.toml", f"\n{setting}\n")
    err = refused(example, capsys, "mode", AGENT)
    assert "reinstate.toml" in err and ("malformed TOML" in err or "number too long" in err)


def test_config_that_is_not_utf8(example: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A byte that is not UTF-8 in reinstate.toml is refused naming the file and line."""
    config = example.root / "reinstate.toml"
    config.write_bytes(config.read_bytes() + b"\n# caf\xe9\n")
    line = config.read_bytes().count(b"\n")
    err = refused(example, capsys, "mode", AGENT)
    assert f"reinstate.toml:{line}: not UTF-8 text" in err


def _console_spans(ws: Workspace, body: str) -> tuple[Path, int]:
    """Spans as the SDK's console exporter prints them, ``body`` in the second one's
    attributes; and the line that span starts on."""
    span = {"name": "chat gpt-4o", "context": {"trace_id": "0x" + "a" * 32,
                                               "span_id": "0x" + "1" * 16},
            "kind": "SpanKind.CLIENT", "parent_id": None,
            "start_time": "2026-12-01T16:25:31.536716Z",
            "end_time": "2026-12-01T16:25:31.736716Z", "status": {"status_code": "UNSET"},
            "attributes": {"gen_ai.operation.name": "chat"}, "events": [], "links": [],
            "resource": {"attributes": {}, "schema_url": ""}}
    first = json.dumps(span, indent=4) + "\n"
    second = json.dumps({**span, "attributes": {"extra": "BODY"}}, indent=4).replace(
        '"BODY"', body) + "\n"
    path = ws.root / "logs/console.json"
    path.write_text(first + second)
    return path, first.count("\n") + 1


@pytest.mark.parametrize("body", [LONG, DEEP], ids=["long-integer", "deep-nesting"])
@pytest.mark.parametrize("fmt", ["otel", "auto"])
def test_console_spans_that_break_the_json_parser(example: Workspace,
                                                  capsys: pytest.CaptureFixture[str],
                                                  fmt: str, body: str) -> None:
    """A console exporter's span holding a 5,000-digit integer or JSON nested 200,000
    deep is refused naming the file and the line the span starts on."""
    path, line = _console_spans(example, body)
    err = refused(example, capsys, "ingest", str(path), "--format", fmt)
    assert f"{path.name}:{line}" in err, err


@pytest.mark.parametrize("fmt", ["otel", "auto"])
def test_a_console_span_written_body_first_is_not_passed_over(
        example: Workspace, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """A span whose first key is a log record's (``body``) in a file of spans only: refused
    naming its line, never passed over as a record and then never read."""
    path, line = _console_spans(example, '"x"')
    head, tail = path.read_text().rsplit('{\n    "name"', 1)
    path.write_text(head + '{\n    "body": null,\n    "name"' + tail)
    err = refused(example, capsys, "ingest", str(path), "--format", fmt)
    assert f"{path.name}:{line}" in err and "log record" in err, err


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_console_span_time_past_the_calendar_is_refused(
        example: Workspace, capsys: pytest.CaptureFixture[str], when: str) -> None:
    """A span time that is no UTC time (past year 9999 or before year 1 once its offset is
    taken off): refused naming the file, line and field, never an OverflowError."""
    path, line = _console_spans(example, '"x"')
    head, tail = path.read_text().rsplit('"2026-12-01T16:25:31.536716Z"', 1)
    path.write_text(head + json.dumps(when) + tail)
    err = refused(example, capsys, "ingest", str(path))
    assert f"{path.name}:{line}: $.start_time" in err, err


def test_console_lines_closing_braces_are_read_once(
        example: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A 450 kB object whose lines close a brace unindented, one line in two, and is never
    whole: refused at once, not decoded again from its start at each such line."""
    path = example.root / "logs/console.json"
    path.write_bytes(b'{\n    "name": "x", "a": [{\n' + b'}\n    ,{\n' * 50_000 + b'}]}\n')
    started = time.monotonic()
    err = refused(example, capsys, "ingest", str(path))
    assert time.monotonic() - started < 10 and f"{path.name}:1" in err, err



_OTLP = Path(__file__).parents[1] / "data/logs/refund-agent.otlp.jsonl"


@pytest.mark.parametrize("layout", ["otlp", "console"])
def test_a_log_event_named_by_a_list_is_no_genai_event(example: Workspace,
                                                       layout: str) -> None:
    """A log record whose event.name is a list, not a name: no GenAI event (never looked
    up among their names: a TypeError), so the runs read as they do without it."""
    from evalsuite import read_log_runs

    if layout == "otlp":
        path = example.root / "logs/otlp.jsonl"
        path.write_text(_OTLP.read_text())
        named = {"key": "event.name", "value": {"arrayValue": {"values": [
            {"stringValue": "gen_ai.user.message"}]}}}
        record = {"timeUnixNano": "1", "traceId": "a" * 32, "spanId": "1" * 16,
                  "body": {"stringValue": "hi"}, "attributes": [named]}
        text = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})
    else:
        path, _ = _console_spans(example, '"x"')
        text = json.dumps({"body": "hi", "severity_number": 9, "attributes": {
            "event.name": ["gen_ai.user.message"]}, "timestamp": "2026-12-01T16:25:31Z",
            "observed_timestamp": "2026-12-01T16:25:31Z", "trace_id": "0x" + "a" * 32,
            "span_id": "0x" + "1" * 16}, indent=4)
    before = read_log_runs(path)
    path.write_text(path.read_text() + text + "\n")
    assert read_log_runs(path) == before


@pytest.mark.parametrize("call_id", [7, ["c1"]], ids=["number", "list"])
def test_an_answers_tool_call_id_that_is_no_text_is_read_as_text(
        example: Workspace, call_id: object) -> None:
    """A model's answer asks for a tool with an id that is a number or a list: the call is
    read with the id as text (as a tool span's id is) and its result answers it, never a
    pydantic ValidationError traceback."""
    from evalsuite import ToolCall, ToolResult, read_log_runs

    asked = [{"role": "assistant", "parts": [{"type": "tool_call", "id": call_id,
                                              "name": "issue_refund", "arguments": {}}]}]
    answered = [{"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id,
                                            "response": "refunded"}]}]

    def span(span_id: str, start: int, messages: str, value: object) -> dict[str, object]:
        return {"traceId": "a" * 32, "spanId": span_id * 16, "name": "chat gpt-4o",
                "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 1),
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in [
                    ("gen_ai.operation.name", "chat"), (messages, json.dumps(value))]]}

    path = example.root / "logs/otlp.jsonl"
    spans = [span("1", 1, "gen_ai.output.messages", asked),
             span("2", 5, "gen_ai.input.messages", [*asked, *answered])]
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}) + "\n")
    steps = read_log_runs(path)[0].steps
    call = next(s for s in steps if isinstance(s, ToolCall))
    result = next(s for s in steps if isinstance(s, ToolResult))
    assert call.call_id == result.call_id == str(call_id)


@pytest.mark.parametrize("calls", [[None], 5, [{"id": "c1", "function": 5}]],
                         ids=["a-call-that-is-null", "calls-that-are-a-number",
                              "a-function-that-is-a-number"])
def test_a_choice_events_tool_calls_of_the_wrong_shape_are_still_calls(
        example: Workspace, calls: object) -> None:
    """A gen_ai.choice log event whose tool_calls (or one of them, or its function) is no
    object: the call the model asked for is still one step, its name not read; never an
    AttributeError or TypeError traceback."""
    from evalsuite import read_log_runs

    path, _ = _console_spans(example, '"x"')
    choice = {"body": {"index": 0, "finish_reason": "tool_calls",
                       "message": {"tool_calls": calls}},
              "severity_number": 9, "attributes": {"event.name": "gen_ai.choice"},
              "timestamp": "2026-12-01T16:25:31.6Z",
              "observed_timestamp": "2026-12-01T16:25:31.6Z",
              "trace_id": "0x" + "a" * 32, "span_id": "0x" + "1" * 16}
    path.write_text(path.read_text() + json.dumps(choice, indent=4) + "\n")
    assert [s.kind for r in read_log_runs(path) for s in r.steps] == ["tool_call"]
