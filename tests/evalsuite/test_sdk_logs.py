"""SDK objects as teams log them: the real ``openai`` and ``anthropic`` clients run an agent
loop (tool call → tool result → answer) against a local model API, their return values are
dumped with ``model_dump()``/``model_dump_json()`` per call, per conversation, bare or as
stream chunks, and the logs read back as one run per conversation."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from evalsuite import (
    Output,
    Run,
    ToolCall,
    ToolResult,
    UserInput,
    detect_format,
    read_log_runs,
)
from gates import ingest
from gates._cli import main
from tests.sdk_servers import SdkServer

SYSTEM = "You are Harbor Goods' support agent. Refunds go to the original payment method."
ASK = "Refund order A-1001, it arrived cracked."
RESULTS = {"lookup_order": {"order_id": "A-1001", "total": 84.99},
           "issue_refund": {"refund_id": "R-9", "status": "issued"}}
PLAN = [("lookup_order", {"order_id": "A-1001"}),
        ("issue_refund", {"order_id": "A-1001", "amount": 84.99})]
ANSWER = "Your refund of $84.99 is on its way."
TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
         for name in RESULTS]
_IDS = itertools.count(1)  # every answer its own id, as the real APIs give
TAU_EXCERPT = Path(__file__).parent.parent / "data" / "logs" / "tau-bench-airline.excerpt.json"


def _turn(results_so_far: int) -> tuple[str, dict[str, Any]] | None:
    """The scripted agent: the next planned call, or None when it is time to answer."""
    return PLAN[results_so_far] if results_so_far < len(PLAN) else None


def _chat_reply(body: dict[str, Any]) -> dict[str, Any]:
    done = sum(m["role"] == "tool" for m in body["messages"])
    step = _turn(done)
    message: dict[str, Any] = {"role": "assistant", "content": None if step else ANSWER}
    if step:
        message["tool_calls"] = [{"id": f"call_{done}", "type": "function", "function": {
            "name": step[0], "arguments": json.dumps(step[1])}}]
    return {"id": f"chatcmpl-{next(_IDS)}", "object": "chat.completion",
            "created": 1_764_000_000, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if step else "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}


def _chat_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The same answer as a stream: text in pieces, arguments in pieces, usage last."""
    whole = _chat_reply(body)
    message, base = whole["choices"][0]["message"], {k: whole[k] for k in (
        "id", "created", "model")} | {"object": "chat.completion.chunk"}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if message.get("content"):
        text = message["content"]
        deltas += [{"content": text[:10]}, {"content": text[10:]}]
    for call in message.get("tool_calls") or []:
        arguments = call["function"]["arguments"]
        deltas.append({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"],
                                                    "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
                   for part in (arguments[:7], arguments[7:])]
    chunks = [base | {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}
              for d in deltas]
    chunks.append(base | {"choices": [{"index": 0, "delta": {},
                                       "finish_reason": whole["choices"][0]["finish_reason"]}]})
    return [*chunks, base | {"choices": [], "usage": whole["usage"]}]


def _script(path: str, body: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    if path.endswith("/chat/completions"):
        return _chat_chunks(body) if body.get("stream") else _chat_reply(body)
    if path.endswith("/messages"):
        return _anthropic_reply(body)
    return _responses_reply(body)


@pytest.fixture
def server() -> Iterator[SdkServer]:
    """A local model API answering as the scripted refund agent."""
    running = SdkServer(_script)
    yield running
    running.close()


def _openai(server: SdkServer) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
    server.clients.append(client)
    return client


Log = Callable[[dict[str, Any]], None]


def _writer(path: Path) -> Log:
    def log(record: Any) -> None:
        with path.open("a") as handle:
            handle.write(json.dumps(record, default=lambda o: o.model_dump()) + "\n")
    return log


def _chat_loop(client: openai.OpenAI, on_call: Callable[[list[Any], Any], None],
               *, ask: str = ASK) -> list[Any]:
    """An agent loop as the OpenAI cookbook writes it; ``on_call`` logs each call."""
    messages: list[Any] = [{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": ask}]
    while True:
        sent = list(messages)
        completion = client.chat.completions.create(model="gpt-4o", messages=messages,
                                                    tools=TOOLS)  # type: ignore[arg-type]
        message = completion.choices[0].message
        messages.append(message.model_dump())
        on_call(sent, completion)
        if not message.tool_calls:
            return messages
        for call in message.tool_calls:
            assert call.type == "function"
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": json.dumps(RESULTS[call.function.name])})


def _assert_refund_run(run: Run, *, calls: int = 3) -> None:
    """The whole conversation once: input, two calls with their results, one answer."""
    assert [s.kind for s in run.steps] == ["user_input", "tool_call", "tool_result",
                                           "tool_call", "tool_result", "output"]
    first, lookup, found, refund, refunded, answer = run.steps
    assert isinstance(first, UserInput) and first.content == ASK
    assert isinstance(lookup, ToolCall) and lookup.tool == "lookup_order"
    assert lookup.arguments == {"order_id": "A-1001"}
    assert isinstance(refund, ToolCall) and refund.arguments == PLAN[1][1]
    assert isinstance(found, ToolResult) and found.tool == "lookup_order"
    assert found.result == RESULTS["lookup_order"]  # read as the value it is
    assert found.result_text is not None
    assert json.loads(found.result_text) == RESULTS["lookup_order"]  # the text kept as logged
    assert isinstance(refunded, ToolResult) and refunded.tool == "issue_refund"
    assert isinstance(answer, Output) and answer.content == ANSWER
    assert run.pairs() == {1: 2, 3: 4}
    assert run.context["system"] == SYSTEM
    assert run.outcome is not None and run.outcome.stop_reason in ("stop", "end_turn", "completed")
    assert run.usage is not None and run.usage.model_calls == calls


def test_per_call_request_response_records_are_one_run(server: SdkServer,
                                                       tmp_path: Path) -> None:
    """{"request", "response": ChatCompletion.model_dump()} per call: one run, nothing twice."""
    log = tmp_path / "calls.jsonl"
    write = _writer(log)
    ids: list[str] = []

    def record(sent: list[Any], completion: Any) -> None:
        ids.append(completion.id)
        write({"request": {"model": "gpt-4o", "messages": sent},
               "response": completion.model_dump()})

    _chat_loop(_openai(server), record)
    assert detect_format(log) == "openai"
    runs = read_log_runs(log)
    assert len(runs) == 1
    _assert_refund_run(runs[0])
    assert runs[0].run_id == ids[0]  # the first call's response
    assert runs[0].steps[-1].at == datetime.fromtimestamp(1_764_000_000, UTC)  # `created`
    assert runs[0].usage is not None and runs[0].usage.input_tokens == 300


def test_conversation_dump_with_its_response_counts_the_answer_once(server: SdkServer,
                                                                   tmp_path: Path) -> None:
    """The conversation (ending with the answer) and the last ChatCompletion: one answer."""
    log = tmp_path / "conversations.jsonl"
    last: list[Any] = []
    messages = _chat_loop(_openai(server), lambda sent, completion: last.append(completion))
    _writer(log)({"messages": messages, "response": last[-1].model_dump()})
    (run,) = read_log_runs(log)
    _assert_refund_run(run, calls=1)


def test_litellm_style_calls_of_two_sessions_interleaved_are_two_runs(
        server: SdkServer, tmp_path: Path) -> None:
    """{"messages", "response", "metadata": {"session_id"}} per call, two sessions at once."""
    log = tmp_path / "litellm.jsonl"
    write = _writer(log)
    client = _openai(server)
    calls: dict[str, list[tuple[list[Any], Any]]] = {"s-1": [], "s-2": []}
    _chat_loop(client, lambda sent, completion: calls["s-1"].append((sent, completion)))
    _chat_loop(client, lambda sent, completion: calls["s-2"].append((sent, completion)),
               ask="Where is order A-1001?")
    for first, second in zip(calls["s-1"], calls["s-2"], strict=True):
        for session, (sent, completion) in (("s-1", first), ("s-2", second)):
            write({"id": completion.id + session, "model": "gpt-4o", "messages": sent,
                   "response": completion.model_dump(), "metadata": {"session_id": session}})
    one, two = read_log_runs(log)
    assert (one.run_id, two.run_id) == ("s-1", "s-2")
    _assert_refund_run(one)
    assert isinstance(two.steps[0], UserInput) and two.steps[0].content == (
        "Where is order A-1001?")
    assert [s.kind for s in two.steps].count("user_input") == 1


def test_interleaved_conversations_without_ids_are_told_apart_by_their_dialogue(
        server: SdkServer, tmp_path: Path) -> None:
    """Calls naming no session continue the conversation whose dialogue they extend."""
    log = tmp_path / "calls.jsonl"
    client = _openai(server)
    a: list[Any] = []
    b: list[Any] = []
    _chat_loop(client, lambda sent, completion: a.append((sent, completion)))
    _chat_loop(client, lambda sent, completion: b.append((sent, completion)),
               ask="Refund order A-1001, the lid is missing.")
    write = _writer(log)
    for (sent_a, done_a), (sent_b, done_b) in zip(a, b, strict=True):
        write({"messages": sent_a, "response": done_a.model_dump()})
        write({"messages": sent_b, "response": done_b.model_dump()})
    runs = read_log_runs(log)
    assert len(runs) == 2
    _assert_refund_run(runs[0])
    assert runs[1].steps[0] == UserInput(content="Refund order A-1001, the lid is missing.")
    assert len(runs[1].steps) == 6


def test_conversations_logged_whole_keep_their_own_ids(tmp_path: Path) -> None:
    """Two conversations with their own ids stay two runs though one starts as the other."""
    log = tmp_path / "conversations.jsonl"
    first = [{"role": "user", "content": ASK}, {"role": "assistant", "content": "Checking."}]
    later = [*first, {"role": "user", "content": "Thanks"}]
    log.write_text(json.dumps({"id": "conv-1", "messages": first}) + "\n"
                   + json.dumps({"id": "conv-2", "messages": later}) + "\n")
    one, two = read_log_runs(log)
    assert (one.run_id, len(one.steps), two.run_id, len(two.steps)) == ("conv-1", 2, "conv-2", 3)


def test_bare_chat_completion_dumps_are_one_run_until_the_answer(server: SdkServer,
                                                                tmp_path: Path) -> None:
    """completion.model_dump_json() per call: the calls and the answer, in one run."""
    log = tmp_path / "completions.jsonl"
    with log.open("w") as handle:
        for _ in range(2):  # two conversations, one after the other
            _chat_loop(_openai(server), lambda sent, completion: handle.write(
                completion.model_dump_json() + "\n"))
    assert detect_format(log) == "openai"
    runs = read_log_runs(log)
    assert len(runs) == 2
    assert [s.kind for s in runs[0].steps] == ["tool_call", "tool_call", "output"]
    assert runs[0].tool_calls()[1].arguments == PLAN[1][1]
    assert runs[0].final_output() == ANSWER and runs[0].metadata["model"] == (
        "gpt-4o-2024-08-06")


def test_streamed_chunks_make_one_output_and_whole_tool_calls(server: SdkServer,
                                                             tmp_path: Path) -> None:
    """Chunks logged one a line, or a call's chunks beside its request: whole calls, one
    output, usage kept."""
    lines, calls_log = tmp_path / "stream.jsonl", tmp_path / "stream-calls.jsonl"
    write = _writer(calls_log)
    client = _openai(server)
    messages: list[Any] = [{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": ASK}]
    with lines.open("w") as handle:
        while True:
            stream = client.chat.completions.create(
                model="gpt-4o", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                stream=True, stream_options={"include_usage": True})
            chunks = list(stream)
            handle.writelines(chunk.model_dump_json() + "\n" for chunk in chunks)
            write({"request": {"messages": list(messages)},
                   "response": [chunk.model_dump() for chunk in chunks]})
            text, calls = "", dict[int, dict[str, Any]]()
            for choice in (c for chunk in chunks for c in chunk.choices):
                text += choice.delta.content or ""
                for piece in choice.delta.tool_calls or []:
                    call = calls.setdefault(piece.index, {"id": piece.id, "type": "function",
                                                          "function": {"name": "",
                                                                       "arguments": ""}})
                    assert piece.function is not None
                    call["function"]["name"] += piece.function.name or ""
                    call["function"]["arguments"] += piece.function.arguments or ""
            if not calls:
                break
            messages.append({"role": "assistant", "tool_calls": list(calls.values())})
            messages += [{"role": "tool", "tool_call_id": c["id"],
                          "content": json.dumps(RESULTS[c["function"]["name"]])}
                         for c in calls.values()]
    assert text == ANSWER
    (run,) = read_log_runs(lines)
    assert [s.kind for s in run.steps] == ["tool_call", "tool_call", "output"]
    assert [c.arguments for c in run.tool_calls()] == [PLAN[0][1], PLAN[1][1]]
    assert run.final_output() == ANSWER
    assert run.usage is not None and run.usage.output_tokens == 30
    (whole,) = read_log_runs(calls_log)
    _assert_refund_run(whole)


def _anthropic_reply(body: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    done = sum(isinstance(m["content"], list) and any(
        b.get("type") == "tool_result" for b in m["content"]) for m in body["messages"])
    step = _turn(done)
    content: list[dict[str, Any]] = [{"type": "thinking", "thinking": "Check the order.",
                                      "signature": "sig"}]
    if step:
        content.append({"type": "tool_use", "id": f"toolu_{done}", "name": step[0],
                        "input": step[1]})
    else:
        content.append({"type": "text", "text": ANSWER})
    message = {"id": f"msg_{len(body['messages'])}", "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-6", "content": content,
               "stop_reason": "tool_use" if step else "end_turn", "stop_sequence": None,
               "usage": {"input_tokens": 120, "output_tokens": 12}}
    if not body.get("stream"):
        return message
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message | {
        "content": [], "stop_reason": None, "usage": {"input_tokens": 120, "output_tokens": 1}}}]
    for index, block in enumerate(content):
        empty = {"type": block["type"], **({"thinking": "", "signature": ""}
                                           if block["type"] == "thinking" else
                                           {"text": ""} if block["type"] == "text" else
                                           {"id": block["id"], "name": block["name"],
                                            "input": {}})}
        events.append({"type": "content_block_start", "index": index, "content_block": empty})
        if block["type"] == "tool_use":
            text = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in (text[:5], text[5:])]
        elif block["type"] == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]}]
        else:
            deltas = [{"type": "text_delta", "text": p} for p in (ANSWER[:8], ANSWER[8:])]
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                      "stop_sequence": None},
                   "usage": {"output_tokens": 12}})
    return [*events, {"type": "message_stop"}]


