"""Real OpenTelemetry GenAI spans and logs, as the Collector's file exporter writes them.

A child process instruments a real ``openai.OpenAI`` client with the official GenAI
instrumentation (``opentelemetry-instrumentation-openai-v2``) and the OpenTelemetry SDK,
points it at the local chat server of ``tests/chat_server.py`` (scripted to ask for a
refund tool, then to answer), and writes what the SDK exported as OTLP/JSON: one export
request a line, trace and span ids in hex, enums as integers. A child process, because the
instrumentation reads its content mode once per process.

Modes: ``span_only``, ``event_only`` and ``span_and_event`` (latest experimental GenAI
conventions), ``legacy`` (v1.30 conventions with content capture on: content as
``gen_ai.user.message``-style log events) and ``none`` (no content captured). With
``--pydantic-ai VERSION`` the conversation is a Pydantic AI agent's instead, traced by
Pydantic AI's own instrumentation in that data format.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("span_only", "event_only", "span_and_event", "legacy", "none")
SYSTEM = "You are the refund agent of Acme. Refunds go to the original payment method only."
USER = "Refund order 42, please. Send it to my new card 4111."
TOOL = "issue_refund"
ARGUMENTS = {"order_id": "42", "refund_to": "card-4111"}
RESULT = {"status": "refunded", "amount": 30}
ANSWER = "Order 42 is refunded to card 4111."
CALL_ID = "call_refund_1"
MODEL = "gpt-4o-mini"
USAGE = [(120, 18), (160, 12)]  # input and output tokens of the two model calls


@dataclass(frozen=True)
class Produced:
    """The files one instrumented conversation was exported to."""

    spans: Path
    """OTLP/JSON trace export, one request a line."""
    logs: Path
    """OTLP/JSON logs export, one request a line (empty when nothing was logged)."""
    console: Path
    """The same spans and log records as the SDK's console exporters write them to one
    stream (``to_json()``: indented objects, one after another)."""
    console_lines: Path
    """The same, with the exporters' formatter writing ``to_json(indent=None)``: a line each."""


def produce(folder: Path, mode: str, *, stream: bool = False, agent_span: bool = False,
            tool_span: bool = False, error: bool = False) -> Produced:
    """Run the instrumented conversation in a child process and return its export files."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if mode in ("span_only", "event_only", "span_and_event"):
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = mode
    elif mode == "legacy":
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    env["OTEL_SERVICE_NAME"] = "refund-service"
    flags = [f for f, on in (("--stream", stream), ("--agent-span", agent_span),
                             ("--tool-span", tool_span), ("--error", error)) if on]
    subprocess.run([sys.executable, "-m", "tests.otel_producers", str(folder), *flags],
                   cwd=ROOT, env=env, check=True, timeout=120)
    return Produced(spans=folder / "spans.jsonl", logs=folder / "logs.jsonl",
                    console=folder / "console.json", console_lines=folder / "console.jsonl")


def _scripted(body: dict[str, Any]) -> dict[str, Any]:
    """The model: a refund tool call first, the answer once the tool has answered."""
    answered = body["messages"][-1]["role"] == "tool"
    tokens = USAGE[1 if answered else 0]
    message: dict[str, Any] = ({"role": "assistant", "content": ANSWER} if answered else {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": CALL_ID, "type": "function",
                        "function": {"name": TOOL, "arguments": json.dumps(ARGUMENTS)}}]})
    return {"id": f"chatcmpl-{len(body['messages'])}", "object": "chat.completion",
            "created": 1764000000, "model": MODEL,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "stop" if answered else "tool_calls"}],
            "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1],
                      "total_tokens": sum(tokens)}}


def _hex_ids(value: Any) -> Any:
    """OTLP/JSON (unlike protobuf's JSON mapping) writes trace and span ids in hex."""
    if isinstance(value, list):
        return [_hex_ids(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId")
                and isinstance(v, str) else _hex_ids(v)) for k, v in value.items()}


def _otlp_json(request: Any) -> str:
    from google.protobuf.json_format import MessageToDict

    return json.dumps(_hex_ids(MessageToDict(request, use_integers_for_enums=True)))


@contextmanager
def exported_to(folder: Path, resource: dict[str, str] | None = None) -> Iterator[Any]:
    """In a child: span and log providers exporting to memory, set as the global ones;
    yields them (tracer provider, logger provider), then writes what they recorded to
    ``folder/spans.jsonl`` (one export a line, in the order spans ended: a parent after
    its children, as a simple span processor feeding the Collector's file exporter writes
    them) and ``folder/logs.jsonl``; the SDK's console exporters write the same spans and
    records as they end to ``folder/console.json`` (their default format) and
    ``folder/console.jsonl`` (one object a line)."""
    from opentelemetry import _logs, trace
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        ConsoleLogRecordExporter,
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    tracer_provider = (TracerProvider(resource=Resource.create(resource)) if resource
                       else TracerProvider())
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    console = (folder / "console.json").open("w", encoding="utf-8")
    lines = (folder / "console.jsonl").open("w", encoding="utf-8")
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=console)))
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
        out=lines, formatter=lambda span: span.to_json(indent=None) + "\n")))
    trace.set_tracer_provider(tracer_provider)
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(
        ConsoleLogRecordExporter(out=console)))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogRecordExporter(
        out=lines, formatter=lambda record: record.to_json(indent=None) + "\n")))
    _logs.set_logger_provider(logger_provider)
    yield tracer_provider, logger_provider
    tracer_provider.force_flush()
    logger_provider.force_flush()
    console.close()
    lines.close()
    (folder / "spans.jsonl").write_text(
        "".join(_otlp_json(encode_spans([s])) + "\n" for s in spans.get_finished_spans()))
    records = logs.get_finished_logs()
    (folder / "logs.jsonl").write_text(_otlp_json(encode_logs(records)) + "\n"
                                       if records else "")


