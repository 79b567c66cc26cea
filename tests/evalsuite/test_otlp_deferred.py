"""OTLP/JSON traces counted without building their step models: ``ingest`` without ``--out``
(deferred steps) says of every log exactly what reading the steps whole says, and refuses
or warns the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from evalsuite import InvalidInput, read_logs
from gates import ingest
from tests.conftest import built_once
from tests.openinference_producers import produce as produce_instrumented
from tests.otel_producers import produce

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"


def _sdk_exports(root: Path) -> None:
    """What the real SDK and instrumentations write, in every content mode and shape."""
    for mode in ("span_only", "event_only", "span_and_event", "legacy", "none"):
        produce(root / mode, mode)
    produce(root / "agent-tool", "span_only", agent_span=True, tool_span=True)
    produce(root / "stream", "span_only", stream=True)
    produce(root / "error", "span_only", agent_span=True, error=True)
    for instrumentation in ("openinference", "openllmetry"):
        for tools in (False, True):
            produce_instrumented(instrumentation, root / f"{instrumentation}-{tools}.jsonl",
                                 tool_spans=tools)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Each export as ``ingest`` is given it: a spans file, with its logs file when the
    mode logged content as events; and the OTLP/JSON log kept under tests/data."""
    root = built_once(tmp_path_factory, "otlp-deferred", _sdk_exports)
    groups = [[DATA / "refund-agent.otlp.jsonl"]]
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        logs = folder / "logs.jsonl"
        groups.append([folder / "spans.jsonl",
                       *([logs] if logs.exists() and logs.stat().st_size else [])])
    groups += [[p] for p in sorted(root.glob("*.jsonl"))]
    return groups


def _summary(paths: list[Path], tmp_path: Path, *, full: bool,
             strict: bool = False) -> dict[str, Any] | str:
    """What ``ingest`` says of ``paths``: each file's sentence and the warnings, or the
    error (``full`` writes the runs out, so every step model is built)."""
    out = tmp_path / "out.jsonl"
    out.unlink(missing_ok=True)
    try:
        done = ingest(paths, strict=strict, out=out if full else None)
    except InvalidInput as exc:
        return str(exc)
    return {"files": [f.understood() for f in done.files], "warnings": done.warnings,
            "times": [(f.first_at, f.last_at) for f in done.files]}


@pytest.mark.slow
def test_every_sdk_export_is_summarised_the_same_counted_or_built(
        exports: list[list[Path]], tmp_path: Path) -> None:
    """For every export the real SDK and instrumentations write, ingest's summary and
    warnings counted from light records equal those from the built step models."""
    for paths in exports:
        for strict in (False, True):
            counted = _summary(paths, tmp_path, full=False, strict=strict)
            built = _summary(paths, tmp_path, full=True, strict=strict)
            assert not DeepDiff(counted, built), (paths, counted, built)


@pytest.mark.slow
def test_deferred_parts_build_the_same_runs_as_parts_read_whole(
        exports: list[list[Path]]) -> None:
    """Parts read with deferred steps build, when their steps are read, the very headers,
    steps and places of parts read whole."""
    for paths in exports:
        assert list(read_logs(paths, defer_steps=True)) == list(read_logs(paths)), paths


@pytest.mark.slow
def test_deferred_parts_give_the_first_and_last_times_of_their_built_steps(
        exports: list[list[Path]]) -> None:
    """A part read with deferred steps gives its first and last step times from its light
    records, equal to those of the step models it builds."""
    checked = 0
    for paths in exports:
        for part in read_logs(paths, defer_steps=True):
            if not part.steps_deferred:
                continue  # a reader that builds its steps at once (OpenInference's)
            span = part.time_range()
            times = [s.at for s in part.steps if s.at is not None]
            assert span == ((min(times), max(times)) if times else None), (paths, part.run_id)
            checked += bool(times)
    assert checked


@pytest.mark.slow
def test_deferred_otlp_steps_are_counted_without_building_step_models(
        exports: list[list[Path]]) -> None:
    """A GenAI trace read with deferred steps hands over records that are not step models,
    with the kinds, tools and call ids of the steps they stand for."""
    paths = [DATA / "refund-agent.otlp.jsonl"]
    deferred = list(read_logs(paths, defer_steps=True))
    whole = list(read_logs(paths))
    records = [r for part in deferred for r in part.records]
    assert records and not any(isinstance(r, BaseModel) for r in records)
    assert [(r.kind, getattr(r, "tool", None), getattr(r, "call_id", None), r.at)
            for r in records] == [(s.kind, getattr(s, "tool", None),
                                   getattr(s, "call_id", None), s.at)
                                  for part in whole for s in part.steps]


