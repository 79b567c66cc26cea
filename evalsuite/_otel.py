"""OpenTelemetry GenAI traces as runs.

Spans follow the GenAI semantic conventions: an ``invoke_agent`` span for the agent's
turn, ``chat`` (or ``text_completion``, ``generate_content``) spans for model calls, and
``execute_tool`` spans for tools (``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``gen_ai.tool.call.arguments`` and ``…result``). Content is in ``gen_ai.input.messages``
and ``gen_ai.output.messages`` (messages of ``parts``: ``text``, ``tool_call``,
``tool_call_response``, ``reasoning``), structured or as JSON strings, with
``gen_ai.system_instructions`` beside them. Older names that instrumentations still emit
are read too: ``gen_ai.system`` (provider), ``gen_ai.usage.prompt_tokens`` and
``…completion_tokens``, ``gen_ai.prompt``/``gen_ai.completion`` (as attributes or as
``gen_ai.content.prompt``/``…completion`` events), the indexed
``gen_ai.prompt.0.content``-style attributes, ``gen_ai.user.message``-style events with
``gen_ai.event.content``, and ``traceloop.*`` entity spans.

Content logged as OTLP log events instead (``event_only``, ``span_and_event``, the older
event mode) is joined to its spans by ``_otel_logs``: every OTLP/JSON file read together
(``read_logs`` passes them all) pairs a trace's spans and events whichever file each is in.
A call no tool span answered takes its result from a later model call's input
(``tool_call_response`` parts, legacy tool messages) with its id; the text parts of one
output message are one output (streaming logs them in pieces, and an empty one before a
tool call); a failed model call or agent turn (``error.type``, an error status) is kept in
the run's ``metadata.errors``.

A trace is a run; traces sharing a ``gen_ai.conversation.id`` are parts of the same run.
A trace is complete when its root span arrives (a parent ends after its children, so
exporters write it last); until then its spans wait, so memory follows the traces in
flight, not the file. Content is captured only on opt-in: a trace without it gives a run
whose calls have ``arguments_logged: false`` and no inputs, which the logging check
reports rather than guesses at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec

from evalsuite._conversations import text_of
from evalsuite._errors import InvalidInput
from evalsuite._openinference import is_openinference, openinference_part
from evalsuite._otel_fast import fast_spans
from evalsuite._otel_logs import PlainRecord, joined, plain_records
from evalsuite._otel_sdk_json import (
    first_document,
    is_sdk_json,
    mentions_sdk_logs,
    sdk_records,
    sdk_spans,
)
from evalsuite._otel_spans import (
    _ABSENT,
    _EARLY,
    PlainSpan,
    TraceSteps,
    _decode_json,
    export_requests,
    json_value,
    mentions_logs,
    new_messages,
    plain_spans,
    step_time,
    taken_choice,
)
from evalsuite._otel_steps import (
    LightPending,
    OutputStep,
    ReasoningStep,
    ToolCallStep,
    ToolResultStep,
    UserInputStep,
    tool_call,
)
from evalsuite._parts import RunPart, Skips, skip_or_raise
from evalsuite._sessions import Sessions

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_START, _END, _NS = attrgetter("start"), attrgetter("end"), attrgetter("ns")
_MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content"})
_LEGACY_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                  "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool",
                  "gen_ai.choice": "choice"}


def otel_parts(path: Path, skips: Skips | None = None, *, defer: bool = False,
               headers: bool = True) -> Iterator[RunPart]:
    """Every trace in an OTLP/JSON file (spans, GenAI log events, or both), as a part of
    its run; ``defer`` and ``headers`` as in :func:`otel_files_parts`."""
    return otel_files_parts([path], skips, defer=defer, headers=headers)


def otel_files_parts(paths: Sequence[Path], skips: Skips | None = None, *,
                     defer: bool = False, headers: bool = True) -> Iterator[RunPart]:
    """Every trace in OTLP/JSON files read together, its log events joined to its spans
    by trace and span id whichever file each is in.

    The log events are read first and kept by trace until the trace's spans are done; the
    spans then stream as in one file. A trace with log events and no spans is a run too.
    With ``defer``, a GenAI trace's steps and header are handed over as light records
    (``RunPart.records``), their models built when the part's ``steps`` or ``header``
    are first read: for a caller that counts steps more than it reads them. With
    ``defer`` and not ``headers``, a GenAI trace's header is never completed: it holds the
    run id, the agent, the start and the trace ids only, for a caller that reads no more of
    a part's header, and the trace's spans are let go as soon as the part is made.
    """
    built = _deferred if defer else _built
    headless = defer and not headers
    records: dict[str, list[PlainRecord]] = {}
    # Files the SDK's console exporters wrote: read by their own reader into the same
    # plain spans and records.
    console = {path for path in paths if is_sdk_json(first_document(path))}
    with_logs = {path for path in paths
                 if (mentions_sdk_logs(path) if path in console else mentions_logs(path))}
    for path in paths:
        if path in console:
            found = sdk_records(path, skips) if path in with_logs else iter(())
        else:
            found = (record for request, place, line in (
                export_requests(path, skips, "logs") if path in with_logs else ())
                for record in _records(request, path, place, line, skips))
        for record in found:
            records.setdefault(record.trace_id, []).append(record)
    waiting: dict[str, list[PlainSpan]] = {}
    sources: dict[str, Path] = {}
    sessions = Sessions()  # traces of one session or conversation make one run
    # Traces whose root has come, by the export line it came in, oldest first. Each is read
    # only once _HELD_LINES more lines are read: a span that ends after its root (a stream
    # consumed after the handler returned) comes in a later export, and an exporter that
    # retries writes a line again; both still join their trace. Memory stays flat.
    finished: dict[str, int] = {}
    lines = 0

    def parts(trace_id: str) -> Iterator[RunPart]:
        """The trace read, and handed to the sessions; the parts they have ready."""
        conflicts: list[tuple[str | int, str]] = []
        trace = _unique(waiting.pop(trace_id), conflicts)
        if records:  # log events were read: join this trace's to its spans
            trace = joined(trace, records.pop(trace_id, []))
        part = _noted(_convention(trace, headless)(trace, sources.pop(trace_id)), conflicts)
        for ready in sessions.add(part, trace):
            yield built(ready)

    for path in paths:
        for request, place, line in (sdk_spans(path, skips) if path in console else
                                     export_requests(path, skips,
                                                     "spans" if path in with_logs else None,
                                                     fast_spans)):
            # The fast path's spans as they are; the pydantic path's made plain now.
            spans = request if isinstance(request, list) else list(
                plain_spans(request, path, place, line))
            lines += 1
            current: str | None = None
            bucket: list[PlainSpan] = []
            for span in spans:
                if span.trace_id != current:  # a line's spans are mostly of one trace
                    current = span.trace_id
                    bucket = waiting.get(current) or waiting.setdefault(current, [])
                    sources.setdefault(current, path)
                bucket.append(span)
                if not span.parent_id:
                    finished.setdefault(span.trace_id, lines)
            while finished:
                oldest, at = next(iter(finished.items()))
                if at > lines - _HELD_LINES:
                    break
                del finished[oldest]
                yield from parts(oldest)
    for trace_id in list(finished):  # the traces still held
        yield from parts(trace_id)
    for trace_id in list(waiting):  # traces whose root never came (sampled, cut off)
        yield from parts(trace_id)
    for events in records.values():  # log events whose spans are in no file given
        trace = joined([], events)
        for ready in sessions.add(_convention(trace, headless)(trace, events[0].source),
                                  trace):
            yield built(ready)
    for ready in sessions.rest():  # a session's traces held for an earlier one to come
        yield built(ready)


def _records(request: Any, path: Path, place: str, line: int | None,
             skips: Skips | None) -> list[PlainRecord]:
    """The GenAI events of one logs export; a bad one (an id, a time) makes the export an
    invalid record, skipped with ``skips`` as a bad export line is."""
    try:
        return plain_records(request, path, place, line)
    except InvalidInput as exc:
        skip_or_raise(skips, exc)
        return []


_HELD_LINES = 8
"""Export lines read after a trace's root before the trace is read (see otel_files_parts)."""


