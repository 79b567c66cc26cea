"""One conversation traced as many traces, read back as one run.

Instrumentations without an agent span (OpenInference or OpenLLMetry around a bare model
client) write one trace per model call; what ties the calls of one conversation together
is a session or conversation id on their spans. Each call's input repeats the dialogue so
far, so a later trace holds again every user message of the earlier ones, and the result
of a tool the model asked for in one trace arrives only in the next trace's input.

:class:`Sessions` takes the traces of a file one at a time as they complete and, for each
session, keeps only what it needs to continue it: the user messages already read and the
tool calls still waiting for their result. So each part holds only what is new, and
memory follows the sessions in the file, not its size.

Exporters do not always write a session's traces in the order they ran (two processes, a
retried export), and an investigation's timeline needs a run's steps in time order. So a
session's traces are held, each as read, until no earlier one is likely to come: the times
in the file have moved :data:`LATE_EXPORT_NS` past the session's latest trace, or more than
:data:`HELD_TRACES` traces are held, or the file ends. The session's held traces are then
continued in the order they started, as if the file had them so. A trace of no session has
nothing to wait for and is held only behind the ones before it, so runs keep the order of
the file.

A part's steps are step models or, from a reader that defers building them, light records
of the same fields (:mod:`evalsuite._otel_steps`), and its header a model or the dict of
its fields (``RunPart.raw_header``): both are read and adjusted here the same way, so
nothing is built for a caller that only counts.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

import msgspec

from evalsuite._otel_spans import PlainSpan, json_value, new_messages, step_time
from evalsuite._otel_steps import ToolResultStep
from evalsuite._parts import RunPart
from evalsuite._run import ToolResult
from evalsuite._session_attributes import session_attributes

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_OPEN_SESSIONS = 10_000
"""Sessions kept open for later traces to continue (the most recently continued)."""
HELD_TRACES = 1_000
"""Traces held at most while an earlier trace of their session may still come: the memory
bound when many traces share a minute of the file's times (a trace of seven steps held
is about 5 kB when only its steps are counted, 17 kB with the spans its header is found
in, so 5 to 17 MB here)."""
LATE_EXPORT_NS = 60 * 10**9
"""How far (by the file's own times) past a session's latest trace an earlier trace of it
may still come and be put in its place: a minute, well past an SDK batch processor's
export delay (5 s by default) with room for a retried export. Not longer: a held trace is
read again once it has left the processor's caches, and at five minutes that cost about a
tenth of ingest's time on the benchmark's log (every trace a session of its own)."""
_START = itemgetter(0)
_NEVER = 1 << 80  # later than any time a span holds
_SLIM_FROM = 64  # traces held with all their spans at most (about 13 kB each)
_SPAN_START, _SPAN_END = attrgetter("start"), attrgetter("end")


class _Session(msgspec.Struct):
    """What a session's next trace needs from the earlier ones (a struct: one is made for
    each session, its constructor in C)."""

    users: list[int] = msgspec.field(default_factory=list)
    """Hashes of the user messages read so far, in order."""
    waiting: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    """Tool calls by id whose result no trace has logged yet, earliest first (ids repeat)."""
    traces: int = 0
    """Traces of the session read so far."""
    started_at: datetime | None = None
    """When its first trace started."""
    trace_id: Any = None
    """Its first trace's id."""
    latest: int = 0
    """When the latest-starting trace read so far started (Unix ns; 0: none timed)."""


class _Held(msgspec.Struct):
    """A session's traces read but not yet continued."""

    traces: list[tuple[int, RunPart, Sequence[PlainSpan]]]
    """Each as (when it started, Unix ns, 0 if unknown; its part; its spans), as read."""
    key: str | None
    """The session, or None: a trace of no session."""
    end: int = 0
    """When the latest of them ended (Unix ns; 0: none timed)."""


def _running_header(part: RunPart, session: _Session) -> None:
    """Give the part's header what the session holds so far: parts of a run are merged
    with the later one's fields winning, so each carries the session's start. Usage stays
    the trace's own: merging adds up the usage of a run's parts."""
    raw = part.raw_header
    if raw is not None:  # the reader's own dicts, held by nothing else: changed in place
        metadata = raw.get("metadata")
        if metadata is None:
            metadata = {}
        session.traces += 1
        if session.traces == 1:
            session.started_at = raw.get("started_at")
            session.trace_id = metadata.get("trace_id")
        raw["started_at"] = session.started_at or raw.get("started_at")
        metadata["traces"] = session.traces
        if session.trace_id is not None:
            metadata["trace_id"] = session.trace_id
        raw["metadata"] = metadata
        return
    header = part.header
    if header is None:
        return
    session.traces += 1
    if session.traces == 1:
        session.started_at = header.started_at
        session.trace_id = header.metadata.get("trace_id")
    part.header = header.model_copy(update={
        "started_at": session.started_at or header.started_at,
        "metadata": {**header.metadata, "traces": session.traces,
                     **({"trace_id": session.trace_id} if session.trace_id is not None
                        else {})}})