def _anthropic_loop(client: anthropic.Anthropic, on_call: Callable[[list[Any], Any], None],
                    *, stream: bool = False) -> None:
    """An agent loop as Anthropic's tool-use guide writes it."""
    messages: list[Any] = [{"role": "user", "content": ASK}]
    while True:
        sent = list(messages)
        if stream:
            events = list(client.messages.create(
                model="claude-sonnet-4-6", max_tokens=1024, system=SYSTEM, messages=messages,
                tools=[{"name": n, "input_schema": {"type": "object"}} for n in RESULTS],
                stream=True))
            on_call(sent, events)
            uses = [e.content_block for e in events if e.type == "content_block_start"
                    and e.content_block.type == "tool_use"]
            content: list[Any] = [{"type": "tool_use", "id": u.id, "name": u.name,
                                   "input": {}} for u in uses]
        else:
            response = client.messages.create(
                model="claude-sonnet-4-6", max_tokens=1024, system=SYSTEM, messages=messages,
                tools=[{"name": n, "input_schema": {"type": "object"}} for n in RESULTS])
            on_call(sent, response)
            content = list(response.content)
            uses = [b for b in response.content if b.type == "tool_use"]
        if not uses:
            return
        messages.append({"role": "assistant", "content": content})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": u.id,
             "content": json.dumps(RESULTS[u.name])} for u in uses]})


