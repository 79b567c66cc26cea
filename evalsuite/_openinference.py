"""OpenInference traces (the Arize Phoenix convention) as runs.

OpenInference instrumentations mark each span with ``openinference.span.kind`` (``LLM``,
``TOOL``, ``AGENT``, ``CHAIN``, …) and flatten messages into indexed attributes:
``llm.input_messages.0.message.role``, ``….message.content``, ``….message.contents.1.
message_content.type|text``, ``….message.tool_calls.0.tool_call.id|function.name|
function.arguments``, ``….message.tool_call_id``, and likewise ``llm.output_messages``.
Beside them: ``input.value``/``output.value`` (with ``input.mime_type``), ``tool.name``,
``tool_call.id``, ``llm.model_name``, ``llm.provider``/``llm.system``,
``llm.token_count.prompt|completion``, ``llm.cost.total``, ``llm.tools.N.tool.json_schema``,
``session.id``, ``user.id`` and, on agent spans, ``agent.name``.

A trace becomes a part of a run: the user messages each model call adds (its input
repeats the ones before), system messages as the run's context, tool calls with their
arguments, results from ``TOOL`` spans (or from a later call's ``tool`` messages, which
:mod:`evalsuite._sessions` pairs, across traces too), outputs and reasoning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalsuite._conversations import parse_arguments, text_of
from evalsuite._otel_spans import PlainSpan, TraceSteps, json_value, step_time, taken_choice
from evalsuite._parts import RunHeader, RunPart
from evalsuite._run import (
    Output,
    Reasoning,
    RunOutcome,
    ToolCall,
    ToolResult,
    Usage,
    UserInput,
)

KIND = "openinference.span.kind"


def is_openinference(spans: Sequence[PlainSpan]) -> bool:
    """Whether a trace was written by an OpenInference instrumentation."""
    # A plain loop, not any() over a generator: asked of every trace read, and a GenAI
    # trace looks at all its spans; the generator made it twice as costly.
    for span in spans:  # noqa: SIM110
        if KIND in span.attributes:
            return True
    return False


class _Trace(TraceSteps):
    """The steps of one OpenInference trace, and the user messages it has read."""

    def __init__(self) -> None:
        super().__init__()
        self.users: list[str] = []
        self.errors: list[str] = []
        self.choices: list[str] = []


def openinference_part(spans: list[PlainSpan], path: Path) -> RunPart:
    """One OpenInference trace's spans as a part of a run."""
    spans.sort(key=lambda s: (s.start, s.end))
    trace = _Trace()
    models = [s for s in spans if s.attributes.get(KIND) == "LLM"]
    outputs = 0
    later = 0
    for span in spans:
        kind = span.attributes.get(KIND)
        if kind == "LLM":
            _model_inputs(trace, span)
            later += 1
            outputs += _model_outputs(trace, span,
                                      models[later] if later < len(models) else None)
            if span.error is not None:  # a failed model call, as the GenAI reader keeps it
                trace.errors.append(f"{span.name}: {span.error}")
        elif kind in ("AGENT", "CHAIN") and span.error is not None:
            trace.errors.append(f"{span.name}: {span.error}")
        elif kind == "TOOL":
            _tool(trace, span)
    agents = [s for s in spans if s.attributes.get(KIND) in ("AGENT", "CHAIN")]
    if agents and not trace.users:  # no model messages: the agent's own input and output
        text = _text_value(agents[0].attributes.get("input.value"))
        if text:
            trace.add(agents[0].start, UserInput(content=text), agents[0].place)
    if agents and not outputs:
        text = _text_value(agents[0].attributes.get("output.value"))
        if text:
            trace.add(agents[0].end, Output(content=text), agents[0].place)
    return _part(trace, spans, models, path)


