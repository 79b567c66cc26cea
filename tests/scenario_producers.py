"""Real spans for the readers' harder cases: a real ``openai`` client under a real
instrumentation (``v2``: opentelemetry-instrumentation-openai-v2, ``oi``: OpenInference,
``ll``: OpenLLMetry) against the local scripted servers of ``tests/chat_server.py`` and
``tests/sdk_servers.py``, written as OTLP/JSON lines as in ``tests/otel_producers.py``.

Scenarios (the truth each test checks against is in the constants below):

- ``n2``: the first call asks for two choices, a refusal (choice 0) and the harmful refund
  call (choice 1); the agent goes on with choice 1, runs it and sends its result back.
- ``dupids``: two calls one after the other under the same id ``call_0`` (some
  OpenAI-compatible servers answer so), then an answer.
- ``turns``: two user turns of one conversation, each its own trace under a root span
  carrying ``gen_ai.conversation.id``, the refund call ``call_1`` in both.
- ``err500``: the first model call fails with HTTP 500, the retry works.
- ``responses`` (``oi`` only): the Responses API; the first answer is a reasoning item and
  two function calls, the second the text.

A child process each (``python -m tests.scenario_producers INSTR SCENARIO FOLDER``): an
instrumentation reads its settings once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "You are the refund agent."
USER = "Refund order A-1001, please."
REFUSAL = "I cannot refund that."
HARM = {"order_id": "A-1001", "amount": 1250.0, "currency": "USD",
        "refund_to": "store_credit:C-7731", "reason": "customer request"}
LOOKUP = {"order_id": "A-1001"}
RESULTS = {"lookup_order": {"order_id": "A-1001", "total": 84.99},
           "issue_refund": {"refund_id": "R-A-1001", "status": "issued"}}
ANSWER = "Refund issued."
TURNS = ("Refund my order 1.", "Refund my order 2.")


def produce(instrumentation: str, scenario: str, folder: Path,
            mode: str | None = "span_only") -> Path:
    """Run ``scenario`` under ``instrumentation`` (v2 in content ``mode``) in a child
    process; the spans land in ``folder/spans.jsonl``, log events in ``folder/logs.jsonl``."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OTEL_") and k != "TRACELOOP_TRACE_CONTENT"}
    if instrumentation == "v2" and mode is not None:
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = mode
    subprocess.run([sys.executable, "-m", "tests.scenario_producers", instrumentation,
                    scenario, str(folder)], cwd=ROOT, env=env, check=True, timeout=120)
    return folder


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


def _completion(body: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": f"chatcmpl-{len(body['messages'])}", "object": "chat.completion",
            "created": 1_764_000_000, "model": "gpt-4o-mini", "choices": choices,
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}


def _model(scenario: str) -> Any:
    def model(body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        asked = sum(m["role"] == "assistant" for m in messages)
        message: dict[str, Any] = {"role": "assistant", "content": ANSWER}
        if scenario == "n2" and asked == 0:
            return _completion(body, [
                {"index": 0, "message": {"role": "assistant", "content": REFUSAL},
                 "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [
                    _call("call_n1", "issue_refund", HARM)]}, "finish_reason": "tool_calls"}])
        if scenario == "dupids" and asked < 2:
            name, arguments = ("lookup_order", LOOKUP) if asked == 0 else ("issue_refund", HARM)
            message = {"role": "assistant", "content": None,
                       "tool_calls": [_call("call_0", name, arguments)]}
        elif scenario == "turns" and messages[-1]["role"] == "user":
            number = TURNS.index(messages[-1]["content"]) + 1
            message = {"role": "assistant", "content": None, "tool_calls": [
                _call("call_1", "issue_refund", {**HARM, "order_id": f"A-{number}"})]}
        elif scenario == "err500" and asked == 0:
            message = {"role": "assistant", "content": None,
                       "tool_calls": [_call("call_1", "issue_refund", HARM)]}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return _completion(body, [{"index": 0, "message": message, "finish_reason": finish}])
    return model


