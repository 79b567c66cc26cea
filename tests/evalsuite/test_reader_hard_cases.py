"""The log readers on what real instrumentations and SDKs write in the harder cases: several
choices, Responses API items, repeated tool-call ids, export lines written twice, failed
model calls. The logs come from the real libraries (tests/scenario_producers.py,
tests/sdk_servers.py); what comes out is read through ``read_logs`` and ``reinstate ingest``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from evalsuite import InvalidInput, Run, merge_parts, read_logs
from tests.conftest import RunCli
from tests.helpers import as_another_session
from tests.scenario_producers import ANSWER, HARM, LOOKUP, REFUSAL, RESULTS, TURNS, produce
from tests.sdk_servers import SdkServer

PRODUCERS = [("v2", "span_only"), ("v2", "event_only"), ("oi", None), ("ll", None)]


def _runs(folder: Path) -> list[Run]:
    files = [f for f in (folder / "spans.jsonl", folder / "logs.jsonl") if f.stat().st_size]
    return merge_parts(read_logs(files))


def _calls(run: Run) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(s.tool, s.call_id, s.arguments) for s in run.steps if s.kind == "tool_call"]


def _results(run: Run) -> list[tuple[str | None, Any]]:
    return [(s.call_id, s.result) for s in run.steps if s.kind == "tool_result"]


def _two_choices(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The choices of an ``n=2`` call: first a refusal and the refund call; once the call's
    result is sent back, the answer alone."""
    if body["messages"][-1]["role"] == "tool":
        return [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                 "finish_reason": "stop"}]
    return [{"index": 0, "message": {"role": "assistant", "content": REFUSAL},
             "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_n1", "type": "function", "function": {
                    "name": "issue_refund", "arguments": json.dumps(HARM)}}]},
             "finish_reason": "tool_calls"}]


@pytest.mark.parametrize(("instrumentation", "mode"), PRODUCERS)
def test_the_choice_the_agent_took_is_read(tmp_path: Path, instrumentation: str,
                                           mode: str | None) -> None:
    """n=2: the agent ran the refund call of choice 1; the next call's history shows it, so
    that choice is read (the call with its result), and the refusal it did not take is not."""
    (run,) = _runs(produce(instrumentation, "n2", tmp_path, mode))
    assert _calls(run) == [("issue_refund", "call_n1", HARM)]
    assert _results(run) == [("call_n1", RESULTS["issue_refund"])]
    assert [s.content for s in run.steps if s.kind == "output"] == [ANSWER]
    assert "choices" not in run.metadata


@pytest.mark.parametrize("stream", [False, True])
def test_choices_no_later_call_shows_are_all_kept_and_said(tmp_path: Path, cli: RunCli,
                                                           stream: bool) -> None:
    """SDK dumps of a call with two choices: nothing in the record says which the agent took,
    so both are read and the run says so; the next call continues the same run, without the
    choice it sends back read twice. Streamed, the chunk lines of the two choices take turns
    and are still two answers (the refusal, the refund call), not choice 0 alone."""
    def model(path: str, body: dict[str, Any]) -> Any:
        completion = {"id": f"chatcmpl-{len(body['messages'])}", "object": "chat.completion",
                      "created": 1_764_000_000, "model": "gpt-4o",
                      "choices": _two_choices(body)}
        return _interleaved_chunks(completion) if stream else completion

    server = SdkServer(model)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
    server.clients.append(client)
    per_call, bare = tmp_path / "per_call.jsonl", tmp_path / "bare.jsonl"
    messages: list[Any] = [{"role": "system", "content": "You refund."},
                           {"role": "user", "content": "Refund order A-1001."}]
    options: dict[str, Any] = {"n": 2}
    while True:
        sent = list(messages)
        if stream:
            chunks = list(client.chat.completions.create(model="gpt-4o", messages=messages,
                                                         stream=True, **options))
            response: Any = [c.model_dump() for c in chunks]
            lines = [c.model_dump_json() + "\n" for c in chunks]
        else:
            reply = client.chat.completions.create(model="gpt-4o", messages=messages, **options)
            response, lines = reply.model_dump(), [reply.model_dump_json() + "\n"]
        with per_call.open("a") as out:
            out.write(json.dumps({"request": {"messages": sent}, "response": response}) + "\n")
        with bare.open("a") as out:
            out.writelines(lines)
        options = {}
        if sent[-1]["role"] == "tool":
            break
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_n1", "type": "function",
             "function": {"name": "issue_refund", "arguments": json.dumps(HARM)}}]})
        messages.append({"role": "tool", "tool_call_id": "call_n1",
                         "content": json.dumps(RESULTS["issue_refund"])})
    server.close()
    for log in (per_call, bare):
        (run,) = merge_parts(read_logs([log]))
        assert _calls(run) == [("issue_refund", "call_n1", HARM)], log.name
        assert [s.content for s in run.steps if s.kind == "output"] == [REFUSAL, ANSWER]
        assert "2 choices" in run.metadata["choices"][0], log.name
    (run,) = merge_parts(read_logs([per_call]))
    assert _results(run) == [("call_n1", RESULTS["issue_refund"])]
    assert [s.kind for s in run.steps].count("user_input") == 1
    result = cli("ingest", str(per_call), cwd=tmp_path)
    assert "1 run, 5 steps" in result.stdout