def _anthropic(server: SdkServer) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)
    server.clients.append(client)
    return client


def test_anthropic_per_call_records_are_one_run(server: SdkServer, tmp_path: Path) -> None:
    """{"request", "response": Message.model_dump()} per call: one run, thinking kept."""
    log = tmp_path / "anthropic.jsonl"
    write = _writer(log)
    _anthropic_loop(_anthropic(server), lambda sent, response: write({
        "request": {"model": "claude-sonnet-4-6", "system": SYSTEM, "messages": sent},
        "response": response.model_dump()}))
    assert detect_format(log) == "anthropic"
    (run,) = read_log_runs(log)
    thinking = [s for s in run.steps if s.kind == "reasoning"]
    assert len(thinking) == 3
    run = run.model_copy(update={"steps": [s for s in run.steps if s.kind != "reasoning"]})
    _assert_refund_run(run)
    assert run.run_id == "msg_1"


def test_anthropic_bare_messages_and_stream_events_are_read(server: SdkServer,
                                                           tmp_path: Path) -> None:
    """Message.model_dump_json() per call, and a stream's raw events, each one run."""
    bare, events = tmp_path / "messages.jsonl", tmp_path / "events.jsonl"
    with bare.open("w") as handle:
        _anthropic_loop(_anthropic(server), lambda sent, response: handle.write(
            response.model_dump_json() + "\n"))
    with events.open("w") as handle:
        _anthropic_loop(_anthropic(server), lambda sent, streamed: handle.writelines(
            e.model_dump_json() + "\n" for e in streamed), stream=True)
    for log in (bare, events):
        assert detect_format(log) == "anthropic"
        (run,) = read_log_runs(log)
        assert [s.kind for s in run.steps] == ["reasoning", "tool_call", "reasoning",
                                               "tool_call", "reasoning", "output"], log
        assert [c.arguments for c in run.tool_calls()] == [PLAN[0][1], PLAN[1][1]]
        assert run.final_output() == ANSWER
        assert run.outcome is not None and run.outcome.stop_reason == "end_turn"


