"""Reading what the real OpenTelemetry SDK and GenAI instrumentation emit: spans, OTLP logs
and both, in every content mode, streaming, with and without agent and tool spans.

Each scenario is produced once per test run by ``tests/otel_producers.py``: a real
``openai`` client, instrumented by ``opentelemetry-instrumentation-openai-v2``, asks the
local chat server for a refund, which asks for the ``issue_refund`` tool and then answers.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalsuite import (
    InvalidInput,
    Output,
    Run,
    Skips,
    ToolCall,
    ToolResult,
    UserInput,
    detect_format,
    merge_parts,
    read_log_runs,
    read_logs,
)
from gates import Evidence, Workspace, investigate, load_inputs
from gates._cli import main
from gates._gate.logging_check import logging as logging_check
from regressions import logging_gaps
from tests.conftest import RunCli, built_once
from tests.helpers import ACTOR, LOG, captured
from tests.otel_producers import (
    ANSWER,
    ARGUMENTS,
    CALL_ID,
    RESULT,
    SYSTEM,
    TOOL,
    USER,
    produce,
    produce_pydantic_ai,
)

pytestmark = pytest.mark.slow  # every scenario runs an instrumented client in a child process

SCENARIOS: dict[str, dict[str, Any]] = {
    "span_only": {"mode": "span_only"},
    "event_only": {"mode": "event_only"},
    "span_and_event": {"mode": "span_and_event"},
    "legacy": {"mode": "legacy"},
    "none": {"mode": "none", "tool_span": True},
    "stream": {"mode": "span_only", "stream": True},
    "stream_legacy": {"mode": "legacy", "stream": True},
    "agent": {"mode": "event_only", "agent_span": True, "tool_span": True},
    "agent_spans": {"mode": "span_only", "agent_span": True},
    "failed": {"mode": "span_only", "agent_span": True, "error": True},
}
FULL = ["user_input", "tool_call", "tool_result", "output"]


@pytest.fixture(scope="session")
def otel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each scenario's spans file and logs file, produced once per test run."""
    def build(root: Path) -> None:
        for name, options in SCENARIOS.items():
            produce(root / name, **options)

    root = built_once(tmp_path_factory, "otel-genai", build)
    return {name: (root / name / "spans.jsonl", root / name / "logs.jsonl")
            for name in SCENARIOS}


def _only_run(*paths: Path) -> Run:
    """The one run of the files given (a logs file left empty, in span_only mode, is left out)."""
    runs = merge_parts(read_logs([p for p in paths if p.stat().st_size]))
    assert len(runs) == 1, [r.run_id for r in runs]
    return runs[0]


def _fully_logged(run: Run) -> None:
    """The refund conversation, every step with what it carried, and nothing to report."""
    assert [s.kind for s in run.steps] == FULL
    user, call, result, output = run.steps
    assert isinstance(user, UserInput) and user.content == USER
    assert isinstance(call, ToolCall) and (call.tool, call.call_id) == (TOOL, CALL_ID)
    assert call.arguments == ARGUMENTS and call.arguments_logged is None
    assert isinstance(result, ToolResult) and (result.call_id, result.result) == (CALL_ID,
                                                                                 RESULT)
    assert isinstance(output, Output) and output.content == ANSWER
    assert run.context == {"system": SYSTEM}
    assert logging_gaps(run, "otel") == []


def test_client_spans_only_take_each_result_from_the_next_model_call(
        otel: dict[str, tuple[Path, Path]]) -> None:
    """Without tool spans, a call's result is the next chat span's tool_call_response."""
    _fully_logged(_only_run(otel["span_only"][0]))


@pytest.mark.parametrize("scenario", ["event_only", "span_and_event", "legacy"])
def test_log_events_given_with_their_spans_give_the_content(
        otel: dict[str, tuple[Path, Path]], scenario: str) -> None:
    """A spans file and a logs file given together pair by trace id: content, once."""
    spans, logs = otel[scenario]
    run = _only_run(spans, logs)
    _fully_logged(run)
    assert run.usage is not None and (run.usage.input_tokens, run.usage.model_calls) == (280, 2)
    assert _only_run(logs, spans).steps == run.steps  # in either order