def _same(one: PlainSpan, other: PlainSpan) -> bool:
    """Whether two spans with the same ids say the same (wherever each was read)."""
    return (one.name, one.parent_id, one.start, one.end, one.error, one.attributes,
            one.events, one.resource) == (other.name, other.parent_id, other.start, other.end,
                                          other.error, other.attributes, other.events,
                                          other.resource)


def _conflict(first: PlainSpan, again: PlainSpan) -> tuple[str | int, str]:
    return (again.place, f"span {again.span_id} of trace {again.trace_id} is logged twice "
                         f"with different content ({first.place} and {again.place}): both "
                         "are read")


def _unique(spans: list[PlainSpan], conflicts: list[tuple[str | int, str]]
            ) -> list[PlainSpan]:
    """A trace's spans, each span read twice with the same content once (an exporter's
    retry writes a line again); two different spans under one id are both kept, and noted
    in ``conflicts``."""
    if len({span.span_id for span in spans}) == len(spans):
        return spans
    kept: dict[str, PlainSpan] = {}
    unique = []
    for span in spans:
        first = kept.get(span.span_id)
        if first is None:
            kept[span.span_id] = span
        elif _same(first, span):
            continue
        else:
            conflicts.append(_conflict(first, span))
        unique.append(span)
    return unique