def _interleaved_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """A completion of several choices as a stream sends it: each choice's deltas by its
    index, the choices' chunks taking turns, each finishing on its own."""
    base = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"}
    per_choice = []
    for choice in completion["choices"]:
        message, deltas = choice["message"], [{"role": "assistant", "content": ""}]
        if message.get("content"):
            deltas += [{"content": message["content"][:5]}, {"content": message["content"][5:]}]
        for n, call in enumerate(message.get("tool_calls") or []):
            arguments = call["function"]["arguments"]
            deltas += [{"tool_calls": [{"index": n, "id": call["id"], "type": "function",
                                        "function": {"name": call["function"]["name"],
                                                     "arguments": arguments[:9]}}]},
                       {"tool_calls": [{"index": n, "function": {"arguments": arguments[9:]}}]}]
        chunks = [{"index": choice["index"], "delta": d, "finish_reason": None} for d in deltas]
        chunks.append({"index": choice["index"], "delta": {},
                       "finish_reason": choice["finish_reason"]})
        per_choice.append(chunks)
    turns = max(len(c) for c in per_choice)
    return [base | {"choices": [chunks[t]]} for t in range(turns)
            for chunks in per_choice if t < len(chunks)]


@pytest.mark.parametrize("instrumentation", ["oi"])
def test_every_output_item_of_a_response_is_read(tmp_path: Path, instrumentation: str) -> None:
    """OpenInference logs one output message per Responses item: the reasoning and both
    parallel function calls are read, each with its result."""
    (run,) = _runs(produce(instrumentation, "responses", tmp_path, None))
    assert [s.kind for s in run.steps] == ["user_input", "reasoning", "tool_call", "tool_call",
                                           "tool_result", "tool_result", "output"]
    assert _calls(run) == [("lookup_order", "call_look", LOOKUP),
                           ("issue_refund", "call_refund", HARM)]
    assert _results(run) == [("call_look", RESULTS["lookup_order"]),
                             ("call_refund", RESULTS["issue_refund"])]


@pytest.mark.parametrize(("instrumentation", "mode"), PRODUCERS)
def test_repeated_ids_pair_each_result_with_its_own_call(tmp_path: Path, instrumentation: str,
                                                         mode: str | None) -> None:
    """Both calls are ``call_0``: each gets its own result, in order, not the first one's
    result again from the history."""
    (run,) = _runs(produce(instrumentation, "dupids", tmp_path, mode))
    assert _calls(run) == [("lookup_order", "call_0", LOOKUP), ("issue_refund", "call_0", HARM)]
    assert [(s.kind, getattr(s, "tool", None)) for s in run.steps
            if s.kind in ("tool_call", "tool_result")] == [
        ("tool_call", "lookup_order"), ("tool_result", "lookup_order"),
        ("tool_call", "issue_refund"), ("tool_result", "issue_refund")]
    assert _results(run) == [("call_0", RESULTS["lookup_order"]),
                             ("call_0", RESULTS["issue_refund"])]


