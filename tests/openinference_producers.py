"""Real spans from real instrumentations: OpenInference and OpenLLMetry in front of the real
``openai`` client, talking to a local scripted chat server, written as OTLP/JSON.

Each producer runs in its own child process (``python -m tests.openinference_producers``):
the two OpenAI instrumentations patch the same client methods and cannot share a process.
:func:`produce_agents_sdk` runs an agent framework instead: an OpenAI Agents SDK agent
traced by ``openinference-instrumentation-openai-agents``, which turns the SDK's own trace
into OpenInference spans (AGENT, LLM, TOOL).
The spans go through the OpenTelemetry SDK and the OTLP protobuf encoder, then to JSON as
the Collector's ``file`` exporter writes it: one ``ExportTraceServiceRequest`` a line,
trace and span ids in hex.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.chat_server import ChatServer

if TYPE_CHECKING:  # the producers' child processes import no reader
    from evalsuite import Run

SYSTEM = "You are Harbor Goods' support agent. Refunds over 500 USD need a human."
ASK = "Order A-1001 arrived damaged. Refund it to my store credit, please."
THANKS = "Thanks! Also, what is your returns address?"
# The example workspace's harmful call, so its incident's signature finds it here.
REFUND_ARGS = {"order_id": "A-1001", "amount": 1250.0, "currency": "USD",
               "refund_to": "store_credit:C-7731", "reason": "customer request"}
REFUND_RESULT = {"refund_id": "R-88213", "status": "issued"}
ANSWER = "Refund R-88213 is issued: 1250.00 USD to your store credit."
ADDRESS = "Returns go to 12 Quay Street, Harbor City."
TOOLS = [{"type": "function", "function": {
    "name": "issue_refund", "description": "Refund an order.",
    "parameters": {"type": "object", "properties": {
        "order_id": {"type": "string"}, "amount": {"type": "number"},
        "refund_to": {"type": "string"}}, "required": ["order_id", "amount"]}}}]


STEPS = ["user_input", "tool_call", "tool_result", "output", "user_input", "output"]


def assert_the_conversation(run: Run) -> None:
    """``run`` is the refund conversation every producer here traces, step by step: the
    ask, the refund with its exact arguments and its result, the answer, the follow-up and
    its answer, in time order, with the system message as context."""
    from evalsuite import Output, ToolCall, ToolResult, UserInput

    assert [s.kind for s in run.steps] == STEPS
    ask, call, result, answer, thanks, address = run.steps
    assert isinstance(ask, UserInput) and ask.content == ASK
    assert isinstance(call, ToolCall) and (call.tool, call.call_id) == (
        "issue_refund", "call_refund_1")
    assert call.arguments == REFUND_ARGS and call.arguments_logged is not False
    assert isinstance(result, ToolResult) and result.result == REFUND_RESULT
    assert result.call_id == "call_refund_1" and run.pairs() == {1: 2}
    assert isinstance(answer, Output) and answer.content == ANSWER
    assert isinstance(thanks, UserInput) and thanks.content == THANKS
    assert isinstance(address, Output) and address.content == ADDRESS
    times = [s.at for s in run.steps]
    assert None not in times and times == sorted(times)  # type: ignore[type-var]
    assert run.context["system"] == SYSTEM


def scripted_model(body: dict[str, Any]) -> dict[str, Any]:
    """The model: asked for a refund it calls ``issue_refund``, given the tool's answer it
    confirms, and then it answers the next question."""
    last = body["messages"][-1]
    message: dict[str, Any]
    if last["role"] == "tool":
        message = {"role": "assistant", "content": ANSWER}
    elif "Refund" in str(last.get("content")):
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_refund_1", "type": "function",
            "function": {"name": "issue_refund", "arguments": json.dumps(REFUND_ARGS)}}]}
    else:
        message = {"role": "assistant", "content": ADDRESS}
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {"id": f"chatcmpl-{len(body['messages'])}", "object": "chat.completion",
            "created": 1_780_000_000, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 100 + 10 * len(body["messages"]),
                      "completion_tokens": 20, "total_tokens": 130}}


def produce(instrumentation: str, out: Path, *, session: str = "sess-7731",
            tool_spans: bool = False) -> Path:
    """Run one scripted conversation (a refund call, its result, an answer, a follow-up)
    through the real ``openai`` client under ``instrumentation`` (``openinference`` or
    ``openllmetry``) in a child process, against a local chat server; the spans land in
    ``out`` as OTLP/JSON lines. ``tool_spans`` also traces the tool as the app runs it."""
    server = ChatServer(scripted_model)
    try:
        base_url = server.url.removesuffix("/chat/completions")
        args = [sys.executable, "-m", "tests.openinference_producers", instrumentation,
                str(out), base_url, session, "tool-spans" if tool_spans else "no-tool-spans"]
        subprocess.run(args, check=True, cwd=Path(__file__).parent.parent, timeout=120,
                       capture_output=True, text=True)
    finally:
        server.close()
    return out


# With two_refunds the model asks for a second refund in the same answer.
SECOND_ARGS = {**REFUND_ARGS, "order_id": "A-1002", "amount": 40.0}
SECOND_RESULT = {"refund_id": "R-88214", "status": "issued"}
AGENT = "refund-agent"  # the example workspace's agent, so the gate checks its runs


def two_refunds_model(body: dict[str, Any]) -> dict[str, Any]:
    """:func:`scripted_model`, asking for both refunds (A-1001, then A-1002) in one answer."""
    completion = scripted_model(body)
    message = completion["choices"][0]["message"]
    if message.get("tool_calls"):
        message["tool_calls"].append({"id": "call_refund_2", "type": "function", "function": {
            "name": "issue_refund", "arguments": json.dumps(SECOND_ARGS)}})
    return completion


def produce_agents_sdk(out: Path, *, session: str | None = "sess-7731",
                       second_turn: bool = True, two_refunds: bool = False) -> Path:
    """Run the refund conversation as an OpenAI Agents SDK agent (instructions, a
    ``@function_tool`` refund tool, ``Runner.run_sync`` on the ask and, with
    ``second_turn``, on the follow-up with the first turn's items) in a child process, its
    chat-completions model pointed at a local chat server; the spans OpenInference's
    processor makes of the SDK's trace land in ``out`` as OTLP/JSON lines. Each turn is a
    trace of its own; ``session`` (``using_session``) stamps both with one ``session.id``.
    ``two_refunds``: the model asks for two refunds at once, which the SDK runs together."""
    server = ChatServer(two_refunds_model if two_refunds else scripted_model)
    try:
        base_url = server.url.removesuffix("/chat/completions")
        args = [sys.executable, "-m", "tests.openinference_producers", "agents-sdk",
                str(out), base_url, session or "", "two-turns" if second_turn else "one-turn"]
        subprocess.run(args, check=True, cwd=Path(__file__).parent.parent, timeout=120,
                       capture_output=True, text=True)
    finally:
        server.close()
    return out


def _agents_child(out: Path, base_url: str, session: str, second_turn: bool) -> None:
    """The child process: an Agents SDK agent under the OpenInference processor."""
    import os
    from contextlib import nullcontext

    # The SDK's trace must stay on: OpenInference makes its spans in a processor of that
    # trace, so set_tracing_disabled(True) (or this variable) leaves the file empty. What
    # keeps the trace from OpenAI is exclusive_processor: the instrumentor replaces the
    # SDK's processors, its exporter to OpenAI among them, with its own.
    os.environ.pop("OPENAI_AGENTS_DISABLE_TRACING", None)
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
    from openai import AsyncOpenAI
    from openinference.instrumentation import using_session
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "refund-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(_file_exporter(out)))
    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider, exclusive_processor=True)

    @function_tool
    def issue_refund(order_id: str, amount: float, currency: str, refund_to: str,
                     reason: str) -> dict[str, str]:
        """Refund an order."""
        return REFUND_RESULT if order_id == REFUND_ARGS["order_id"] else SECOND_RESULT

    client = AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    agent = Agent(name=AGENT, instructions=SYSTEM, tools=[issue_refund],
                  model=OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client))
    with using_session(session) if session else nullcontext():
        first = Runner.run_sync(agent, ASK)
        if second_turn:
            Runner.run_sync(agent, [*first.to_input_list(), {"role": "user", "content": THANKS}])
    provider.shutdown()


def _file_exporter(out: Path) -> Any:
    """A span exporter appending each export to ``out`` as one OTLP/JSON line, as the
    Collector's file exporter does."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            with out.open("a", encoding="utf-8") as handle:
                handle.write(_otlp_json_lines(spans))
            return SpanExportResult.SUCCESS

    return FileExporter()


def _otlp_json_lines(spans: Sequence[Any]) -> str:
    """Finished SDK spans as one OTLP/JSON export line, ids in hex as the spec says."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = MessageToDict(encode_spans(spans))
    for resource in request.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):  # protobuf's JSON mapping gives base64
                        span[key] = _b64_hex(span[key])
    return json.dumps(request) + "\n"


def _b64_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def _child(instrumentation: str, out: Path, base_url: str, session: str,
           tool_spans: bool) -> None:
    """The child process: instrument, converse, export every span as it ends."""
    import openai
    from opentelemetry import context, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "refund-agent"}))
    if instrumentation == "openllmetry":
        # What traceloop-sdk's span processor does with Traceloop.set_association_properties:
        # stamp every span started in the context with traceloop.association.properties.*.
        # (traceloop-sdk itself cannot be installed beside our pins; the instrumentation is
        # the real one.)
        class Associations(SpanProcessor):
            def on_start(self, span: Any, parent_context: Any = None) -> None:
                found = context.get_value("association_properties") or {}
                for key, value in dict(found).items():  # type: ignore[call-overload]
                    span.set_attribute(f"traceloop.association.properties.{key}", value)

        provider.add_span_processor(Associations())
    provider.add_span_processor(SimpleSpanProcessor(_file_exporter(out)))
    trace.set_tracer_provider(provider)

    if instrumentation == "openinference":
        from openinference.instrumentation import using_session
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        scope: Any = using_session(session)
    else:
        import os

        os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Traceloop

        Traceloop().instrument(tracer_provider=provider)
        scope = _associated({"session_id": session})

    client = openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    tracer = trace.get_tracer("refund-agent")
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": ASK}]
    with scope:
        first = client.chat.completions.create(model="gpt-4o", messages=messages,  # type: ignore[arg-type]
                                               tools=TOOLS)  # type: ignore[arg-type]
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        if tool_spans:
            _traced_tool(tracer, instrumentation, call)
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": json.dumps(REFUND_RESULT)})
        second = client.chat.completions.create(model="gpt-4o", messages=messages,  # type: ignore[arg-type]
                                                tools=TOOLS)  # type: ignore[arg-type]
        messages.append({"role": "assistant", "content": second.choices[0].message.content})
        messages.append({"role": "user", "content": THANKS})
        client.chat.completions.create(model="gpt-4o", messages=messages,  # type: ignore[arg-type]
                                       tools=TOOLS)  # type: ignore[arg-type]
    provider.shutdown()


def _traced_tool(tracer: Any, instrumentation: str, call: Any) -> None:
    """The app running the tool under its own span, in the instrumentation's convention."""
    if instrumentation == "openinference":
        from openinference.instrumentation import OITracer, TraceConfig

        tracer = OITracer(tracer, config=TraceConfig())  # adds the session.id in context
        attributes = {"openinference.span.kind": "TOOL", "tool.name": call.function.name,
                      "tool_call.id": call.id, "input.value": call.function.arguments,
                      "input.mime_type": "application/json",
                      "output.value": json.dumps(REFUND_RESULT),
                      "output.mime_type": "application/json"}
    else:
        attributes = {"traceloop.span.kind": "tool", "traceloop.entity.name": call.function.name,
                      "traceloop.entity.input": json.dumps({"args": [], "kwargs": REFUND_ARGS}),
                      "traceloop.entity.output": json.dumps(REFUND_RESULT)}
    with tracer.start_as_current_span(call.function.name, attributes=attributes):
        pass


class _associated:
    """``Traceloop.set_association_properties`` for the block: the context key its span
    processor reads."""

    def __init__(self, properties: dict[str, str]) -> None:
        self.properties = properties
        self.token: Any = None

    def __enter__(self) -> None:
        from opentelemetry import context

        self.token = context.attach(context.set_value("association_properties",
                                                      self.properties))

    def __exit__(self, *exc: object) -> None:
        from opentelemetry import context

        context.detach(self.token)


if __name__ == "__main__" and sys.argv[1] == "agents-sdk":
    _agents_child(Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "two-turns")
elif __name__ == "__main__":
    _child(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4],
           sys.argv[5] == "tool-spans")