@pytest.mark.slow
def test_counting_one_agents_runs_reads_the_headers_that_name_it(
        exports: list[list[Path]]) -> None:
    """Counting one agent's runs (--agent without --out) finds a trace's agent as its
    header would name it, without completing the header. The real export with an agent
    span is refund-agent's run, and holds none of another agent's."""
    (paths,) = [p for p in exports if p[0].parent.name == "agent-tool"]
    assert ingest(paths, agent="refund-agent").files[0].runs == 1
    other = ingest(paths, agent="billing-agent")
    assert other.files[0].runs == 0
    assert other.warnings == [f"{paths[0]}: no runs of agent billing-agent were read"]


TRACE, ROOT = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
IDS = st.one_of(st.sampled_from(["call_1", "call_2", ""]), st.none(), st.integers(0, 2))
TEXT = st.sampled_from(["", " ", "Refund order 42", "null"])
PARTS = st.lists(st.one_of(
    st.builds(lambda c: {"type": "text", "content": c}, TEXT),
    st.builds(lambda c: {"type": "reasoning", "content": c}, TEXT),
    st.builds(lambda i, n, a: {"type": "tool_call", "id": i, "name": n, "arguments": a},
              IDS, st.sampled_from(["issue_refund", "lookup"]),
              st.sampled_from([None, "", "{\"order_id\": \"42\"}", "not json", {"a": 1}, [1]])),
    st.builds(lambda i, r: {"type": "tool_call_response", "id": i, "response": r},
              IDS, st.sampled_from(["ok", "{\"status\": \"done\"}", "", None]))),
    max_size=3)
MESSAGES = st.lists(st.builds(lambda role, parts: {"role": role, "parts": parts},
                              st.sampled_from(["user", "assistant", "system", "tool"]), PARTS),
                    max_size=3)
RESULTS = st.sampled_from(["null", "\"\"", "", " null ", "{\"ok\": true}", "42", "[]", "{bad"])


def _attribute(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


SPAN_ATTRIBUTES = st.fixed_dictionaries({}, optional={
    "gen_ai.input.messages": st.one_of(MESSAGES.map(json.dumps), st.just("{bad")),
    "gen_ai.output.messages": st.one_of(MESSAGES.map(json.dumps), st.just("[")),
    "gen_ai.tool.name": st.sampled_from(["issue_refund", "lookup"]),
    "gen_ai.tool.call.id": st.sampled_from(["call_1", "call_2"]),
    "gen_ai.tool.call.arguments": st.sampled_from(["{\"order_id\": \"42\"}", "{bad",
                                                   "{\"args\": [], \"kwargs\": {\"a\": 1}}"]),
    "gen_ai.tool.call.result": RESULTS,
    "error.type": st.sampled_from(["timeout", ""]),
    "gen_ai.conversation.id": st.sampled_from(["conv-1", "conv-2"]),
    "gen_ai.usage.input_tokens": st.integers(0, 5),
    "gen_ai.system_instructions": st.sampled_from(["[{\"content\": \"Be kind\"}]", "Be kind"]),
    "reinstate.tool.call.blocked": st.booleans(),
    "reinstate.context": st.sampled_from(["{\"customer\": \"C-1\"}", "[]"]),
})
GEN_AI_SPANS = st.lists(st.tuples(
    st.sampled_from(["chat", "execute_tool", "invoke_agent", "text_completion", "other"]),
    SPAN_ATTRIBUTES, st.integers(0, 5), st.integers(0, 5), st.booleans()),
    min_size=1, max_size=4)


def _trace_line(spans: list[tuple[str, dict[str, Any], int, int, bool]], trace: int) -> str:
    """One export line of a trace: the first span its root, the others its children."""
    body = []
    for n, (operation, attributes, start, length, failed) in enumerate(spans):
        span: dict[str, Any] = {
            "traceId": f"{trace:032x}", "spanId": f"{n + 1:016x}",
            "name": f"{operation} x", "startTimeUnixNano": str(1_795_000_000_000_000_000 + start),
            "endTimeUnixNano": str(1_795_000_000_000_000_000 + start + length),
            "attributes": [_attribute("gen_ai.operation.name", operation),
                           *(_attribute(k, v) for k, v in attributes.items())]}
        if n:
            span["parentSpanId"] = f"{1:016x}"
        if failed:
            span["status"] = {"code": 2, "message": "boom"}
        body.append(span)
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": body}]}]})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(traces=st.lists(GEN_AI_SPANS, min_size=1, max_size=3), strict=st.booleans())
def test_any_genai_trace_is_summarised_the_same_counted_or_built(
        tmp_path: Path, traces: list[list[tuple[str, dict[str, Any], int, int, bool]]],
        strict: bool) -> None:
    """Generated GenAI traces (content of every shape, broken JSON, calls with odd ids,
    empty results, sessions across traces) are summarised, warned about and refused the
    same whether their steps are counted from light records or built."""
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(_trace_line(spans, n + 1) + "\n" for n, spans in enumerate(traces)),
                    encoding="utf-8")

    def summary(full: bool) -> dict[str, Any] | str:
        try:
            return _summary([path], tmp_path, full=full, strict=strict)
        except Exception as exc:  # whatever either path raises, the same
            return f"{type(exc).__name__}: {exc}"

    counted, built = summary(False), summary(True)
    assert not DeepDiff(counted, built), (counted, built)