def _responses_reply(body: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    items = body["input"] if isinstance(body["input"], list) else []
    done = sum(i.get("type") == "function_call_output" for i in items)
    chained = body.get("previous_response_id")
    done += int(chained.rsplit("_", 1)[1]) if chained else 0
    step = _turn(done)
    output: list[dict[str, Any]] = [{"type": "reasoning", "id": f"rs_{done}", "summary": [
        {"type": "summary_text", "text": "Check the order."}]}]
    if step:
        output.append({"type": "function_call", "id": f"fc_{done}", "call_id": f"call_{done}",
                       "name": step[0], "arguments": json.dumps(step[1]),
                       "status": "completed"})
    else:
        output.append({"type": "message", "id": "msg_9", "role": "assistant",
                       "status": "completed", "content": [
                           {"type": "output_text", "text": ANSWER, "annotations": []}]})
    response = {"id": f"resp_{done}", "object": "response", "created_at": 1_764_000_000,
                "model": "gpt-4.1", "status": "completed", "output": output,
                "instructions": body.get("instructions"), "previous_response_id": chained,
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 90, "output_tokens": 9, "total_tokens": 99,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}}}
    if not body.get("stream"):
        return response
    created = response | {"status": "in_progress", "output": [], "usage": None}
    return [{"type": "response.created", "sequence_number": 0, "response": created},
            {"type": "response.completed", "sequence_number": 1, "response": response}]