def _noted(part: RunPart, conflicts: list[tuple[str | int, str]]) -> RunPart:
    """The part, with the spans logged twice with different content among what it read
    but could not take as one (``unread``: the summary warns of them)."""
    if conflicts:
        part.unread.extend(conflicts)
    return part


def _built(part: RunPart) -> RunPart:
    """The part with its step and header models built now, as a reader hands them over."""
    part.steps  # noqa: B018  # read to build
    part.header  # noqa: B018
    return part


def _deferred(part: RunPart) -> RunPart:
    return part


def _convention(spans: list[PlainSpan], headless: bool = False,
                ) -> Callable[[list[PlainSpan], Path], RunPart]:
    """The reader of a trace's convention: OpenInference's, else the GenAI one (its header
    left as begun when ``headless``)."""
    if is_openinference(spans):
        return openinference_part
    return _headless_part if headless else trace_part


def operation(span: PlainSpan) -> str:
    """What the span did, from today's attribute or the older ones."""
    attrs = span.attributes
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str):
        return op
    kind = attrs.get("traceloop.span.kind")
    if kind == "tool":
        return "execute_tool"
    if kind in ("agent", "workflow"):
        return "invoke_agent"
    if attrs.get("llm.request.type") in ("chat", "completion"):
        return "chat"
    for prefix in ("execute_tool", "invoke_agent", "chat"):
        if span.name.startswith(prefix):
            return prefix
    return "other"


class _Trace(TraceSteps):
    """The steps of one GenAI trace, and the calls and errors it leaves open."""

    def __init__(self) -> None:
        super().__init__()
        # Calls by id still without a result, earliest first: ids repeat (some servers
        # answer ``call_0`` every time), so an id names a queue, not one call.
        self.unanswered: dict[str, list[ToolCallStep]] = {}
        self.errors: list[str] = []
        self.choices: list[str] = []  # model calls of several choices, none shown taken
        # The last model call's output messages, when they were read without a note: the
        # run's stop reason reads them again (notes, when any, are made again).
        self.last_output: tuple[PlainSpan, list[dict[str, Any]]] | None = None
        # The steps as light records with their times, and their places: in the order
        # found, which is most often their time order already (then nothing is sorted).
        self.records: list[Any] = []
        self.places: list[str] = []
        self.latest = -(1 << 64)  # the latest time found while found in order
        self.early: dict[int, bool] | None = None  # once out of order: which are early

    def add(self, ns: int, step: Any, place: str, *, early: bool = False) -> None:
        """As :meth:`TraceSteps.add`, the step's time set on its record at once."""
        step.ns = ns
        if self.early is None:
            if ns >= self.latest and not early:
                self.latest = ns
            else:
                self.early = {}
        if early and self.early is not None:
            self.early[len(self.records)] = True
        self.records.append(step)
        self.places.append(place)

    def in_order(self) -> tuple[list[Any], list[str]]:
        """The records and their places in time order, those found earlier first at the
        same time, except an early one (put before those found earlier at its time)."""
        records, places, early = self.records, self.places, self.early
        if early is None:
            return records, places
        order = sorted(range(len(records)), key=lambda i: (
            records[i].ns, i - _EARLY if early.get(i) else i))
        return [records[i] for i in order], [places[i] for i in order]


SpanReader = Callable[[PlainSpan], None]
"""Reads another convention's attributes of a span into the GenAI names, in place."""
SPAN_READERS: list[SpanReader] = []
"""Applied to every span of a trace, in order, before the trace is read: where a reader of
another convention (OpenInference, OpenLLMetry, …) plugs in."""