@pytest.mark.parametrize(("instrumentation", "mode"), [("v2", "span_only"), ("ll", None)])
def test_ids_repeated_across_turns_of_a_conversation(tmp_path: Path, instrumentation: str,
                                                     mode: str | None) -> None:
    """Two turns joined by ``gen_ai.conversation.id``, the refund call ``call_1`` in both:
    the second turn's call gets its own result, never a copy of the first turn's."""
    (run,) = _runs(produce(instrumentation, "turns", tmp_path, mode))
    calls = _calls(run)
    assert [(c[1], c[2]["order_id"]) for c in calls] == [("call_1", "A-1"), ("call_1", "A-2")]
    assert [s.kind for s in run.steps] == ["user_input", "tool_call", "tool_result", "output"] * 2
    assert _results(run) == [("call_1", RESULTS["issue_refund"])] * 2
    first, second = [i for i, s in enumerate(run.steps) if s.kind == "tool_result"]
    assert run.steps[first].at >= run.steps[1].at and run.steps[second].at >= run.steps[5].at


def _by_trace(lines: list[str]) -> list[list[str]]:
    """An OTLP export file's lines grouped by the trace their spans are of, in file order."""
    traces: dict[str, list[str]] = {}
    for line in lines:
        (trace_id,) = {span["traceId"] for resource in json.loads(line)["resourceSpans"]
                       for scope in resource["scopeSpans"] for span in scope["spans"]}
        traces.setdefault(trace_id, []).append(line)
    return list(traces.values())


@pytest.mark.parametrize(("instrumentation", "mode"), PRODUCERS)
def test_a_turn_exported_after_a_later_turn_reads_in_time_order(
        tmp_path: Path, instrumentation: str, mode: str | None) -> None:
    """Regression: the second turn's trace exported before the first's (each trace's lines
    in order, or every line reversed) made the first turn's call, result and answer come
    after the second turn's, and its user input carry the second turn's time. The run now
    reads exactly as the file in order does: each turn's input, call, result and answer, in
    time order."""
    folder = produce(instrumentation, "turns", tmp_path, mode)
    spans = folder / "spans.jsonl"
    lines = spans.read_text().splitlines(keepends=True)
    (ordered,) = _runs(folder)
    first, second = _by_trace(lines)
    for shuffled in ([*second, *first], lines[::-1]):
        spans.write_text("".join(shuffled))
        (run,) = _runs(folder)
        assert [(s.kind, getattr(s, "tool", None), getattr(s, "arguments", None),
                 getattr(s, "content", None)) for s in run.steps] == [
            step for number, text in enumerate(TURNS, 1) for step in (
                ("user_input", None, None, text),
                ("tool_call", "issue_refund", {**HARM, "order_id": f"A-{number}"}, None),
                ("tool_result", "issue_refund", None, None),
                ("output", None, None, ANSWER))]
        assert _results(run) == [("call_1", RESULTS["issue_refund"])] * 2
        assert run.model_dump() == ordered.model_dump()


def test_a_session_waits_for_late_traces_only_while_the_file_is_near_it(tmp_path: Path) -> None:
    """A session's traces wait for an earlier one exported late only until the file's times
    are a minute past them, so runs still stream: a day's log whose last line is cut off
    gives its first conversation, whole and in order, before the error."""
    folder = produce("v2", "turns", tmp_path, "span_only")
    lines = (folder / "spans.jsonl").read_text().splitlines(keepends=True)
    log = tmp_path / "day.jsonl"
    later = (line for number in (2, 3, 4) for line in as_another_session(
        lines, number, "gen_ai.conversation.id", f"conv-{number}", number * 600 * 10**9))
    log.write_text("".join([*lines, *later, '{"resourceSpans": [\n']))
    parts = read_logs([log])
    first = [next(parts), next(parts)]
    assert [p.run_id for p in first] == ["conv-1", "conv-1"]
    assert [[s.kind for s in p.steps] for p in first] == [
        ["user_input", "tool_call", "tool_result", "output"]] * 2
    with pytest.raises(InvalidInput, match=r"day\.jsonl"):
        list(parts)