def _responses_loop(client: openai.OpenAI, on_call: Callable[[dict[str, Any], Any], None],
                    *, stream: bool = False) -> None:
    """An agent loop on the Responses API, chaining each call to the last response."""
    request: dict[str, Any] = {"model": "gpt-4.1", "instructions": SYSTEM, "input": ASK,
                               "tools": [{"type": "function", "name": n,
                                          "parameters": {"type": "object"}} for n in RESULTS]}
    while True:
        if stream:
            events = list(client.responses.create(**request, stream=True))
            on_call(request, events)
            response = events[-1].response
        else:
            response = client.responses.create(**request)
            on_call(request, response)
        calls = [i for i in response.output if i.type == "function_call"]
        if not calls:
            return
        request = {"model": "gpt-4.1", "instructions": SYSTEM,
                   "previous_response_id": response.id,
                   "input": [{"type": "function_call_output", "call_id": c.call_id,
                              "output": json.dumps(RESULTS[c.name])} for c in calls]}


def test_responses_api_calls_chained_by_previous_response_id_are_one_run(
        server: SdkServer, tmp_path: Path) -> None:
    """{"request", "response": Response.model_dump()} per call: input, calls, results, answer."""
    log = tmp_path / "responses.jsonl"
    write = _writer(log)
    _responses_loop(_openai(server), lambda request, response: write(
        {"request": request, "response": response.model_dump()}))
    assert detect_format(log) == "openai-responses"
    (run,) = read_log_runs(log)
    assert [s.kind for s in run.steps].count("reasoning") == 3
    run = run.model_copy(update={"steps": [s for s in run.steps if s.kind != "reasoning"]})
    _assert_refund_run(run)
    assert run.run_id == "resp_0" and run.metadata["model"] == "gpt-4.1"