def trace_part(spans: list[PlainSpan], path: Path, *, complete: bool = True) -> RunPart:
    """One trace's spans (their log events joined) as a part of a run; without
    ``complete``, its header is left as begun (see :func:`otel_files_parts`)."""
    for read in SPAN_READERS:
        for span in spans:
            read(span)
    spans.sort(key=_END)  # then by start: stable, so in (start, end) order (int keys
    spans.sort(key=_START)  # compare faster than tuples; once a trace)
    trace = _Trace()
    # What each span did, once a span (today's attribute read here, the older ones by
    # operation), and the agent turns and model calls among them: one pass.
    ops = []
    agents = []
    models = []
    for span in spans:
        op = span.attributes.get("gen_ai.operation.name")
        if not isinstance(op, str):
            op = operation(span)
        ops.append(op)
        if op == "invoke_agent":
            agents.append(span)
        elif op in _MODEL_CALLS:
            models.append(span)
    agent_inputs = False
    for span in agents:
        for message in _messages(trace, span, "input"):
            agent_inputs |= _inputs(trace, span, message, 0) > 0
        _model_error(trace, span)
    users_seen = 0
    outputs = 0
    calls = 0
    following = len(models)
    for span, op in zip(spans, ops, strict=True):
        if op in _MODEL_CALLS:
            # With the agent's input logged, a model call's input still holds the system
            # message (the context), but its user inputs are the agent's, already read.
            users_seen = _chat_inputs(trace, span, users_seen, not agent_inputs)
            calls += 1
            outputs += _chat_outputs(trace, span, models[calls] if calls < following else None)
            # A failed model call (as _model_error notes it, inline: once a model call).
            error = span.attributes.get("error.type") or span.error
            if error is not None:
                trace.errors.append(f"{span.name}: {error}")
        elif op == "execute_tool":
            _tool(trace, span)
    if not outputs:
        for span in agents:
            for message in _messages(trace, span, "output"):
                _assistant(trace, span, message, span.end)
    # Calls no tool span answered (client spans only, or tool spans without their result):
    # the model's later inputs carry the results as tool_call_response parts with their ids.
    for call in trace.waiting:
        if call.call_id is not None:
            trace.unanswered.setdefault(call.call_id, []).append(call)
    if trace.unanswered:
        for queue in trace.unanswered.values():
            queue.sort(key=_NS)  # by the time each call was made
        for span in models:
            _late_results(trace, span)
    return _part(trace, spans, agents, models, path, complete)


_headless_part = partial(trace_part, complete=False)


def _messages(trace: _Trace, span: PlainSpan, which: str) -> list[dict[str, Any]]:
    """A span's input or output messages in today's shape, from whichever names it used."""
    attrs = span.attributes
    key = _MESSAGE_KEYS[which]
    raw = attrs.get(key, _ABSENT)
    if raw is not _ABSENT:
        if type(raw) is str:  # JSON text (the usual case): parsed here, as trace.json does
            try:
                value = _decode_json(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                value = trace.json(span, key)  # pydantic-core's parser decides, or a note
            else:
                # Made just now, so held by nothing else: passed on as it is when it holds
                # messages only (a copy made of it is the same list).
                if type(value) is list:
                    for message in value:
                        if type(message) is not dict:
                            break
                    else:
                        return value
        else:
            value = trace.json(span, key)
        if isinstance(value, list):
            return [m for m in value if isinstance(m, dict)]
    name, prefix = _LEGACY_MESSAGES[which]
    if not span.events and name not in attrs and not _has_prefix(attrs, prefix):
        return []  # none of the older names: no lookups (most spans, a chat's output)
    legacy = trace.json(span, name)
    for name, _, attrs in span.events:
        if name == ("gen_ai.content.prompt" if which == "input" else "gen_ai.content.completion"):
            legacy, readable = json_value(attrs.get(
                "gen_ai.prompt" if which == "input" else "gen_ai.completion"))
            if not readable:
                trace.note(span, f"event {name} is not valid JSON")
    if legacy is None:
        legacy = _indexed(span.attributes, "gen_ai.prompt" if which == "input"
                          else "gen_ai.completion")
    if legacy is None:
        legacy = _event_messages(trace, span, which)
    # Only a list holds messages (a number or a map under an older name holds none).
    return [_modern(m) for m in legacy if isinstance(m, dict)] if isinstance(legacy, list) else []


_MESSAGE_KEYS = {"input": "gen_ai.input.messages", "output": "gen_ai.output.messages"}
_LEGACY_MESSAGES = {"input": ("gen_ai.prompt", "gen_ai.prompt."),
                    "output": ("gen_ai.completion", "gen_ai.completion.")}


def _has_prefix(attrs: dict[str, Any], prefix: str) -> bool:
    """Whether any attribute's name starts with ``prefix`` (or, rarely, holds NUL then it).

    One search of the names joined (in C), not a call a name: this is asked of every model
    call without an input, for each of its attributes. A name holding ``"\\0" + prefix``
    answers yes wrongly; the caller then finds no message under the older names, as it
    would have without looking.
    """
    names = "\0".join(attrs)
    return names.startswith(prefix) or names.find("\0" + prefix) >= 0


def _indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    """``gen_ai.prompt.0.role``-style attributes as a list of messages."""
    found: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in attrs.items():
        if not key.startswith(start):
            continue
        index, _, rest = key[len(start):].partition(".")
        if not index.isdigit() or not rest:
            continue
        message = found.setdefault(int(index), {})
        if rest.startswith("tool_calls."):
            number, _, field = rest[len("tool_calls."):].partition(".")
            if number.isdigit():
                calls = message.setdefault("tool_calls", {})
                calls.setdefault(int(number), {})[field] = value
        else:
            message[rest] = value
    if not found:
        return None
    for message in found.values():
        if "tool_calls" in message:
            message["tool_calls"] = [
                {"id": c.get("id"), "function": {"name": c.get("name", ""),
                                                 "arguments": c.get("arguments")}}
                for _, c in sorted(message["tool_calls"].items())]
    return [found[i] for i in sorted(found)]


def _event_messages(trace: _Trace, span: PlainSpan, which: str) -> list[dict[str, Any]] | None:
    """``gen_ai.user.message``-style span events carrying ``gen_ai.event.content``."""
    found = []
    for name, _, attrs in span.events:
        role = _LEGACY_EVENTS.get(name)
        if role is None or (role == "choice") != (which == "output"):
            continue
        body, readable = json_value(attrs.get("gen_ai.event.content", "{}"))
        if not readable or not isinstance(body, dict):
            trace.note(span, f"event {name} has no readable content")
            continue
        if role == "choice":
            message: dict[str, Any] = (body["message"] if isinstance(body.get("message"), dict)
                                       else {})
            found.append({"role": "assistant", **message,
                          "finish_reason": body.get("finish_reason")})
        else:
            found.append({"role": role, **body,
                          **({"tool_call_id": body["id"]} if role == "tool" and "id" in body
                             else {})})
    return found or None


def _modern(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style message (content, tool_calls) in today's parts shape."""
    if isinstance(message.get("parts"), list):
        return message
    parts: list[dict[str, Any]] = []
    role = message.get("role", "assistant")
    raw = message.get("content")
    # Text or a list of parts; anything else (a number in an indexed attribute, a map) as
    # written, not a crash on the way.
    content = text_of(raw) if raw is None or isinstance(raw, str | list) else str(raw)
    if role == "tool":
        response = {"response": content} if message.get("content") is not None else {}
        parts.append({"type": "tool_call_response", "id": message.get("tool_call_id"),
                      **response})  # no content: the result was not logged
    elif content:
        parts.append({"type": "text", "content": content})
    calls = message.get("tool_calls") or []
    # A call that is no object (or calls that are no list) is still a call the model asked
    # for: kept, its name and arguments not read, never a crash nor left out.
    for call in calls if isinstance(calls, list) else [calls]:
        call = call if isinstance(call, dict) else {}
        function = call.get("function", {})
        function = function if isinstance(function, dict) else {}
        parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name", ""),
                      "arguments": function.get("arguments")})
    return {"role": role, "parts": parts, "finish_reason": message.get("finish_reason")}