def _trace_id(part: RunPart) -> Any:
    raw = part.raw_header
    if raw is not None:
        return raw.get("metadata", {}).get("trace_id")
    return part.header.metadata.get("trace_id") if part.header is not None else None


def _rename(part: RunPart, run_id: str) -> None:
    """Put the part, and its header, under ``run_id``."""
    part.run_id = run_id
    raw = part.raw_header
    if raw is not None:
        raw["run_id"] = run_id
    elif part.header is not None:
        part.header = part.header.model_copy(update={"run_id": run_id})


class Sessions:
    """The sessions of one file as its traces complete (see the module's docstring)."""

    def __init__(self) -> None:
        self.attributes = session_attributes()
        # The most recently continued sessions, oldest first: a file of millions of
        # conversations keeps memory flat. A trace of a session closed before it starts
        # it again (its repeated history is then kept: a duplicate, never a loss).
        self.open: OrderedDict[str, _Session] = OrderedDict()
        # Traces waiting to be continued, by session (a trace of none under a number of
        # its own), the least recently added first: the order they are let go in.
        self.held: OrderedDict[str | int, _Held] = OrderedDict()
        self.holding = 0  # traces in ``held``
        self.own = 0  # numbers the traces of no session
        self.latest = 0  # when the latest-ending trace read so far ended (Unix ns)
        self.due = 0  # ``latest`` from which the first held may be let go (0: look now)

    def add(self, part: RunPart, spans: Sequence[PlainSpan]) -> Sequence[RunPart]:
        """Take one trace's part; return the parts now ready, each continued
        (:meth:`continued`), in the order a caller hands them on."""
        key = self._session_of(spans)
        start = min(map(_SPAN_START, spans), default=0)
        held = self.held
        if key is None and not held:  # nothing to wait for, nothing before it
            return (self.continued(part, spans, None, start),)
        end = max(map(_SPAN_END, spans), default=0)
        if end > self.latest:
            self.latest = end
        slot: str | int
        if key is None:
            self.own += 1
            slot = self.own
        else:
            slot = key
        # Once many are held, a trace is held with only the spans a session may still need
        # (their inputs may answer a call): spans read again or let go long after they were
        # made are out of the processor's caches by then, and cost more than the search.
        if self.holding >= _SLIM_FROM:
            spans = _answering(spans)
        entry = held.get(slot)
        if entry is None:
            held[slot] = _Held([(start, part, spans)], key, end)
        else:
            held.move_to_end(slot)
            entry.traces.append((start, part, spans))
            if end > entry.end:
                entry.end = end
            self.due = 0  # it may have been the first held: the first is looked at again
        self.holding += 1
        if self.latest < self.due and self.holding <= HELD_TRACES:
            return ()
        return self._ready()

    def rest(self) -> list[RunPart]:
        """The parts still held, continued, once the file has no more traces."""
        ready: list[RunPart] = []
        held = self.held
        while held:
            ready += self._released(held.popitem(last=False)[1])
        self.due = 0
        return ready

    def _ready(self) -> list[RunPart]:
        """The held sessions no earlier trace is expected for any more, from the first
        held: one whose latest trace ended ``LATE_EXPORT_NS`` before the latest read, a
        trace of no session, or the first ones while too many are held. Notes when the
        first one left will be: no need to look before then."""
        ready: list[RunPart] = []
        horizon = self.latest - LATE_EXPORT_NS
        held = self.held
        while held:
            first = held[next(iter(held))]
            if (self.holding <= HELD_TRACES and first.key is not None
                    and not 0 < first.end <= horizon):
                self.due = first.end + LATE_EXPORT_NS if first.end else _NEVER
                return ready
            ready += self._released(held.popitem(last=False)[1])
        self.due = 0
        return ready

    def _released(self, held: _Held) -> list[RunPart]:
        """A held session's traces, continued in the order they started (those whose start
        is not known, and ties, where they were read)."""
        traces, key = held.traces, held.key
        self.holding -= len(traces)
        if len(traces) > 1:
            timed = [trace for trace in traces if trace[0]]
            if len(timed) > 1:
                by_start = iter(sorted(timed, key=_START))  # stable: ties stay in read order
                traces = [next(by_start) if trace[0] else trace for trace in traces]
        return [self.continued(part, spans, key, start) for start, part, spans in traces]

    def continued(self, part: RunPart, spans: Sequence[PlainSpan], key: str | None,
                  start: int) -> RunPart:
        """``part`` (one trace's, started at ``start``, Unix ns) as the continuation of
        session ``key``: under the session's run id, without the user messages that only
        repeat the history, and with the results of earlier calls that this trace's model
        inputs carry."""
        if key is None:  # a run of its own: only its own calls can be answered in it
            trace_id = _trace_id(part)
            run_id = str(trace_id) if trace_id else part.run_id
            if run_id != part.run_id:
                _rename(part, run_id)
            _add_late_results(part, _Session(), spans)
            return part
        if key != part.run_id:
            _rename(part, key)
        opened = self.open
        session = opened.pop(key, None)
        if session is None:
            session = _Session()
            if len(opened) >= MAX_OPEN_SESSIONS:
                opened.popitem(last=False)
        opened[key] = session  # the most recent last
        _drop_repeated_history(part, session, start)
        _add_late_results(part, session, spans)
        _running_header(part, session)
        return part

    def _session_of(self, spans: Sequence[PlainSpan]) -> str | None:
        for name in self.attributes:
            for span in spans:
                value = span.attributes.get(name)
                # (str, int), not str | int: the tuple is checked faster, once a trace
                if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                    return str(value)
        return None


