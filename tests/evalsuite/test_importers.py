"""Reading runs from OTLP/JSON GenAI traces, OpenAI and Anthropic conversations, and native
logs as a stream: realistic fixtures in tests/data/logs, the real tau-bench trajectories,
and the bad input each format meets in practice."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from evalsuite import (
    InvalidInput,
    MetricsCounter,
    Output,
    Reasoning,
    Run,
    Skips,
    ToolCall,
    ToolResult,
    UserInput,
    detect_format,
    merge_parts,
    read_log,
    read_log_runs,
    read_logs,
    read_runs,
    write_parts,
)
from tests.conftest import RunCli

DATA = Path(__file__).parent.parent / "data" / "logs"
OTLP = DATA / "refund-agent.otlp.jsonl"
OPENAI = DATA / "refund-agent.openai.jsonl"
ANTHROPIC = DATA / "refund-agent.anthropic.jsonl"
TAU = Path(__file__).parents[3] / "shared" / "datasets" / "tau-bench" / (
    "gpt-4o-airline.subset.json")
NATIVE = Path(__file__).parents[2] / "gates" / "_example" / "workspace" / "logs" / (
    "2026-11-25-refund-agent.jsonl")


def _kinds(run: Run) -> list[str]:
    return [s.kind for s in run.steps]


def _error(path: Path, fmt: str = "auto") -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        list(read_log(path, fmt))  # type: ignore[arg-type]
    return info.value


def test_formats_are_detected_from_the_first_record() -> None:
    """Each fixture is recognised as its own format, and the tau-bench file as OpenAI."""
    assert [detect_format(p) for p in (NATIVE, OTLP, OPENAI, ANTHROPIC, TAU)] == [
        "jsonl", "otel", "openai", "anthropic", "openai"]


def test_otel_trace_with_content_becomes_the_run_it_records() -> None:
    """Today's conventions: agent, system instructions, reasoning, calls paired with results."""
    run = read_log_runs(OTLP)[0]
    assert (run.run_id, run.agent, run.agent_version) == (
        "conv_5j66UpCpwteGg4YSxUnt7lPY", "refund-agent", "1.4.0")
    assert _kinds(run) == ["user_input", "reasoning", "tool_call", "tool_result", "tool_call",
                           "tool_result", "output"]
    refund = run.steps[4]
    assert isinstance(refund, ToolCall) and refund.arguments == {
        "order_id": "A-1001", "amount": 1250.0, "currency": "USD",
        "refund_to": "store_credit:C-7731"}
    assert run.pairs() == {2: 3, 4: 5}
    result = run.steps[5]
    assert isinstance(result, ToolResult) and result.result == {"refund_id": "R-88213",
                                                                "status": "issued"}
    assert run.context["system"].startswith("You are Harbor Goods' customer support agent")
    assert run.usage is not None and (run.usage.input_tokens, run.usage.model_calls) == (1582, 3)
    assert run.outcome is not None and run.outcome.stop_reason == "stop"
    assert run.metadata["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert all(s.at is not None for s in run.steps)


def test_otel_older_attribute_names_and_base64_ids_are_read() -> None:
    """gen_ai.prompt.N, gen_ai.usage.prompt_tokens, traceloop tool spans and base64 ids."""
    run = read_log_runs(OTLP)[1]
    assert run.run_id == "0af7651916cd43dd8448eb211c80319c"  # base64 in the file, hex here
    assert _kinds(run) == ["user_input", "tool_call", "tool_result", "output"]
    call, result = run.steps[1], run.steps[2]
    assert isinstance(call, ToolCall) and call.call_id == "call_abc123"
    assert isinstance(result, ToolResult) and result.error == (
        "payment provider timed out after 30s")
    assert run.usage is not None and run.usage.input_tokens == 540
    assert run.metadata["provider"] == "openai"


def test_otel_trace_without_content_says_what_was_not_logged() -> None:
    """Default instrumentation: the call is known, its arguments are marked as not logged."""
    run = read_log_runs(OTLP)[2]
    assert _kinds(run) == ["tool_call"]
    call = run.steps[0]
    assert isinstance(call, ToolCall) and call.arguments_logged is False
    assert run.context == {}


def test_otel_trace_waits_for_its_root_across_lines(tmp_path: Path) -> None:
    """Spans of one trace split over two export lines still make one part of one run."""
    parts = list(read_log(OTLP))
    assert [p.run_id for p in parts][:1] == ["conv_5j66UpCpwteGg4YSxUnt7lPY"]
    assert len(parts) == 3 and len(parts[0].steps) == 7


def test_otel_bad_span_id_names_line_and_path(tmp_path: Path) -> None:
    """A span id that is neither hex nor base64 of 8 bytes is reported where it is."""
    lines = OTLP.read_text().splitlines()
    lines[1] = lines[1].replace('"aa11bb22cc33dd44"', '"not-an-id"', 1)
    bad = tmp_path / "bad.otlp.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    error = _error(bad)
    assert error.line == 2 and error.place.endswith(".spanId")
    assert "16 hex digits or the base64 of 8 bytes" in error.expected


def test_otel_wrong_type_is_reported_with_its_json_path(tmp_path: Path) -> None:
    """A span whose name is a number fails with the JSON path of the field."""
    request = json.loads(OTLP.read_text().splitlines()[0])
    request["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["name"] = 7
    bad = tmp_path / "types.otlp.jsonl"
    bad.write_text(json.dumps(request) + "\n")
    error = _error(bad, "otel")
    assert (error.line, error.place) == (1, "$.resourceSpans[0].scopeSpans[0].spans[2].name")


def test_base64_and_hex_ids_mean_the_same_trace(tmp_path: Path) -> None:
    """The same export with its ids in base64 gives the same runs."""
    text = OTLP.read_text()
    for hex_id in ("5b8efff798038103d269b633813fc60c", "aa11bb22cc33dd44"):
        text = text.replace(f'"{hex_id}"', f'"{base64.b64encode(bytes.fromhex(hex_id)).decode()}"')
    encoded = tmp_path / "b64.otlp.jsonl"
    encoded.write_text(text)
    assert read_log_runs(encoded)[0] == read_log_runs(OTLP)[0]


def test_openai_fixture_keeps_malformed_arguments_and_legacy_functions() -> None:
    """Broken JSON arguments are kept raw, function_call pairs with role function by order."""
    first, legacy = read_log_runs(OPENAI)
    refund = first.steps[4]
    assert isinstance(refund, ToolCall) and refund.arguments == {}
    assert refund.raw_arguments == '{"order_id": "A-1001", "amount": 84.99'
    assert first.pairs() == {1: 2, 4: 6, 5: 7}  # call_1 repeats: paired by order
    assert isinstance(first.steps[-1], Output) and first.outcome is not None
    assert first.outcome.stop_reason == "stop" and first.usage is not None
    assert _kinds(legacy) == ["user_input", "tool_call", "tool_result", "reasoning", "output"]
    assert legacy.context == {"system": "Answer order questions."} and legacy.pairs() == {1: 2}


def test_tau_bench_trajectories_are_read_as_they_are() -> None:
    """All 80 real conversations: every call paired within its own run despite repeated ids."""
    runs = read_log_runs(TAU)
    assert len(runs) == 80 and len({r.run_id for r in runs}) == 80
    calls = sum(len(r.tool_calls()) for r in runs)
    assert calls == 380 and sum(len(r.pairs()) for r in runs) == calls
    repeated = next(r for r in runs if r.run_id == "task-29-trial-1")
    ids = [c.call_id for c in repeated.tool_calls()]
    assert len(ids) > len(set(ids))
    for call_index, result_index in repeated.pairs().items():
        call, result = repeated.steps[call_index], repeated.steps[result_index]
        assert isinstance(call, ToolCall) and isinstance(result, ToolResult)
        assert (call.call_id, call.tool) == (result.call_id, result.tool)
    assert all("Airline Agent Policy" in r.context["system"] for r in runs)
    assert sum(bool(r.outcome and r.outcome.success) for r in runs) == 53
    assert runs[0].metadata == {"task_id": 0, "reward": 0.0, "trial": 0}


def test_tau_bench_metrics_count_escalations_only_when_told_how() -> None:
    """Escalation is unknown from the log alone, and known once its tool is named."""
    plain, told = MetricsCounter(), MetricsCounter(["transfer_to_human_agents"])
    for part in read_log(TAU):
        plain.feed(part)
        told.feed(part)
    values = {m.name: m.value for m in plain.metrics().metrics}
    assert values["task success rate"] == pytest.approx(53 / 80)
    assert values["escalation rate"] is None and values["cost per successful run"] is None
    assert values["human correction rate"] is None and values["blocked tool calls"] is None
    escalation = {m.name: m.value for m in told.metrics().metrics}["escalation rate"]
    assert escalation == pytest.approx(27 / 80)


def test_anthropic_blocks_become_steps() -> None:
    """thinking, tool_use, tool_result (with is_error), text, stop_reason and usage."""
    first, second = read_log_runs(ANTHROPIC)
    assert _kinds(first) == ["user_input", "reasoning", "tool_call", "tool_result", "output",
                             "tool_call", "tool_result", "user_input", "output"]
    assert first.pairs() == {2: 3, 5: 6}
    failed = first.steps[6]
    assert isinstance(failed, ToolResult) and failed.error == "payment provider timed out"
    assert failed.tool == "issue_refund"
    assert first.outcome is not None and first.outcome.stop_reason == "end_turn"
    assert first.usage is not None and first.usage.output_tokens == 38
    assert first.context["system"].startswith("You are Harbor Goods'")
    redacted = second.steps[1]
    assert isinstance(redacted, Reasoning) and redacted.content == "[redacted thinking]"
    assert second.run_id == "refund-agent.anthropic-2"  # no id: the file and its line


def test_anthropic_wrong_content_type_names_line_and_path(tmp_path: Path) -> None:
    """A message whose content is a number is refused at its JSON path and line."""
    lines = ANTHROPIC.read_text().splitlines()
    record = json.loads(lines[1])
    record["messages"][0]["content"] = 42
    bad = tmp_path / "bad.anthropic.jsonl"
    bad.write_text(lines[0] + "\n" + json.dumps(record) + "\n")
    error = _error(bad, "anthropic")
    assert error.line == 2 and error.place.startswith("$.messages[0].content")


def test_json_document_errors_find_their_line(tmp_path: Path) -> None:
    """In a pretty-printed array, a bad message is located by path and by line."""
    data = [{"messages": [{"role": "user", "content": "hi"}]},
            {"messages": [{"role": 5, "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    bad = tmp_path / "conversations.json"
    bad.write_text(json.dumps(data, indent=2))
    error = _error(bad, "openai")
    assert error.place == "$[1].messages[0].role"
    assert error.line == 13


@pytest.mark.parametrize(("content", "expected"), [
    ("hello, this is not a log\n", "not a run log"),
    ('{"name": "a config file", "version": 2}\n', "not a run log"),
    ("\x00\x01\x02\xff\xfe binary", "not a run log"),
])
def test_a_file_that_is_not_a_log_is_refused(tmp_path: Path, content: str,
                                             expected: str) -> None:
    """Text, JSON of another kind and binary data are refused as not a run log."""
    path = tmp_path / "notes.txt"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(InvalidInput, match=expected):
        detect_format(path)


def test_native_stream_groups_interleaved_runs_and_round_trips(tmp_path: Path) -> None:
    """Interleaved runs stream as parts, merge back whole, and write_parts round-trips them."""
    lines = NATIVE.read_text().splitlines()
    interleaved = [lines[0], lines[6], lines[1], lines[7], *lines[2:6], *lines[8:]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(interleaved) + "\n")
    runs = merge_parts(read_log(path))
    assert [r.run_id for r in runs][:2] == ["run-7f3a91", "run-7f3a97"]
    assert runs == read_runs(NATIVE)
    out = tmp_path / "out.jsonl"
    write_parts(read_log(OPENAI), out)
    assert read_runs(out) == read_log_runs(OPENAI)


def test_skip_invalid_counts_what_it_leaves_out(tmp_path: Path) -> None:
    """A truncated line and a wrong type are skipped, counted by reason, and the rest read."""
    lines = NATIVE.read_text().splitlines()
    lines[3] = lines[3][:50]
    lines[11] = lines[11].replace('"tool": "issue_refund"', '"tool": 7')
    path = tmp_path / "damaged.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as info:
        list(read_logs([path]))
    assert info.value.line == 4 and "not valid JSON" in info.value.expected
    skips = Skips()
    runs = merge_parts(read_logs([path], skips=skips))
    assert skips.total == 2 and len(runs) == 3
    assert sum(len(r.steps) for r in runs) == len(lines) - 3 - 2
    assert any("path/to" not in line and ":4" in line for line in skips.lines())


def test_agent_filter_stamps_unnamed_runs_and_drops_others() -> None:
    """--agent takes runs naming no agent as the agent's and leaves out other agents' runs."""
    runs = merge_parts(read_logs([OTLP], agent="refund-agent"))
    assert [r.agent for r in runs] == ["refund-agent"] * 3
    assert merge_parts(read_logs([OTLP], agent="billing-agent")) == [
        r for r in merge_parts(read_logs([OTLP], agent="billing-agent")) if r.agent ==
        "billing-agent"]
    assert [r.run_id for r in merge_parts(read_logs([OTLP], agent="billing-agent"))] == [
        "0af7651916cd43dd8448eb211c80319c"]


def test_user_input_of_otel_comes_once_per_turn() -> None:
    """A model call's history repeats the user's message; the run holds it once."""
    run = read_log_runs(OTLP)[0]
    assert sum(isinstance(s, UserInput) for s in run.steps) == 1


@pytest.mark.parametrize("old, new", [
    ('"gen_ai.prompt.1.content", "value": {"stringValue": "Could you refund $12 for one of '
     'the candles in A-1004? It arrived snapped in half."}',
     '"gen_ai.prompt.1.content", "value": {"doubleValue": 1.5}'),
    ('"key": "gen_ai.prompt.0.role"',
     '"key": "gen_ai.completion", "value": {"intValue": "40"}}, {"key": "gen_ai.prompt.0.role"'),
])
def test_otel_older_content_attribute_holding_a_number_is_no_crash(
        tmp_path: Path, old: str, new: str) -> None:
    """An older-named content attribute holding a number (hand-made exporters write them)
    is read as what it is, not a traceback: the run and its tool call are still there."""
    text = OTLP.read_text()
    assert old in text
    bad = tmp_path / "numbers.otlp.jsonl"
    bad.write_text(text.replace(old, new, 1))
    run = read_log_runs(bad)[1]
    assert run.run_id == "0af7651916cd43dd8448eb211c80319c"
    call = next(s for s in run.steps if isinstance(s, ToolCall))
    assert call.tool == "issue_refund" and call.arguments["order_id"] == "A-1004"


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "text-actions"])
def test_a_lone_surrogate_in_a_message_is_an_invalid_record_not_a_crash(
        tmp_path: Path, cli: RunCli, fmt: str) -> None:
    """A user's message holding ``\\ud800`` (a lone surrogate: no character, which the native
    and OTLP readers refuse as JSON) crashed ``ingest`` of a conversation log with a
    serialization traceback; it is now an invalid record naming its line, and
    ``--skip-invalid`` reads the others."""
    other = {"id": "c2", "messages": [{"role": "user", "content": "hello"},
                                      {"role": "assistant", "content": "hi"}]}
    if fmt == "text-actions":
        other["messages"][1] = {"role": "agent", "action": "Final Answer: hi"}
    bad = json.dumps({**other, "id": "c1"}).replace('"hello"', '"hello \\ud800 there"')
    log = tmp_path / "chat.jsonl"
    log.write_text(json.dumps(other) + "\n" + bad + "\n")
    refused = cli("ingest", str(log), "--format", fmt, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "chat.jsonl:2" in refused.stderr and "surrogate" in refused.stderr
    out = tmp_path / "runs.jsonl"
    kept = cli("ingest", str(log), "--format", fmt, "--skip-invalid", "--out", str(out),
               cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert [r.run_id for r in read_log_runs(out)] == ["c2"]