def test_responses_bare_dumps_and_streams_are_read(server: SdkServer, tmp_path: Path) -> None:
    """Response.model_dump_json() per call, and a stream's events: the answers, chained."""
    bare, events = tmp_path / "responses.jsonl", tmp_path / "events.jsonl"
    with bare.open("w") as handle:
        _responses_loop(_openai(server), lambda request, response: handle.write(
            response.model_dump_json() + "\n"))
    with events.open("w") as handle:
        _responses_loop(_openai(server), lambda request, streamed: handle.writelines(
            e.model_dump_json() + "\n" for e in streamed), stream=True)
    for log in (bare, events):
        assert detect_format(log) == "openai-responses"
        (run,) = read_log_runs(log)
        assert [s.kind for s in run.steps] == ["reasoning", "tool_call", "reasoning",
                                               "tool_call", "reasoning", "output"]
        assert run.tool_calls()[1].arguments == PLAN[1][1]
        assert run.context["system"] == SYSTEM and run.final_output() == ANSWER


def test_tau_bench_excerpt_still_reads_as_conversations() -> None:
    """Three real tau-bench trajectories: one run each, named by task and trial."""
    runs = read_log_runs(TAU_EXCERPT)
    assert [r.run_id for r in runs] == ["task-0-trial-0", "task-29-trial-1", "task-12-trial-3"]
    for run in runs:
        assert "Airline Agent Policy" in run.context["system"]
        assert len(run.pairs()) == len(run.tool_calls())
        assert isinstance(run.steps[0], UserInput)
    assert [r.outcome.success if r.outcome else None for r in runs] == [False, False, True]


@pytest.mark.slow
def test_ingest_reports_one_run_for_a_per_call_log(server: SdkServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`reinstate ingest` reads per-call records as one run and writes it once with --out."""
    log, out = tmp_path / "calls.jsonl", tmp_path / "runs.jsonl"
    write = _writer(log)
    _chat_loop(_openai(server), lambda sent, completion: write(
        {"request": {"model": "gpt-4o", "messages": sent}, "response": completion.model_dump()}))
    assert main(["ingest", str(log), "--out", str(out)]) == 0
    (run,) = read_log_runs(out)
    _assert_refund_run(run)
    assert "openai" in capsys.readouterr().out
    (summary,) = ingest([log]).files  # what the table shows: one run, though three parts
    assert (summary.runs, summary.steps, summary.tool_calls) == (1, 6, 2)


def test_responses_calls_sending_the_whole_history_are_one_run(server: SdkServer,
                                                                tmp_path: Path) -> None:
    """Without previous_response_id the input repeats every earlier item: read once."""
    log = tmp_path / "stateless.jsonl"
    write = _writer(log)
    client = _openai(server)
    history: list[Any] = [{"role": "user", "content": ASK}]
    while True:
        request = {"model": "gpt-4.1", "instructions": SYSTEM, "input": list(history)}
        response = client.responses.create(**request)
        write({"request": request, "response": response.model_dump()})
        history += [item.model_dump() for item in response.output]
        calls = [i for i in response.output if i.type == "function_call"]
        if not calls:
            break
        history += [{"type": "function_call_output", "call_id": c.call_id,
                     "output": json.dumps(RESULTS[c.name])} for c in calls]
    (run,) = read_log_runs(log)
    run = run.model_copy(update={"steps": [s for s in run.steps if s.kind != "reasoning"]})
    _assert_refund_run(run)


def test_a_responses_stream_cut_off_before_its_end_is_still_a_run(tmp_path: Path) -> None:
    """A stream with no completed event is read as the response it started, not dropped."""
    log = tmp_path / "cut.jsonl"
    created = {"id": "resp_7", "object": "response", "status": "in_progress", "output": [],
               "model": "gpt-4.1", "instructions": SYSTEM}
    log.write_text("\n".join(json.dumps(e) for e in (
        {"type": "response.created", "sequence_number": 0, "response": created},
        {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Your"})) + "\n")
    (run,) = read_log_runs(log)
    assert run.run_id == "resp_7" and run.steps == []
    assert run.outcome is not None and run.outcome.stop_reason == "in_progress"


@pytest.mark.slow
def test_a_bad_message_in_a_per_call_log_is_one_line_naming_its_place(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`reinstate ingest` refuses a request message with no known role: file, line, path."""
    log = tmp_path / "calls.jsonl"
    good = {"request": {"messages": [{"role": "user", "content": ASK}]},
            "response": {"object": "chat.completion", "id": "chatcmpl-1", "choices": [
                {"message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}]}}
    bad = {"request": {"messages": [{"role": "robot", "content": ASK}]}, "response": None}
    log.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    assert main(["ingest", str(log)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert "calls.jsonl:2" in error and "$.request.messages[0].role" in error