def _drop_repeated_history(part: RunPart, session: _Session, start: int) -> None:
    """Leave out the user messages at the start of the part that are the session's so far.

    Only a whole repeat counts: a trace whose user messages begin with every earlier one,
    in order, repeats the history. So does a trace that started (``start``, Unix ns)
    before one read already and whose user messages are the first of the session's: an
    earlier turn exported late, whose inputs the later turn's history held (its calls,
    results and answers are its own, and kept). Anything else is kept, since a message
    said again is evidence and a duplicate is safer than a loss.
    """
    steps = part.records
    known = len(session.users)
    late = 0 < start < session.latest
    session.latest = max(session.latest, start)
    if not known:  # a session's first trace (most often): nothing to drop
        session.users.extend([hash(s.content) for s in steps if s.kind == "user_input"])
        return
    indexes = [i for i, s in enumerate(steps) if s.kind == "user_input"]
    hashes = [hash(steps[i].content) for i in indexes]
    if late and hashes and hashes == session.users[:len(hashes)]:
        drop = set(indexes)
        hashes = []
    elif hashes[:known] == session.users:
        drop = set(indexes[:known])
        hashes = hashes[known:]
    else:
        drop = set()
    if drop:
        part.restep([s for i, s in enumerate(steps) if i not in drop],
                    [p for i, p in enumerate(part.places) if i not in drop])
    session.users.extend(hashes)


def _drop_executions(part: RunPart, session: _Session) -> None:
    """A tool span traced apart from the model call that asked for it reads as a call of
    its own; with the id of a call still waiting in the session, it is that call's run."""
    if not session.waiting:
        return
    steps = part.records
    keep = [not (s.kind == "tool_call" and s.call_id is not None
                 and bool(session.waiting.get(str(s.call_id)))) for s in steps]
    if all(keep):
        return
    part.restep([s for s, kept in zip(steps, keep, strict=True) if kept],
                [p for p, kept in zip(part.places, keep, strict=True) if kept])


def _add_late_results(part: RunPart, session: _Session, spans: Sequence[PlainSpan]) -> None:
    """Results of calls still waiting (in an earlier trace or this one) that a later model
    call's input carries as tool messages, placed when that call started.

    Ids repeat (within a conversation and across its turns), so they are paired by id and
    order: a result the part holds answers its own calls first, the earliest with its id,
    then the session's earliest waiting one; a result in a model call's input is new only
    after the input's last assistant message (the rest is history, answered already) and
    answers the earliest waiting call with its id made before that model call.
    """
    waiting = session.waiting
    if waiting:
        _drop_executions(part, session)
    own: dict[str, list[Any]] = {}
    for step in part.records:
        kind = step.kind
        if kind == "tool_call" and step.call_id:
            own.setdefault(str(step.call_id), []).append(step)
        elif kind == "tool_result" and step.call_id:
            call_id = str(step.call_id)
            queue = own.get(call_id) or waiting.get(call_id)
            if queue:
                queue.pop(0)
                if not waiting.get(call_id, True):
                    del waiting[call_id]
    for call_id, calls in own.items():
        if calls:
            waiting.setdefault(call_id, []).extend(calls)
    if waiting:
        _answer_from_inputs(part, waiting, spans)