def test_an_export_line_written_twice_is_read_once(tmp_path: Path, cli: RunCli) -> None:
    """An exporter's retry writes lines again: each span is one span; a span logged twice
    with different content is kept twice and the summary says so."""
    folder = produce("v2", "dupids", tmp_path / "src", "span_only")
    lines = (folder / "spans.jsonl").read_text().splitlines()
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text("\n".join([lines[0], *lines, *lines[-2:]]) + "\n")
    (once,) = _runs(folder)
    (again,) = merge_parts(read_logs([doubled]))
    assert [s.model_dump() for s in again.steps] == [s.model_dump() for s in once.steps]
    assert "1 run, 6 steps" in cli("ingest", str(doubled), cwd=tmp_path).stdout
    changed = tmp_path / "changed.jsonl"
    other = lines[0].replace("call_0", "call_9")
    assert other != lines[0]
    changed.write_text("\n".join([lines[0], other, *lines[1:]]) + "\n")
    result = cli("ingest", "--strict", str(changed), cwd=tmp_path)
    assert result.returncode == 2 and "different content" in result.stdout + result.stderr


@pytest.mark.parametrize(("instrumentation", "mode"), [("v2", "span_only"), ("oi", None),
                                                       ("ll", None)])
def test_a_failed_model_call_is_kept_in_the_errors(tmp_path: Path, instrumentation: str,
                                                   mode: str | None) -> None:
    """The first model call fails with HTTP 500 and is retried: every reader keeps it."""
    (run,) = _runs(produce(instrumentation, "err500", tmp_path, mode))
    errors = run.metadata.get("errors")
    assert errors is not None and len(errors) == 1, errors
    assert _calls(run) == [("issue_refund", "call_1", HARM)]


@pytest.mark.parametrize(("instrumentation", "mode"), [("v2", "span_only"), ("oi", None)])
def test_spans_exported_after_their_root_join_their_trace(tmp_path: Path, instrumentation: str,
                                                          mode: str | None) -> None:
    """A span that ends after its root (a stream consumed after the handler returned) is
    exported after it; a trace split over two files may be given second file first. Either
    way the trace reads as it does in order: no user input twice, no result lost."""
    folder = produce(instrumentation, "dupids", tmp_path / "src", mode)
    lines = (folder / "spans.jsonl").read_text().splitlines()
    (ordered,) = _runs(folder)
    expected = [s.model_dump() for s in ordered.steps]
    assert len(lines) > 2 and [s.kind for s in ordered.steps].count("tool_result") == 2
    root_first = tmp_path / "root-first.jsonl"  # the root line, then every other line
    root_first.write_text("\n".join([lines[-1], *lines[:-1]]) + "\n")
    (late,) = merge_parts(read_logs([root_first]))
    assert [s.model_dump() for s in late.steps] == expected
    first, second = tmp_path / "part-1.jsonl", tmp_path / "part-2.jsonl"
    first.write_text("\n".join(lines[:2]) + "\n")
    second.write_text("\n".join(lines[2:]) + "\n")
    (split,) = merge_parts(read_logs([second, first]))
    assert [s.model_dump() for s in split.steps] == expected