def messages(trace: _Trace, span: PlainSpan, which: str) -> list[dict[str, Any]]:
    """A model call's input or output messages, OpenAI-shaped (role, content, tool_calls,
    tool_call_id), from the indexed attributes or else from ``input.value``/``output.value``."""
    found = _indexed(span.attributes, f"llm.{which}_messages.")
    if found:
        return found
    body = trace.json(span, f"{which}.value") if _is_json(span, which) else None
    if which == "input" and isinstance(body, dict) and isinstance(body.get("messages"), list):
        return [_plain(m) for m in body["messages"] if isinstance(m, dict)]
    if which == "output" and isinstance(body, dict) and isinstance(body.get("choices"), list):
        return [_plain(c["message"]) for c in body["choices"]
                if isinstance(c, dict) and isinstance(c.get("message"), dict)]
    return []


def _is_json(span: PlainSpan, which: str) -> bool:
    return span.attributes.get(f"{which}.mime_type") == "application/json"


def _indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``llm.input_messages.N.message.*`` attributes as a list of messages."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix):].partition(".")
        if not index.isdigit() or not rest.startswith("message."):
            continue
        message = found.setdefault(int(index), {"tool_calls": {}, "contents": {}})
        field = rest[len("message."):]
        if field.startswith("tool_calls."):
            number, _, name = field[len("tool_calls."):].partition(".")
            if number.isdigit():
                message["tool_calls"].setdefault(int(number), {})[
                    name.removeprefix("tool_call.")] = value
        elif field.startswith("contents."):
            number, _, name = field[len("contents."):].partition(".")
            if number.isdigit():
                message["contents"].setdefault(int(number), {})[
                    name.removeprefix("message_content.")] = value
        elif field not in ("tool_calls", "contents"):  # those two are ours, as dicts
            message[field] = value
    result = []
    for _, message in sorted(found.items()):
        calls = message.pop("tool_calls")
        contents = message.pop("contents")
        message["tool_calls"] = [{"id": c.get("id"), "name": c.get("function.name", ""),
                                  "arguments": c.get("function.arguments")}
                                 for _, c in sorted(calls.items())]
        message["parts"] = [c for _, c in sorted(contents.items())]
        result.append(message)
    return result


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI Chat Completions message (from ``input.value``) in the indexed shape."""
    calls: list[dict[str, Any]] = []
    calls_logged = message.get("tool_calls")
    for call in calls_logged if isinstance(calls_logged, list) else []:
        if not isinstance(call, dict):
            continue
        function: dict[str, Any] = call["function"] if isinstance(
            call.get("function"), dict) else {}
        calls.append({"id": call.get("id"), "name": function.get("name", ""),
                      "arguments": function.get("arguments")})
    content = message.get("content")
    return {"role": message.get("role"),
            "content": text_of(content) if isinstance(content, str | list) else "",
            "tool_call_id": message.get("tool_call_id"), "tool_calls": calls, "parts": []}


def _text(message: dict[str, Any], kind: str = "text") -> str:
    """The message's text: ``content``, else its text parts joined."""
    content = message.get("content")
    if isinstance(content, str) and content and kind == "text":
        return content
    return "\n".join(str(p.get("text", "")) for p in message.get("parts", [])
                     if p.get("type") == kind and p.get("text"))


def _model_inputs(trace: _Trace, span: PlainSpan) -> None:
    """System messages as context, and the user messages this call adds to the dialogue."""
    users = []
    for message in messages(trace, span, "input"):
        if message.get("role") in ("system", "developer"):
            text = _text(message)
            if text:
                trace.system.append(text)
        elif message.get("role") == "user":
            users.append(_text(message))
    known = len(trace.users)
    new = users[known:] if users[:known] == trace.users else users  # the history repeats
    for text in new:
        trace.add(span.start, UserInput(content=text), span.place)
    trace.users.extend(new)