def _responses(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The Responses API model: reasoning and two function calls, then the answer."""
    items = body["input"] if isinstance(body["input"], list) else []
    if not any(i.get("type") == "function_call_output" for i in items):
        output: list[dict[str, Any]] = [
            {"type": "reasoning", "id": "rs_1",
             "summary": [{"type": "summary_text", "text": "The customer wants a refund."}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_look",
             "name": "lookup_order", "arguments": json.dumps(LOOKUP), "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_refund",
             "name": "issue_refund", "arguments": json.dumps(HARM), "status": "completed"}]
    else:
        output = [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}]
    return {"id": f"resp_{len(items)}", "object": "response", "created_at": 1_764_000_000,
            "model": "gpt-4.1", "status": "completed", "output": output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 90, "output_tokens": 9, "total_tokens": 99,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def _chat(client: Any, scenario: str, tracer: Any) -> None:
    import openai
    from opentelemetry.trace import SpanKind

    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
             for name in ("lookup_order", "issue_refund")]

    def loop(messages: list[dict[str, Any]], first: dict[str, Any]) -> None:
        options = dict(first)
        while True:
            try:
                reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                                       tools=tools, **options)
            except openai.APIStatusError:
                continue  # the app retries
            options = {}
            # n=2: the agent goes on with the last choice (the refund call)
            message = reply.choices[-1].message.model_dump(exclude_none=True)
            messages.append(message)
            if not message.get("tool_calls"):
                return
            for call in message["tool_calls"]:
                messages.append({"role": "tool", "tool_call_id": call["id"], "content":
                                 json.dumps(RESULTS[call["function"]["name"]])})

    if scenario == "turns":
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
        for text in TURNS:
            with tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER, attributes={
                    "gen_ai.conversation.id": "conv-1"}):
                messages.append({"role": "user", "content": text})
                loop(messages, {})
        return
    with tracer.start_as_current_span("POST /refund", kind=SpanKind.SERVER):
        loop([{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
             {"n": 2} if scenario == "n2" else {})


def _responses_agent(client: Any, tracer: Any) -> None:
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}}
             for n in ("lookup_order", "issue_refund")]
    request: dict[str, Any] = {"model": "gpt-4.1", "instructions": SYSTEM, "input": USER,
                               "tools": tools}
    with tracer.start_as_current_span("POST /refund"):
        while True:
            response = client.responses.create(**request)
            calls = [i for i in response.output if i.type == "function_call"]
            if not calls:
                return
            request = {"model": "gpt-4.1", "instructions": SYSTEM, "tools": tools,
                       "previous_response_id": response.id,
                       "input": [{"type": "function_call_output", "call_id": c.call_id,
                                  "output": json.dumps(RESULTS[c.name])} for c in calls]}


def main() -> None:
    """The child: instrument, run the scenario, export spans and logs as OTLP/JSON lines."""
    instrumentation, scenario, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    from opentelemetry import trace

    from tests.chat_server import ChatServer
    from tests.otel_producers import exported_to
    from tests.sdk_servers import SdkServer

    with exported_to(folder, {"service.name": "refund-agent"}) as (provider, logger_provider):
        if instrumentation == "v2":
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
            OpenAIInstrumentor().instrument(tracer_provider=provider,
                                            logger_provider=logger_provider)
        elif instrumentation == "oi":
            from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference
            OpenInference().instrument(tracer_provider=provider)
        else:
            os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetry
            OpenLLMetry().instrument(tracer_provider=provider)
        import openai

        tracer = trace.get_tracer("refund-agent")
        if scenario == "responses":
            sdk = SdkServer(_responses)
            client = openai.OpenAI(base_url=sdk.base_url + "/v1", api_key="k", max_retries=0)
            sdk.clients.append(client)
            _responses_agent(client, tracer)
            sdk.close()
        else:
            chat = ChatServer(_model(scenario))
            if scenario == "err500":
                chat.fail_first = [500]
            client = openai.OpenAI(base_url=chat.url.removesuffix("/chat/completions"),
                                   api_key="k", max_retries=0)
            _chat(client, scenario, tracer)
            chat.close()


if __name__ == "__main__":
    main()