def _per_call_lines(created: list[int], session: str | None = None) -> list[str]:
    """One refund conversation through the real ``openai`` client, logged per call as
    teams do (request messages beside ``response.model_dump()``, with ``session``
    LiteLLM-style in ``metadata.session_id``); the server answers each call at the next of
    ``created`` (Unix seconds)."""
    answers = iter(created)

    def model(path: str, body: dict[str, Any]) -> dict[str, Any]:
        first = body["messages"][-1]["role"] != "tool"
        message: dict[str, Any] = {"role": "assistant", "content": ANSWER} if not first else {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": "call_r1", "type": "function",
                "function": {"name": "issue_refund", "arguments": json.dumps(HARM)}}]}
        return {"id": f"chatcmpl-{len(body['messages'])}", "object": "chat.completion",
                "created": next(answers), "model": "gpt-4o",
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "stop" if not first else "tool_calls"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}

    server = SdkServer(model)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
    server.clients.append(client)
    messages: list[Any] = [{"role": "system", "content": "You refund."},
                           {"role": "user", "content": "Refund order A-1001."}]
    lines = []
    while True:
        sent = list(messages)
        reply = client.chat.completions.create(model="gpt-4o", messages=messages)
        record: dict[str, Any] = {"request": {"messages": sent}, "response": reply.model_dump()}
        if session is not None:
            record["metadata"] = {"session_id": session}
        lines.append(json.dumps(record) + "\n")
        chosen = reply.choices[0].message
        if not chosen.tool_calls:
            break
        messages.append(chosen.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": "call_r1",
                         "content": json.dumps(RESULTS["issue_refund"])})
    server.close()
    return lines


def test_a_call_logged_after_a_later_one_of_its_run_adds_nothing(tmp_path: Path,
                                                                cli: RunCli) -> None:
    """Per-call lines shipped out of order (the second call's line first): the first call's
    line, answered earlier and wholly inside the run's dialogue, is that run's, not a second
    run repeating the input and the refund call; its usage still counts. The same
    conversation run again later, or answered in the same second, stays a run of its own."""
    first, second = _per_call_lines([1_764_000_000, 1_764_000_005])
    log = tmp_path / "shuffled.jsonl"
    log.write_text(second + first)
    (run,) = merge_parts(read_logs([log]))
    assert [s.kind for s in run.steps] == [
        "user_input", "tool_call", "tool_result", "output"]
    assert _calls(run) == [("issue_refund", "call_r1", HARM)]
    assert run.usage is not None and run.usage.output_tokens == 20
    assert "1 run, 4 steps" in cli("ingest", str(log), cwd=tmp_path).stdout
    again = _per_call_lines([1_764_000_100, 1_764_000_105])
    log.write_text(second + first + "".join(again))
    assert [len(r.steps) for r in merge_parts(read_logs([log]))] == [4, 4]
    tied = _per_call_lines([1_764_000_000, 1_764_000_000])
    log.write_text(tied[1] + tied[0])
    assert [len(r.steps) for r in merge_parts(read_logs([log]))] == [4, 2]


def test_a_call_of_a_named_session_logged_after_a_later_one_adds_nothing(
        tmp_path: Path, cli: RunCli) -> None:
    """Regression: per-call lines naming their session (``metadata.session_id``), the second
    call's line first: the first call's refund call was appended again after the answer, at
    its own earlier time. Its whole dialogue is already the run's and answered earlier, so
    it adds no steps (its usage still counts) and the run is in time order. Answered in the
    same second it still adds its answer again: a retried call is evidence too."""
    first, second = _per_call_lines([1_764_000_000, 1_764_000_005], session="s-1")
    log = tmp_path / "shuffled.jsonl"
    log.write_text(second + first)
    (run,) = merge_parts(read_logs([log]))
    assert run.run_id == "s-1"
    assert [(s.kind, getattr(s, "tool", None)) for s in run.steps] == [
        ("user_input", None), ("tool_call", "issue_refund"), ("tool_result", "issue_refund"),
        ("output", None)]
    assert _calls(run) == [("issue_refund", "call_r1", HARM)]
    assert run.usage is not None and run.usage.output_tokens == 20
    assert "1 run, 4 steps" in cli("ingest", str(log), cwd=tmp_path).stdout
    tied = _per_call_lines([1_764_000_000, 1_764_000_000], session="s-1")
    log.write_text(tied[1] + tied[0])
    (run,) = merge_parts(read_logs([log]))
    assert [s.kind for s in run.steps] == [
        "user_input", "tool_call", "tool_result", "output", "tool_call"]