def _model_outputs(trace: _Trace, span: PlainSpan, following: PlainSpan | None) -> int:
    """Reasoning, answers and tool calls of the call's output; returns the answers found.

    The output messages are the items of one answer (the Responses API logs one a
    reasoning item, a function call, a message), or, when the call asked for several
    choices (``n`` in ``llm.invocation_parameters``), one a choice: then the one the next
    call's input holds as an assistant message is read, else every one, and the run's
    ``metadata.choices`` says so.
    """
    found = messages(trace, span, "output")
    if len(found) > 1 and _choices(span) > 1:
        later = messages(trace, following, "input") if following is not None else []
        taken = taken_choice(found, later, _said)
        if taken is not None:
            return _message_steps(trace, span, taken)
        trace.choices.append(f"span {span.span_id}: {len(found)} choices and no later call "
                             "shows which one the agent took: the steps of every choice are kept")
    return sum(_message_steps(trace, span, message) for message in found)


def _choices(span: PlainSpan) -> int:
    """How many choices the call asked for (``n``), 1 when it does not say."""
    parameters, _ = json_value(span.attributes.get("llm.invocation_parameters"))
    n = parameters.get("n") if isinstance(parameters, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else 1


def _said(message: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """An assistant message's text and its tool calls' ids and names."""
    return (_text(message), tuple((str(c.get("id")), str(c.get("name")))
                                  for c in message.get("tool_calls", [])))


def _message_steps(trace: _Trace, span: PlainSpan, message: dict[str, Any]) -> int:
    """Reasoning, answer and tool calls of one output message; returns the answers."""
    reasoning = _text(message, "reasoning")
    if reasoning:
        trace.add(span.end, Reasoning(content=reasoning), span.place)
    outputs = 0
    text = _text(message)
    if text:
        trace.add(span.end, Output(content=text), span.place)
        outputs += 1
    for call in message.get("tool_calls", []):
        arguments, raw = parse_arguments(call.get("arguments"))
        step = ToolCall(tool=str(call.get("name") or ""), arguments=arguments,
                        raw_arguments=raw,
                        call_id=str(call["id"]) if call.get("id") is not None else None)
        trace.add(span.end, step, span.place)
        trace.waiting.append(step)
    return outputs


def _tool(trace: _Trace, span: PlainSpan) -> None:
    """A tool the app ran: the model's request it answers (or a call of its own), and
    what it returned or raised."""
    attrs = span.attributes
    name = str(attrs.get("tool.name") or span.name)
    call_id = attrs.get("tool_call.id")
    call_id = str(call_id) if call_id is not None else None
    call = (next((c for c in trace.waiting if c.call_id == call_id), None)
            if call_id is not None else _asked(trace.waiting, name, attrs.get("input.value")))
    if call is not None:
        trace.waiting.remove(call)
        call_id = call.call_id
    else:
        raw_args = attrs.get("input.value")
        if raw_args is None:
            call = ToolCall(tool=name, call_id=call_id, arguments_logged=False)
        else:
            arguments, raw = parse_arguments(raw_args)
            call = ToolCall(tool=name, call_id=call_id, arguments=arguments, raw_arguments=raw)
        trace.add(span.start, call, span.place)
    if span.error is not None:
        trace.add(span.end, ToolResult(tool=name, call_id=call_id, error=span.error),
                  span.place)
    elif "output.value" in attrs:
        result, readable = json_value(attrs["output.value"])
        trace.add(span.end, ToolResult(tool=name, call_id=call_id,
                                       result=result if readable else attrs["output.value"]),
                  span.place)


def _asked(waiting: list[ToolCall], name: str, raw_arguments: Any) -> ToolCall | None:
    """The model's request a tool span without a call id carries out: of the calls of its
    tool still waiting, the one asked with the arguments the span ran with, else the
    earliest. Tools the model asked for together run together, and may start in any order."""
    asked = [c for c in waiting if c.tool == name]
    if len(asked) > 1 and raw_arguments is not None:
        arguments, _ = parse_arguments(raw_arguments)
        same = next((c for c in asked if c.arguments == arguments), None)
        if same is not None:
            return same
    return asked[0] if asked else None


def _text_value(value: Any) -> str:
    """An agent's ``input.value``/``output.value`` as text: the string, or the first text
    field of a JSON object (``input``, ``question``, ``output``, …)."""
    parsed, readable = json_value(value)
    if readable and isinstance(parsed, dict):
        for key in ("input", "question", "query", "message", "output", "answer", "content"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
        return ""
    return value if isinstance(value, str) else ""


def _part(trace: _Trace, spans: list[PlainSpan], models: list[PlainSpan],
          path: Path) -> RunPart:
    def first(*keys: str) -> Any:
        for span in [*models, *spans]:
            for key in keys:
                value = span.attributes.get(key)
                if value is not None and value != "":
                    return value
        return None

    trace_id = spans[0].trace_id
    metadata = {k: v for k, v in {
        "trace_id": trace_id, "session_id": first("session.id"), "user_id": first("user.id"),
        "model": first("llm.model_name", "llm.response.model_name", "llm.request.model_name"),
        "provider": first("llm.provider", "llm.system"),
        "service": spans[0].resource.get("service.name"),
    }.items() if v is not None}
    context: dict[str, Any] = {}
    if trace.system:
        context["system"] = "\n\n".join(dict.fromkeys(trace.system))
    tools = [trace.json(s, k) for s in models[:1] for k in sorted(s.attributes)
             if k.startswith("llm.tools.") and k.endswith(".tool.json_schema")]
    if any(t is not None for t in tools):
        context["tool_definitions"] = [t for t in tools if t is not None]
    if trace.unreadable:  # said, not guessed at
        metadata["unreadable"] = trace.unreadable
    if trace.errors:
        metadata["errors"] = trace.errors
    if trace.choices:
        metadata["choices"] = trace.choices
    header: dict[str, Any] = {"run_id": trace_id, "metadata": metadata, "context": context,
                              "started_at": step_time(spans[0].start)}
    # The agent that ran: read_logs(agent=…), and so the gate, takes a run naming none as
    # any agent's it is asked for. The first agent span naming one, as an agent framework's
    # processor (OpenAI Agents SDK) marks it: after a handoff, the agent given the input.
    agent = next((s.attributes["agent.name"] for s in spans
                  if s.attributes.get(KIND) == "AGENT" and s.attributes.get("agent.name")), None)
    if agent is not None:
        header["agent"] = str(agent)
    usage = _usage(models)
    if usage is not None:
        header["usage"] = usage
    if models and models[-1].attributes.get("llm.finish_reason"):
        header["outcome"] = RunOutcome(stop_reason=str(
            models[-1].attributes["llm.finish_reason"]))
    trace.steps.sort(key=lambda s: (s[0], s[1]))
    for ns, _, step, _ in trace.steps:
        step.__dict__["at"] = step_time(ns)  # made here, so valid: no second validation
        step.__pydantic_fields_set__.add("at")
    return RunPart(run_id=trace_id, source=path, place=spans[0].place,
                   header=RunHeader.model_validate(header),
                   steps=[s for _, _, s, _ in trace.steps],
                   places=[p for _, _, _, p in trace.steps], unread=list(trace.unread))


def _usage(models: list[PlainSpan]) -> Usage | None:
    if not models:
        return None
    totals: dict[str, Any] = {"model_calls": len(models)}
    for field, key, kinds in (("input_tokens", "llm.token_count.prompt", int),
                              ("output_tokens", "llm.token_count.completion", int),
                              ("cost_usd", "llm.cost.total", int | float)):
        values = [s.attributes[key] for s in models
                  if isinstance(s.attributes.get(key), kinds)
                  and not isinstance(s.attributes.get(key), bool) and s.attributes[key] >= 0]
        if values:
            totals[field] = sum(values)
    return Usage.model_validate(totals)