@pytest.mark.parametrize("scenario", ["event_only", "span_and_event", "legacy"])
def test_a_logs_file_alone_is_read_as_its_runs(otel: dict[str, tuple[Path, Path]],
                                               scenario: str) -> None:
    """An OTLP logs export is detected and read without its spans."""
    logs = otel[scenario][1]
    assert detect_format(logs) == "otel"
    _fully_logged(_only_run(logs))


def test_a_file_of_spans_and_logs_lines_is_read_as_one(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """One file holding both exports, as one file exporter for both signals writes it."""
    spans, logs = otel["event_only"]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(logs.read_text() + spans.read_text())
    assert read_log_runs(mixed)[0].steps == _only_run(spans, logs).steps


@pytest.mark.parametrize("scenario", ["agent", "agent_spans"])
def test_invoke_agent_span_keeps_the_model_calls_system_message(
        otel: dict[str, tuple[Path, Path]], scenario: str) -> None:
    """With an agent span (and a tool span), the system message is still the run's context."""
    run = _only_run(*otel[scenario])
    _fully_logged(run)
    assert run.agent == "refund-agent"


@pytest.mark.parametrize("scenario", ["stream", "stream_legacy"])
def test_streamed_calls_make_one_output_and_no_empty_step(
        otel: dict[str, tuple[Path, Path]], scenario: str) -> None:
    """A streamed tool call is no empty output; a streamed answer is one output."""
    _fully_logged(_only_run(*otel[scenario]))


def test_content_not_captured_is_reported_not_invented(
        otel: dict[str, tuple[Path, Path]]) -> None:
    """Events without content give no empty input, no empty arguments, no empty result."""
    run = _only_run(*otel["none"])
    assert [s.kind for s in run.steps] == ["tool_call"]
    assert run.steps[0].arguments_logged is False  # type: ignore[union-attr]
    assert {g.question for g in logging_gaps(run, "otel")} == {
        "goal", "context", "tools", "completion"}


def test_ingest_pairs_the_two_files_and_writes_the_runs_whole(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`reinstate ingest SPANS LOGS --out` writes one run with its arguments and results."""
    spans, logs = otel["event_only"]
    out = tmp_path / "runs.jsonl"
    assert main(["ingest", str(spans), str(logs), "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    _fully_logged(read_log_runs(out)[0])


def test_ingest_in_a_child_process_reads_legacy_events(
        otel: dict[str, tuple[Path, Path]], cli: RunCli, tmp_path: Path) -> None:
    """`reinstate ingest SPANS LOGS` as a user runs it: exit 0, no warning, per file."""
    result = cli("ingest", *map(str, otel["legacy"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "Traceback" not in result.stderr
    assert "spans.jsonl" in result.stdout


def test_metrics_of_otel_files_count_calls_tokens_and_errors(
        otel: dict[str, tuple[Path, Path]], capsys: pytest.CaptureFixture[str]) -> None:
    """`reinstate metrics` reads model calls, tokens, tool calls and errors from OTel."""
    assert main(["metrics", str(otel["span_only"][0]), str(otel["failed"][0]), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    values = {m["name"]: m["value"] for m in metrics["metrics"]}
    assert metrics["runs"] == 2
    assert (values["model calls"], values["input tokens"], values["output tokens"]) == (
        3, 280, 30)
    assert (values["tool calls"], values["errors"]) == (1, 2)
    basis = {m["name"]: m["basis"] for m in metrics["metrics"]}
    assert "gpt-4o-mini" in basis["model calls"]


def test_a_bad_log_record_names_its_line_and_path(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """A log record of the wrong shape is one error naming line and JSON path."""
    request = json.loads(otel["event_only"][1].read_text().splitlines()[0])
    request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]["timeUnixNano"] = "soon"
    bad = tmp_path / "logs.jsonl"
    bad.write_text(json.dumps(request) + "\n")
    with pytest.raises(InvalidInput) as caught:
        read_log_runs(bad)
    assert (caught.value.line, caught.value.place) == (
        1, "$.resourceLogs[0].scopeLogs[0].logRecords[1].timeUnixNano")
    assert "OTLP/JSON logs export" in caught.value.expected


def test_the_gates_logging_check_passes_on_fully_logged_otel_runs(
        otel: dict[str, tuple[Path, Path]], example: Workspace) -> None:
    """The logging check reads the logs folder's spans and logs files together."""
    shutil.rmtree(example.logs_dir)
    example.logs_dir.mkdir()
    spans, logs = otel["event_only"]
    shutil.copy(spans, example.logs_dir / "spans.jsonl")
    result = logging_check(load_inputs(example, "refund-agent"), Evidence([], frozenset()))
    assert result.outcome == "fail" and "no user input logged" in " ".join(result.findings)
    shutil.copy(logs, example.logs_dir / "logs.jsonl")
    result = logging_check(load_inputs(example, "refund-agent"), Evidence([], frozenset()))
    assert (result.outcome, result.findings) == ("pass", []), result.summary


def test_investigate_finds_a_call_whose_arguments_only_the_logs_file_holds(
        otel: dict[str, tuple[Path, Path]], example: Workspace) -> None:
    """The scope of impact matches arguments from log events; the run has no logging gap."""
    incident_id = captured(example)
    investigate(example, incident_id, [example.root / LOG], actor=ACTOR)
    path = example.incidents().path(incident_id)
    data = yaml.safe_load(path.read_text())
    data["investigation"]["signature"]["match"] = [{
        "kind": "tool_call", "tool": TOOL, "arguments": {
            "type": "object", "required": ["refund_to"],
            "properties": {"refund_to": {"const": ARGUMENTS["refund_to"]}}}}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    logs = []
    for source in otel["event_only"]:
        logs.append(example.logs_dir / source.name)
        shutil.copy(source, logs[-1])
    scope = investigate(example, incident_id, logs, actor=ACTOR).investigation.scope
    assert (scope.runs_matched, scope.calls_matched) == (1, 1)
    done = investigate(example, incident_id, [example.root / LOG, *logs], actor=ACTOR)
    assert done.investigation.scope.runs_matched == 1
    assert scope.runs[0].run_id not in done.investigation.gap_runs


def _as_read(paths: list[Path]) -> list[dict[str, Any]]:
    """Every run of the files, as JSON, each time to the microsecond and places left out:
    the console exporters write times to the microsecond (rounded, where OTLP/JSON holds
    nanoseconds), and a place names the line of its own file."""
    runs = []
    for run in merge_parts(read_logs([p for p in paths if p.stat().st_size])):
        text = run.model_dump(mode="json")
        for step in text["steps"]:
            step.pop("place", None)
        runs.append(text)
    return runs


def _within_a_microsecond(one: Any, other: Any) -> bool:
    """The same JSON, ISO times allowed to differ by the console exporters' rounding."""
    if isinstance(one, dict) and isinstance(other, dict):
        return one.keys() == other.keys() and all(
            _within_a_microsecond(one[k], other[k]) for k in one)
    if isinstance(one, list) and isinstance(other, list):
        return len(one) == len(other) and all(
            _within_a_microsecond(a, b) for a, b in zip(one, other, strict=True))
    if isinstance(one, str) and isinstance(other, str) and one != other:
        try:
            apart = datetime.fromisoformat(one) - datetime.fromisoformat(other)
        except ValueError:
            return False
        return abs(apart) <= timedelta(microseconds=1)
    return bool(one == other)


@pytest.mark.parametrize("layout", ["console.json", "console.jsonl"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_sdk_console_exporters_output_reads_as_its_otlp_export(
        otel: dict[str, tuple[Path, Path]], scenario: str, layout: str) -> None:
    """Spans and log records as ConsoleSpanExporter and ConsoleLogRecordExporter write them
    to one stream (indented, or one a line) read as the same runs as the OTLP files."""
    spans, logs = otel[scenario]
    console = spans.parent / layout
    assert detect_format(console) == "otel"
    expected = _as_read([spans, logs])
    found = _as_read([console])
    assert expected and [len(r["steps"]) for r in expected] != [0]
    assert _within_a_microsecond(found, expected), (found, expected)


def test_the_within_a_microsecond_comparison_tells_runs_apart(
        otel: dict[str, tuple[Path, Path]]) -> None:
    """The comparison above fails on other runs, and on times further apart."""
    assert not _within_a_microsecond(_as_read([otel["legacy"][0].parent / "console.json"]),
                                     _as_read(list(otel["span_only"])))
    assert not _within_a_microsecond("2026-12-01T16:26:47.803428Z",
                                     "2026-12-01T16:26:47.803430Z")


def test_ingest_reads_console_output_as_a_user_runs_it(
        otel: dict[str, tuple[Path, Path]], cli: RunCli, tmp_path: Path) -> None:
    """`reinstate ingest console.json --out` in a child process: the refund run, whole."""
    console = otel["event_only"][0].parent / "console.json"
    out = tmp_path / "runs.jsonl"
    result = cli("ingest", str(console), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "console.json (otel): 1 run" in result.stdout
    _fully_logged(read_log_runs(out)[0])


def test_a_console_object_cut_off_names_its_line(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An object cut off mid-write (the process ended), then more: an error naming the
    line it began on; with --skip-invalid the rest is read and the object counted."""
    lines = (otel["span_only"][0].parent / "console.json").read_text().splitlines(True)
    starts = [n for n, line in enumerate(lines) if line.startswith("{")]
    cut = lines[:starts[1] + 3] + lines[starts[2]:]  # the second object loses its end
    bad = tmp_path / "console.json"
    bad.write_text("".join(cut))
    with pytest.raises(InvalidInput) as caught:
        read_log_runs(bad)
    assert caught.value.line == starts[1] + 1 and caught.value.path == bad
    assert "cut off" in caught.value.expected
    assert main(["ingest", str(bad), "--skip-invalid"]) == 0
    assert "1 invalid record" in capsys.readouterr().err.replace("\n", " ")


def test_a_console_span_of_the_wrong_shape_names_its_line_and_field(tmp_path: Path) -> None:
    """A span whose trace id is not hex: one error naming the file, line and field."""
    span = {"name": "chat gpt-4o", "context": {"trace_id": "0xnothex", "span_id":
                                               "0x" + "1" * 16},
            "kind": "SpanKind.CLIENT", "parent_id": None,
            "start_time": "2026-12-01T16:25:31.536716Z",
            "end_time": "2026-12-01T16:25:31.736716Z", "status": {"status_code": "UNSET"},
            "attributes": {"gen_ai.operation.name": "chat"}, "events": [], "links": [],
            "resource": {"attributes": {}, "schema_url": ""}}
    bad = tmp_path / "console.json"
    bad.write_text(json.dumps(span, indent=4) + "\n" + json.dumps({**span, "start_time": 7},
                                                                    indent=4) + "\n")
    with pytest.raises(InvalidInput) as caught:
        read_log_runs(bad)
    assert (caught.value.line, caught.value.place) == (1, "$.context.trace_id")
    span["context"]["trace_id"] = "0x" + "a" * 32  # type: ignore[index]
    bad.write_text(json.dumps(span, indent=4) + "\n" + json.dumps({**span, "start_time": 7},
                                                                    indent=4) + "\n")
    with pytest.raises(InvalidInput) as caught:
        read_log_runs(bad)
    second = len(json.dumps(span, indent=4).splitlines()) + 1
    assert (caught.value.line, caught.value.place) == (second, "$.start_time")
    assert "console exporter" in caught.value.expected


def test_other_output_between_console_objects_is_an_invalid_record(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """A program's own print between the exporter's objects: an error naming its line,
    or, skipped, one invalid record and the run read whole."""
    console = otel["span_only"][0].parent / "console.json"
    lines = console.read_text().splitlines(True)
    second = next(n for n, line in enumerate(lines) if n and line.startswith("{"))
    mixed = tmp_path / "stdout.txt"
    mixed.write_text("".join([*lines[:second], "refund issued\n", *lines[second:]]))
    with pytest.raises(InvalidInput) as caught:
        read_log_runs(mixed)
    assert caught.value.line == second + 1 and "other text" in caught.value.expected
    skips = Skips()
    runs = merge_parts(read_logs([mixed], skips=skips))
    assert skips.total == 1
    assert _within_a_microsecond(
        [r.model_dump(mode="json", exclude={"steps": {"__all__": {"place"}}}) for r in runs],
        [r.model_dump(mode="json", exclude={"steps": {"__all__": {"place"}}})
         for r in merge_parts(read_logs([console]))])


@pytest.fixture(scope="session")
def pydantic_ai(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The refund conversation as a Pydantic AI agent ran it, traced by Pydantic AI's own
    instrumentation in data formats 2, 3 and 5 (the default): each one's spans file."""
    versions = (2, 3, 5)

    def build(root: Path) -> None:
        for version in versions:
            produce_pydantic_ai(root / f"v{version}", version)

    root = built_once(tmp_path_factory, "pydantic-ai", build)
    return {version: root / f"v{version}" / "spans.jsonl" for version in versions}


@pytest.mark.parametrize("version", [2, 3, 5])
def test_a_pydantic_ai_agents_own_spans_read_as_its_conversation(
        pydantic_ai: dict[int, Path], version: int) -> None:
    """Its agent run span names the agent, its model request spans carry the messages:
    the refund conversation with nothing to report, the tool definitions as a list, and
    the console exporter's copy reads the same."""
    spans = pydantic_ai[version]
    run = _only_run(spans)
    assert run.agent == "refund-agent"
    assert [s.kind for s in run.steps] == FULL
    user, call, result, output = run.steps
    assert isinstance(user, UserInput) and user.content == USER
    assert isinstance(call, ToolCall) and (call.tool, call.call_id) == (TOOL, CALL_ID)
    assert call.arguments == ARGUMENTS
    assert isinstance(result, ToolResult) and (result.call_id, result.result) == (CALL_ID,
                                                                                 RESULT)
    assert isinstance(output, Output) and output.content == ANSWER
    assert run.context["system"] == SYSTEM
    assert [t["name"] for t in run.context["tool_definitions"]] == [TOOL]
    assert run.usage is not None and (run.usage.input_tokens, run.usage.model_calls) == (280, 2)
    assert logging_gaps(run, "otel") == []
    assert _within_a_microsecond(_as_read([spans.parent / "console.json"]), _as_read([spans]))


def test_a_programs_own_json_among_console_objects_is_an_invalid_record(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """A structured log line the program printed to the same stream (a JSON object, not a
    span nor a log record) is refused naming its line, never passed over unread; skipped,
    it is counted once, with a log record's bad field, and the run is read whole."""
    console = otel["event_only"][0].parent / "console.json"
    lines = console.read_text().splitlines(True)
    starts = [n for n, line in enumerate(lines) if line.startswith("{")]
    own = json.dumps({"level": "info", "msg": "refund issued", "order": "A-1"}) + "\n"
    mixed = tmp_path / "stdout.json"
    mixed.write_text("".join([*lines[:starts[1]], own, *lines[starts[1]:]]))
    with pytest.raises(InvalidInput) as caught:
        read_log_runs(mixed)
    assert caught.value.line == starts[1] + 1 and "other keys" in caught.value.expected
    skips = Skips()
    runs = merge_parts(read_logs([mixed], skips=skips))
    assert skips.total == 1 and len(runs) == 1
    assert _within_a_microsecond(_as_read([console]), [
        r.model_dump(mode="json", exclude={"steps": {"__all__": {"place"}}}) for r in runs])


def test_a_log_record_holding_a_context_key_is_read_as_a_record(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """Objects are told apart by what the exporter writes first, not by a key found
    anywhere: a GenAI event whose attributes hold a "context" key is still a record, and
    a span whose attributes hold "observed_timestamp" still a span."""
    console = otel["event_only"][0].parent / "console.jsonl"
    edited = []
    for line in console.read_text().splitlines():
        value = json.loads(line)
        if "body" in value:
            value["attributes"] = {**(value["attributes"] or {}), "context": "checkout"}
        else:
            value["attributes"] = {**value["attributes"], "observed_timestamp": "x"}
        edited.append(json.dumps(value) + "\n")
    path = tmp_path / "console.jsonl"
    path.write_text("".join(edited))
    assert _within_a_microsecond(_as_read([path]), _as_read([console]))


def test_a_bad_log_record_among_console_objects_is_counted_once(
        otel: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """A log record with a time that is no time: refused naming its line and field, or,
    skipped, one invalid record; a line of other text, one more (each once, not once for
    each pass over the file)."""
    console = otel["event_only"][0].parent / "console.jsonl"
    lines = console.read_text().splitlines(True)
    at = next(n for n, line in enumerate(lines) if line.startswith('{"body"'))
    record = json.loads(lines[at])
    record["observed_timestamp"] = record["timestamp"] = "soon"
    lines[at] = json.dumps(record) + "\n"
    bad = tmp_path / "console.jsonl"
    bad.write_text("".join(lines))
    with pytest.raises(InvalidInput) as caught:
        read_log_runs(bad)
    assert (caught.value.line, caught.value.place) == (at + 1, "$.timestamp")
    skips = Skips()
    merge_parts(read_logs([bad], skips=skips))
    assert skips.total == 1, skips.lines()
    bad.write_text("".join([*lines, "refund issued\n"]))
    skips = Skips()
    merge_parts(read_logs([bad], skips=skips))
    assert skips.total == 2, skips.lines()


def test_tool_spans_without_ids_answer_the_call_asked_with_their_arguments(
        tmp_path: Path) -> None:
    """Two refunds asked for at once, their tool spans without `gen_ai.tool.call.id` and
    the second one started first: each result answers the call asked with the arguments
    the tool ran with, not the earliest call of the tool."""
    def attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"key": k, "value": {"stringValue": v}} for k, v in values.items()]

    refunds = [{"order_id": "A-1", "refund_to": "store_credit:C-7731"},
               {"order_id": "A-2", "refund_to": "original_payment_method"}]
    calls = [{"type": "tool_call", "id": f"call_{n}", "name": "issue_refund",
              "arguments": args} for n, args in enumerate(refunds)]
    t0 = 1_795_000_000_000_000_000

    def span(number: int, name: str, start: int, end: int,
             values: dict[str, Any]) -> dict[str, Any]:
        return {"traceId": "ab" * 16, "spanId": f"{number:016x}", "name": name,
                "startTimeUnixNano": str(t0 + start), "endTimeUnixNano": str(t0 + end),
                "attributes": attributes(values)}

    spans = [
        span(1, "chat gpt-4o", 0, 10, {"gen_ai.operation.name": "chat",
                                       "gen_ai.output.messages": json.dumps([{
                                           "role": "assistant", "parts": calls}])}),
        *[span(2 + n, "execute_tool issue_refund", start, start + 5, {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "issue_refund",
            "gen_ai.tool.call.arguments": json.dumps(refunds[n]),
            "gen_ai.tool.call.result": json.dumps({"refund": refunds[n]["order_id"]})})
          for n, start in ((1, 20), (0, 30))],  # the second call's tool started first
    ]
    log = tmp_path / "traces.jsonl"
    log.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}) + "\n")
    run, = read_log_runs(log)
    steps = run.steps
    paired = {steps[c].call_id: (steps[c].arguments, steps[r].result)
              for c, r in run.pairs().items()}
    assert paired == {"call_0": (refunds[0], {"refund": "A-1"}),
                      "call_1": (refunds[1], {"refund": "A-2"})}


@pytest.mark.attack
def test_message_content_the_reader_cannot_read_is_warned_of_not_dropped(
        otel: dict[str, tuple[Path, Path]], cli: RunCli, tmp_path: Path) -> None:
    """The real export, with the refund call's part typed ``function_call`` (as other
    instrumentations write it) and the answer's messages cut off: the call and the answer
    were dropped without a word, and ``ingest --strict`` passed a log read only in part."""
    text = otel["span_only"][0].read_text()
    assert text.count('\\"type\\":\\"tool_call\\"') == 2  # the call, and its copy sent back
    edited = text.replace('\\"type\\":\\"tool_call\\"', '\\"type\\":\\"function_call\\"')
    answer = '\\"finish_reason\\":\\"stop\\"}]'
    assert edited.count(answer) == 1
    edited = edited.replace(answer, '\\"finish_reason\\":\\"stop\\"}')  # not JSON any more
    log = tmp_path / "spans.jsonl"
    log.write_text(edited)
    run = _only_run(log)
    assert [s.kind for s in run.steps] == ["user_input"]  # neither read as a step
    warned = cli("ingest", str(log), cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert "function_call" in warned.stderr and "not valid JSON" in warned.stderr
    strict = cli("ingest", str(log), "--strict", cwd=tmp_path)
    assert strict.returncode == 2, strict.stderr
    assert "--strict refuses a log that was read only in part" in strict.stderr


def test_a_log_record_time_past_what_otlp_writes_names_its_place(
        otel: dict[str, tuple[Path, Path]], cli: RunCli, tmp_path: Path) -> None:
    """A log event's time beyond 2^64 ns (a span's is refused so) crashed ``ingest`` with
    an OverflowError traceback; it is an invalid record naming its line and field."""
    text = otel["event_only"][1].read_text()
    stamp = text.split('"observedTimeUnixNano": "', 1)[1].split('"', 1)[0]
    log = tmp_path / "logs.jsonl"
    log.write_text(text.replace(stamp, str(10**24), 1))
    result = cli("ingest", str(log), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "logs.jsonl:1: $.resourceLogs[0].scopeLogs[0].logRecords[" in result.stderr
    assert "observedTimeUnixNano: expected a time in nanoseconds below 2^64" in result.stderr
    skips = Skips()
    assert merge_parts(read_logs([log], skips=skips)) == [] and skips.total == 1


@pytest.mark.attack
def test_input_parts_the_reader_cannot_read_are_warned_of_once(
        otel: dict[str, tuple[Path, Path]], cli: RunCli, tmp_path: Path) -> None:
    """The real export, with an image (a ``blob`` part) beside the user's words, in the
    first call's input and in the history the second call repeats: it vanished without a
    word, and ``ingest --strict`` passed. It is said once, not once per call."""
    text = otel["span_only"][0].read_text()
    user = '{\\"role\\":\\"user\\",\\"parts\\":['
    assert text.count(user) == 2
    blob = ('{\\"type\\":\\"blob\\",\\"modality\\":\\"image\\",\\"mime_type\\":\\"image/png\\",'
            '\\"content\\":\\"iVBORw0KGgo=\\"},')
    log = tmp_path / "spans.jsonl"
    log.write_text(text.replace(user, user + blob))
    assert [s.kind for s in _only_run(log).steps] == FULL
    warned = cli("ingest", str(log), cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert "1 record not understood" in warned.stderr and "'blob'" in warned.stderr
    strict = cli("ingest", str(log), "--strict", cwd=tmp_path)
    assert strict.returncode == 2, strict.stderr