def _conversation(args: argparse.Namespace) -> None:
    import openai
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    from tests.chat_server import ChatServer

    server = ChatServer(_scripted)
    if args.error:
        server.fail_first = [400]
    tracer = trace.get_tracer("refund-agent")
    client = openai.OpenAI(base_url=server.url.removesuffix("/chat/completions"),
                           api_key="test-key", max_retries=0)
    tools = [{"type": "function", "function": {
        "name": TOOL, "description": "Refund an order.",
        "parameters": {"type": "object", "properties": {
            "order_id": {"type": "string"}, "refund_to": {"type": "string"}}}}}]
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": USER}]

    def ask() -> dict[str, Any]:
        if not args.stream:
            reply = client.chat.completions.create(model=MODEL, messages=messages,  # type: ignore[arg-type]
                                                   tools=tools)  # type: ignore[arg-type]
            return reply.choices[0].message.model_dump(exclude_none=True)
        text, calls = "", {}
        for chunk in client.chat.completions.create(
                model=MODEL, messages=messages, tools=tools, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True}):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    found = calls.setdefault(call.index, {"id": call.id, "type": "function",
                                                          "function": {"name": "",
                                                                       "arguments": ""}})
                    if call.function and call.function.name:
                        found["function"]["name"] = call.function.name
                    if call.function and call.function.arguments:
                        found["function"]["arguments"] += call.function.arguments
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        return message

    def turn() -> None:
        try:
            first = ask()
        except openai.BadRequestError:
            return
        messages.append(first)
        for call in first.get("tool_calls", []):
            if args.tool_span:
                with tracer.start_as_current_span(f"execute_tool {TOOL}", attributes={
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": TOOL,
                        "gen_ai.tool.call.id": call["id"]}):
                    pass
            messages.append({"role": "tool", "tool_call_id": call["id"],
                             "content": json.dumps(RESULT)})
        ask()

    # The application's own span (a web framework's, say) holds the turn in one trace.
    with tracer.start_as_current_span("POST /refund", kind=SpanKind.SERVER):
        _agent(args, tracer, turn)
    server.close()


def _agent(args: argparse.Namespace, tracer: Any, turn: Any) -> None:
    from opentelemetry.trace import Status, StatusCode

    if args.agent_span:
        attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "refund-agent",
                      "gen_ai.provider.name": "openai",
                      "gen_ai.input.messages": json.dumps(
                          [{"role": "user", "parts": [{"type": "text", "content": USER}]}])}
        with tracer.start_as_current_span("invoke_agent refund-agent",
                                          attributes=attributes) as span:
            turn()
            if args.error:
                span.set_status(Status(StatusCode.ERROR, "model refused the request"))
    else:
        turn()


def produce_pydantic_ai(folder: Path, version: int) -> Produced:
    """The refund conversation as a Pydantic AI agent runs it (its own instrumentation, data
    format ``version``), in a child process: the same files as :func:`produce`."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run([sys.executable, "-m", "tests.otel_producers", str(folder),
                    "--pydantic-ai", str(version)], cwd=ROOT, env=env, check=True, timeout=120)
    return Produced(spans=folder / "spans.jsonl", logs=folder / "logs.jsonl",
                    console=folder / "console.json", console_lines=folder / "console.jsonl")


def _pydantic_ai(version: int, tracer_provider: Any) -> None:
    """A Pydantic AI agent with the refund tool, on the local chat server's model."""
    import warnings

    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from tests.chat_server import ChatServer

    server = ChatServer(_scripted)
    with warnings.catch_warnings():  # formats before 5 are deprecated, still emitted
        warnings.simplefilter("ignore")
        Agent.instrument_all(InstrumentationSettings(tracer_provider=tracer_provider,
                                                     version=version))
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(
        base_url=server.url.removesuffix("/chat/completions"), api_key="test-key"))
    agent = Agent(model, system_prompt=SYSTEM, name="refund-agent")

    @agent.tool_plain(name=TOOL)
    def issue_refund(order_id: str, refund_to: str) -> dict[str, Any]:
        return RESULT

    agent.run_sync(USER)
    server.close()


def main() -> None:
    """The child: instrument, converse, export spans and logs as OTLP/JSON lines."""
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    for flag in ("--stream", "--agent-span", "--tool-span", "--error"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--pydantic-ai", type=int, metavar="VERSION")
    args = parser.parse_args()
    if args.pydantic_ai is not None:
        with exported_to(args.folder, {"service.name": "refund-service"}) as (provider, _):
            _pydantic_ai(args.pydantic_ai, provider)
        return

    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    with exported_to(args.folder) as (tracer_provider, logger_provider):
        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider,
                                        logger_provider=logger_provider)
        _conversation(args)


if __name__ == "__main__":
    main()