def _answering(spans: Sequence[PlainSpan]) -> list[PlainSpan]:
    """The spans that may carry a tool's result in their input (:func:`tool_responses`
    finds none in the others): messages as JSON text that names a ``tool_call_response``
    (or has an escape, which could spell it), structured messages, or a ``tool`` role
    among the older names' values."""
    found = []
    for span in spans:
        attrs = span.attributes
        messages = attrs.get("gen_ai.input.messages")
        if (messages is not None and (type(messages) is not str
                                      or "tool_call_response" in messages
                                      or "\\u" in messages)) or "tool" in attrs.values():
            found.append(span)
    return found


def _answer_from_inputs(part: RunPart, waiting: dict[str, list[Any]],
                        spans: Sequence[PlainSpan]) -> None:
    """The results of the ``waiting`` calls that the trace's model inputs carry, each
    answering the earliest call with its id made before that model call."""
    for span in sorted(spans, key=lambda s: s.start):
        for call_id, response in tool_responses(span):
            queue = waiting.get(call_id)
            when = step_time(span.start)  # a result comes after its call
            asked = next((c for c in queue if c.at is None or c.at <= when),
                         None) if queue else None
            if asked is None:
                continue
            queue.remove(asked)  # type: ignore[union-attr]
            if not queue:
                del waiting[call_id]
            _insert_result(part, asked.tool, call_id, response, span)


def _insert_result(part: RunPart, tool: str, call_id: str, response: Any,
                   span: PlainSpan) -> None:
    """Put the result where its time falls among the part's steps (after equal times): a
    light record among light records, a step model among models."""
    when = step_time(span.start)
    steps = list(part.records)
    step: Any
    if part.steps_deferred:
        step = ToolResultStep(tool=tool, call_id=call_id, result=response, ns=span.start)
    else:
        step = ToolResult(tool=tool, call_id=call_id, result=response)
        step.__dict__["at"] = when  # made here, so valid: no need to validate the step again
        step.__pydantic_fields_set__.add("at")
    times = [s.at if s.at is not None else _EPOCH for s in steps]
    at = bisect.bisect_right(times, when)
    steps.insert(at, step)
    places = list(part.places)
    places.insert(at, span.place)
    part.restep(steps, places)


def tool_responses(span: PlainSpan) -> list[tuple[str, Any]]:
    """The tool results a model call's input adds, as (call id, result): GenAI
    ``tool_call_response`` parts, ``role: tool`` messages of OpenLLMetry's indexed
    ``gen_ai.prompt.N.*`` and OpenInference's ``llm.input_messages.N.message.*``. Only those
    after the input's last assistant message: the ones before it are history."""
    found: list[tuple[str, Any]] = []
    messages, _ = json_value(span.attributes.get("gen_ai.input.messages"))
    if isinstance(messages, list):
        messages = new_messages([m if isinstance(m, dict) else {} for m in messages])
    for message in messages if isinstance(messages, list) else []:
        parts = message.get("parts") if isinstance(message, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict) and part.get("type") == "tool_call_response" and (
                    part.get("id") is not None):
                found.append((str(part["id"]), _parsed(part.get("response",
                                                               part.get("result")))))
    for prefix, id_key, content_key in (
            ("gen_ai.prompt.", "tool_call_id", "content"),
            ("llm.input_messages.", "message.tool_call_id", "message.content")):
        role_suffix = ".role" if prefix == "gen_ai.prompt." else ".message.role"
        tools: list[tuple[int, str]] = []
        last_assistant = -1
        for key, value in span.attributes.items():
            if value not in ("tool", "assistant") or not key.startswith(prefix) or (
                    not key.endswith(role_suffix)):
                continue
            index = key[len(prefix):-len(role_suffix)]
            if not index.isdigit():
                continue
            if value == "assistant":
                last_assistant = max(last_assistant, int(index))
            else:
                tools.append((int(index), index))
        for number, index in sorted(tools):
            call_id = span.attributes.get(f"{prefix}{index}.{id_key}")
            if call_id is not None and number > last_assistant:
                found.append((str(call_id), _parsed(
                    span.attributes.get(f"{prefix}{index}.{content_key}"))))
    return found


def _parsed(value: Any) -> Any:
    """A tool's answer as JSON when it is JSON text, else as it was logged."""
    parsed, readable = json_value(value)
    return parsed if readable else value