AGENT_SPANS = st.lists(st.tuples(
    st.sampled_from(["chat", "execute_tool", "invoke_agent", "other"]),
    st.fixed_dictionaries({}, optional={
        "gen_ai.agent.name": st.sampled_from(["refund-agent", "billing-agent", ""]),
        "gen_ai.conversation.id": st.sampled_from(["conv-1", "conv-2"]),
        "gen_ai.output.messages": st.sampled_from([
            json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Done"}]}]),
            json.dumps([{"role": "assistant", "parts": [
                {"type": "tool_call", "id": "call_1", "name": "issue_refund",
                 "arguments": {"order_id": "42"}}]}])])}),
    st.integers(0, 5), st.integers(0, 5), st.just(False)), min_size=1, max_size=3)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(traces=st.lists(AGENT_SPANS, min_size=1, max_size=4),
       agent=st.sampled_from(["refund-agent", "billing-agent"]))
# Handed over from another agent, then a trace naming none: the agent's own.
@example(traces=[[("chat", {"gen_ai.agent.name": name, "gen_ai.conversation.id": "conv-2"},
                   0, 0, False)] for name in ("refund-agent", "billing-agent")]
         + [[("chat", {"gen_ai.conversation.id": "conv-2"}, 0, 0, False)]],
         agent="billing-agent")
def test_one_agents_runs_are_read_the_same_without_their_headers(
        tmp_path: Path, traces: list[list[tuple[str, dict[str, Any], int, int, bool]]],
        agent: str) -> None:
    """Filtered by agent (traces naming it, another, an empty name or none, sessions
    mixing them), OTLP parts read without headers are the runs, ids, steps and places of
    parts read whole, their headers giving the same agent (stamped when none) and start;
    read with deferred headers, they are the parts read whole, headers included."""
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(_trace_line(spans, n + 1) + "\n" for n, spans in enumerate(traces)),
                    encoding="utf-8")
    whole = list(read_logs([path], agent=agent))
    light = list(read_logs([path], agent=agent, defer_steps=True, headers=False))

    def read(parts: list[Any]) -> list[Any]:
        return [(p.run_id, p.places, [s.model_dump() for s in p.steps], p.header.agent,
                 p.header.started_at) for p in parts]

    assert read(light) == read(whole)
    assert list(read_logs([path], agent=agent, defer_steps=True)) == whole

    def named(spans: list[tuple[str, dict[str, Any], int, int, bool]]) -> str | None:
        """A trace's agent: the first name on its agent spans, then on any, in time order."""
        ordered = sorted(spans, key=lambda span: (span[2], span[2] + span[3]))
        return next((span[1]["gen_ai.agent.name"]
                     for span in [*(s for s in ordered if s[0] == "invoke_agent"), *ordered]
                     if span[1].get("gen_ai.agent.name")), None)

    # A part naming an agent is that agent's; one naming none follows the last part of its
    # run that named one (the agent's own when none did): a run handed over and back.
    expected, owner = [], {}
    for part in read_logs([path], defer_steps=True, headers=False):  # every run, unfiltered
        name = named(traces[int(str(part.place).split()[1]) - 1])  # one trace a line
        if name is not None:
            owner[part.run_id] = name
        if owner.get(part.run_id, agent) == agent:
            expected.append((part.run_id, name or agent))
    assert [(p.run_id, p.header.agent) for p in light] == expected