def _inputs(trace: _Trace, span: PlainSpan, message: dict[str, Any], skip: int) -> int:
    """Steps for one input message; returns how many user inputs it held.

    A user message without text (an event emitted with content capture off) counts, so
    the history stays aligned, but is no input: nothing says what the user asked.
    """
    role = message.get("role")
    texts = [p.get("content", "") for p in message.get("parts", [])
             if isinstance(p, dict) and p.get("type") == "text"]
    if role == "system":
        trace.system.extend(t for t in texts if isinstance(t, str))
        return 0
    if role == "user" and skip <= 0 and texts:
        trace.add(span.start, UserInputStep(content="\n".join(map(str, texts))), span.place)
    if role == "user" and skip <= 0:  # a new message: a blob, file or uri part said, once
        for part in message.get("parts", []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "tool_call_response"):
                trace.note(span, f"an input message part of type {kind!r} is not read")
    return 1 if role == "user" else 0


def _chat_inputs(trace: _Trace, span: PlainSpan, seen: int, users: bool) -> int:
    """New user inputs in a model call's input (its history repeats the earlier ones);
    without ``users``, only its system message."""
    if not users:
        if trace.system:  # one model call's system message is enough: reading more is slow
            return 0
        for message in _messages(trace, span, "input"):
            if message.get("role") == "system":
                _inputs(trace, span, message, 0)
        seen = 0
    users_read = 0
    for message in _messages(trace, span, "input") if users else ():
        users_read += _inputs(trace, span, message, seen - users_read)
    instructions = trace.json(span, "gen_ai.system_instructions")
    if isinstance(instructions, list) and not trace.system:
        trace.system.extend(str(p.get("content", "")) for p in instructions if isinstance(p, dict))
    return max(seen, users_read)


def _model_error(trace: _Trace, span: PlainSpan) -> None:
    """A model call or agent turn that failed (``error.type``, or an error status) is noted
    for the run."""
    error = span.attributes.get("error.type") or span.error
    if error is not None:
        trace.errors.append(f"{span.name}: {error}")


def _chat_outputs(trace: _Trace, span: PlainSpan, following: PlainSpan | None) -> int:
    """Reasoning, outputs and tool calls of the choice the agent went on with; returns the
    outputs.

    A call asked for several choices (``n``) has one output message each. The agent goes
    on with one of them, and the next model call's input (``following``) holds it as an
    assistant message: that one is read. When no later call shows which (the last call, a
    history without content), every choice's steps are kept and the run says so in its
    ``metadata.choices``: a tool call of any of them may have run, so none is dropped.
    """
    notes = len(trace.unreadable)
    messages = _messages(trace, span, "output")
    trace.last_output = (span, messages) if len(trace.unreadable) == notes else None
    if len(messages) > 1:
        later = _messages(trace, following, "input") if following is not None else []
        taken = taken_choice(messages, later, _said)
        if taken is not None:
            return _assistant(trace, span, taken, span.end)
        trace.choices.append(f"span {span.span_id}: {len(messages)} choices and no later call "
                             "shows which one the agent took: the steps of every choice are kept")
        return sum(_assistant(trace, span, message, span.end) for message in messages)
    return _assistant(trace, span, messages[0], span.end) if messages else 0


def _said(message: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What an assistant message says, as its copy in a later input says it too: its text
    and its tool calls' ids and names (arguments may be re-encoded)."""
    parts = [p for p in message.get("parts", []) if isinstance(p, dict)]
    return ("".join(str(p.get("content")) for p in parts
                    if p.get("type") == "text" and p.get("content")),
            tuple((str(p.get("id")), str(p.get("name"))) for p in parts
                  if p.get("type") == "tool_call"))


def _assistant(trace: _Trace, span: PlainSpan, message: dict[str, Any], ns: int) -> int:
    """Steps for one output message; returns how many outputs it held.

    The text parts of one message are one output, joined: a streamed answer is logged in
    the pieces it arrived in, and a streamed tool call with an empty text part before it.
    """
    outputs = 0
    text: list[str] = []
    place, add = span.place, trace.add
    for part in message.get("parts", []):
        if not isinstance(part, dict):
            trace.note(span, "an output message part that is not an object is not read")
            continue
        kind = part.get("type")
        if kind == "text":
            content = part.get("content")
            if content is not None and content != "":
                text.append(str(content))
            continue
        if text:  # the answer so far ends here (inline, not a closure called a part)
            add(ns, OutputStep(content="".join(text)), place)
            outputs += 1
            text = []
        if kind == "reasoning":
            add(ns, ReasoningStep(content=str(part.get("content", ""))), place)
        elif kind == "tool_call":
            # No arguments: content capture was off, the call is logged, not what it was given.
            call = tool_call(str(part.get("name", "")), part.get("id"), part.get("arguments"))
            add(ns, call, place)
            trace.waiting.append(call)
        else:  # a call or content under a type not read here: said, never dropped unsaid
            trace.note(span, f"an output message part of type {kind!r} is not read as a step")
    if text:
        add(ns, OutputStep(content="".join(text)), place)
        outputs += 1
    return outputs


def _tool(trace: _Trace, span: PlainSpan) -> None:
    attrs = span.attributes
    name = attrs.get("gen_ai.tool.name") or attrs.get("traceloop.entity.name") or (
        span.name.removeprefix("execute_tool").strip() or span.name)
    call_id = attrs.get("gen_ai.tool.call.id")
    call_id = str(call_id) if call_id is not None else None
    raw_args = attrs.get("gen_ai.tool.call.arguments", attrs.get("traceloop.entity.input"))
    call = _requested(trace, str(name), call_id, raw_args)
    call_id = call_id or (call.call_id if call is not None else None)
    if call is None:
        call = tool_call(str(name), call_id, raw_args, unwrap=True)
        trace.add(span.start, call, span.place)
    # reinstate's guard says whether a call was blocked (denied, or stopped by a person).
    blocked = attrs.get("reinstate.tool.call.blocked")
    blocked = blocked if isinstance(blocked, bool) else None
    if "gen_ai.tool.call.result" in attrs or "traceloop.entity.output" in attrs:
        result, _ = json_value(attrs.get("gen_ai.tool.call.result",
                                         attrs.get("traceloop.entity.output")))
        trace.add(span.end, ToolResultStep(tool=str(name), call_id=call_id, result=result,
                                           blocked=blocked), span.place)
    elif span.error is not None or "error.type" in attrs:
        message = span.error if span.error not in (None, "error") else attrs.get("error.type")
        trace.add(span.end, ToolResultStep(tool=str(name), call_id=call_id,
                                           error=str(message or "error"), blocked=blocked),
                  span.place)
    elif call_id:
        trace.unanswered.setdefault(call_id, []).append(call)


def _requested(trace: _Trace, name: str, call_id: str | None,
               raw_args: Any) -> ToolCallStep | None:
    """The model's request this tool span carries out: by id, else, of its tool's calls,
    the one asked with the arguments the span ran with (tools asked for together run
    together, and may start in any order), else the earliest."""
    waiting: list[ToolCallStep] = trace.waiting
    if call_id is not None:  # the usual case, once a tool span: a loop, no generator
        for call in waiting:
            if call.call_id == call_id:
                waiting.remove(call)
                return call
        return None
    asked = [call for call in waiting if call.tool == name]
    found = asked[0] if asked else None
    if len(asked) > 1 and raw_args is not None:
        ran = tool_call(name, None, raw_args, unwrap=True).arguments
        found = next((call for call in asked if call.arguments == ran), found)
    if found is not None:
        waiting.remove(found)
    return found


def _late_results(trace: _Trace, span: PlainSpan) -> None:
    """Results of calls no tool span answered, from this model call's input.

    Only the results after the input's last assistant message are new: the ones before it
    are history, answered already (and ids repeat, so one there may name a later call). Each
    answers the earliest call with its id still unanswered that was made before this call.
    """
    for message in new_messages(_messages(trace, span, "input")):
        for part in message.get("parts", []):
            if not isinstance(part, dict) or part.get("type") != "tool_call_response":
                continue
            if "response" not in part and "result" not in part:
                continue  # the result was not logged
            queue = trace.unanswered.get(str(part.get("id")))
            call = next((c for c in queue if c.ns <= span.start), None) if queue else None
            if call is not None:
                queue.remove(call)  # type: ignore[union-attr]
                response, _ = json_value(part.get("response", part.get("result")))
                trace.add(span.start, ToolResultStep(tool=call.tool, call_id=call.call_id,
                                                     result=response), span.place, early=True)


def _part(trace: _Trace, spans: list[PlainSpan], agents: list[PlainSpan],
          models: list[PlainSpan], path: Path, complete: bool = True) -> RunPart:
    # The header's fields a session reads and adjusts (the run id, the start, the trace id)
    # and the agent (``read_logs(agent=…)`` filters runs by it) now; the rest
    # (:func:`_header`) when the header is built: a caller that only counts steps (ingest)
    # never reads it, and finding it cost as much as reading the steps.
    trace_id = spans[0].trace_id
    conversation = agent = None
    for span in [*agents, *spans]:  # as _header's ``first`` finds each: the earliest span
        attrs = span.attributes
        if conversation is None:
            value = attrs.get("gen_ai.conversation.id")
            if value is None or value == "":
                value = attrs.get("session.id")
            if value is not None and value != "":
                conversation = value
        if agent is None:
            value = attrs.get("gen_ai.agent.name")
            if value is not None and value != "":
                agent = value
        if conversation is not None and agent is not None:
            break
    metadata = {"trace_id": trace_id}
    if conversation is not None:
        metadata["conversation_id"] = conversation
    header: dict[str, Any] = {"run_id": str(conversation or trace_id), "metadata": metadata,
                              "started_at": step_time(spans[0].start)}
    if agent is not None:
        header["agent"] = str(agent)
    # The header's fields and the steps' light records: their models are built when read.
    pending = LightPending(header, partial(_header, trace, spans, agents, models)
                           if complete else None)
    pending.records, pending.places = trace.in_order()  # type: ignore[assignment]
    part = RunPart.deferred(header["run_id"], path, spans[0].place, pending)
    part.unread.extend(trace.unread)
    return part


def _header(trace: _Trace, spans: list[PlainSpan], agents: list[PlainSpan],
            models: list[PlainSpan], header: dict[str, Any]) -> None:
    """Complete the header :func:`_part` began (and a session may have adjusted since) with
    the fields only the header's model needs: its metadata, context, agent version, usage and
    outcome. The trace and its spans are as they were when the part was made."""
    # Each header attribute's first value, the agent's own spans first, then in time order:
    # found in one walk over the spans, not one for each attribute asked for.
    # Only the keys not found yet are looked for: most are on every span, found on the first.
    found: dict[str, tuple[int, Any]] = {}
    missing = set(_HEADER_KEYS)
    for index, span in enumerate([*agents, *spans]):
        attrs = span.attributes
        if missing.isdisjoint(attrs):  # most spans: no set made for them
            continue
        for key in missing.intersection(attrs):
            value = attrs[key]
            if value is not None and value != "":
                found[key] = (index, value)
                missing.discard(key)
        if not missing:
            break
    one = {key: value for key, (_, value) in found.items()}  # a single key's first value

    def first(*keys: str) -> Any:
        """The value of the earliest span that has any of ``keys`` (the first key in order
        when one span has several)."""
        best: tuple[int, Any] | None = None
        for key in keys:
            hit = found.get(key)
            if hit is not None and (best is None or hit[0] < best[0]):
                best = hit
        return None if best is None else best[1]

    metadata = {k: v for k, v in {
        "trace_id": spans[0].trace_id, "conversation_id": first("gen_ai.conversation.id",
                                                                "session.id"),
        "agent_id": one.get("gen_ai.agent.id"),
        "model": first("gen_ai.response.model", "gen_ai.request.model"),
        "provider": first("gen_ai.provider.name", "gen_ai.system"),
        "service": spans[0].resource.get("service.name"),
    }.items() if v is not None}
    if trace.unreadable:
        metadata["unreadable"] = trace.unreadable
    if trace.errors:
        metadata["errors"] = trace.errors
    if trace.choices:
        metadata["choices"] = trace.choices
    # What a session set (its first trace's id, the traces read) wins, and what it added
    # comes after, as when it adjusted the whole header.
    metadata.update(header["metadata"])
    context: dict[str, Any] = {}
    instructions = None
    for span in [*agents, *models]:
        instructions = instructions or trace.json(span, "gen_ai.system_instructions")
    if isinstance(instructions, list):
        trace.system.extend(str(p.get("content", "")) for p in instructions if isinstance(p, dict))
    elif isinstance(instructions, str):
        trace.system.append(instructions)
    if trace.system:
        context["system"] = "\n\n".join(dict.fromkeys(trace.system))
    definitions = one.get("gen_ai.tool.definitions")
    if definitions is not None:  # JSON text as instrumentations write it: read as the list
        value, readable = json_value(definitions)
        context["tool_definitions"] = value if readable else definitions
    if one.get("gen_ai.data_source.id") is not None:
        context["data_source"] = one.get("gen_ai.data_source.id")
    own = one.get("reinstate.context")  # the run's context as reinstate's guard logged it
    if own is not None:
        value, readable = json_value(own)
        if readable and isinstance(value, dict):
            context.update(value)
        else:
            trace.unreadable.append("reinstate.context is not a JSON object")
    header["metadata"] = metadata
    header["context"] = context
    if one.get("gen_ai.agent.version") is not None:
        header["agent_version"] = str(one.get("gen_ai.agent.version"))
    usage = _usage(models or agents, len(models))
    if usage is not None:
        header["usage"] = usage
    stop = _stop_reason(trace, models, agents)
    if stop is not None:
        header["outcome"] = {"stop_reason": stop}


_HEADER_KEYS = frozenset({
    "gen_ai.conversation.id", "session.id", "gen_ai.agent.id", "gen_ai.response.model",
    "gen_ai.request.model", "gen_ai.provider.name", "gen_ai.system", "gen_ai.agent.version",
    "gen_ai.tool.definitions", "gen_ai.data_source.id", "reinstate.context"})
"""The attributes a run's header is read from (``first`` in :func:`_part`)."""
_TOKENS = (("input_tokens", "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
           ("output_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))


def _usage(spans: list[PlainSpan], calls: int) -> dict[str, int | None] | None:
    """Tokens of ``spans`` (today's name, else the older one), and ``calls`` model calls:
    the fields of the run's usage."""
    tokens = {"input_tokens": 0, "output_tokens": 0}
    seen = False
    for span in spans:
        attrs = span.attributes
        for field, key, older in _TOKENS:
            value = attrs[key] if key in attrs else attrs.get(older)
            if isinstance(value, int) and value >= 0:
                tokens[field] += value
                seen = True
    if not seen and not calls:
        return None
    return {"model_calls": calls or None, **(tokens if seen else {})}


def _stop_reason(trace: _Trace, models: list[PlainSpan],
                 agents: list[PlainSpan]) -> str | None:
    if not models:  # an agent span that says why the turn ended (reinstate's guard does)
        for span in agents:
            reasons = span.attributes.get("gen_ai.response.finish_reasons")
            if isinstance(reasons, list) and reasons:
                return str(reasons[0])
        return None
    last = models[-1]
    reasons = last.attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons:
        return str(reasons[0])
    read = trace.last_output
    messages = read[1] if read is not None and read[0] is last else _messages(
        trace, last, "output")
    for message in messages[:1]:
        if message.get("finish_reason"):
            return str(message["finish_reason"])
    return None
