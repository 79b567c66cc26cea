"""OTLP/JSON logs export, read into plain records and joined to the spans they belong to.

GenAI instrumentations put content in log events when asked to (``event_only`` and
``span_and_event``, or the older event mode): today one
``gen_ai.client.inference.operation.details`` event per model call, whose attributes are
the call's (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``, usage), and before it one event per message,
``gen_ai.system.message``, ``gen_ai.user.message``, ``gen_ai.assistant.message``,
``gen_ai.tool.message`` and ``gen_ai.choice``, the message in the record's body.

A record carries the trace and span id of the call it was emitted in, which is how it is
joined: the details event's attributes are added to its span's (what the span says
itself wins), the older events become the span's events. A record whose span is in no file
given stands for that span itself, so a logs file read alone still gives its runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from evalsuite._errors import InvalidInput
from evalsuite._otel_spans import (
    AnyValue,
    KeyValue,
    PlainSpan,
    Resource,
    attributes,
    hex_id,
    in_range,
    invalid,
    value_of,
)

DETAILS = "gen_ai.client.inference.operation.details"
MESSAGE_EVENTS = frozenset({"gen_ai.system.message", "gen_ai.user.message",
                            "gen_ai.assistant.message", "gen_ai.tool.message", "gen_ai.choice"})


class LogRecord(TypedDict, total=False):
    """One log record (fields reinstate does not read are ignored)."""

    timeUnixNano: int
    observedTimeUnixNano: int
    eventName: str
    traceId: str
    spanId: str
    attributes: list[KeyValue]
    body: AnyValue


class ScopeLogs(TypedDict, total=False):
    """Log records of one instrumentation scope."""

    logRecords: list[LogRecord]


class ResourceLogs(TypedDict, total=False):
    """Log records of one resource."""

    resource: Resource
    scopeLogs: list[ScopeLogs]


_RESOURCE_LOGS = TypeAdapter[Any](list[ResourceLogs])


@dataclass(slots=True)
class PlainRecord:
    """A GenAI log event with its ids in hex, its time in nanoseconds, its attributes as a
    dict and its body as a plain value."""

    trace_id: str
    span_id: str
    name: str
    time: int
    attributes: dict[str, Any]
    body: Any
    resource: dict[str, Any]
    source: Path
    place: str


def plain_records(request: Any, path: Path, place: str,
                  line: int | None) -> list[PlainRecord]:
    """The GenAI events of one logs export; other log records are not a run's."""
    try:
        resources = _RESOURCE_LOGS.validate_python(request.get("resourceLogs", []))
    except ValidationError as exc:
        raise invalid(exc, path, line, "logs", ("resourceLogs",)) from None
    found = []
    for r, resource_logs in enumerate(resources):
        resource = attributes(resource_logs.get("resource", {}).get("attributes", []))
        for s, scope in enumerate(resource_logs.get("scopeLogs", [])):
            for n, record in enumerate(scope.get("logRecords", [])):
                attrs = attributes(record.get("attributes", []))
                name = record.get("eventName") or attrs.get("event.name")
                # A name that is no text (a list, an object) names no GenAI event: it is
                # not looked up (unhashable), and not a run's, as any other name.
                if not isinstance(name, str) or (name != DETAILS and name not in MESSAGE_EVENTS):
                    continue
                loc = f"$.resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}]"
                for field in ("timeUnixNano", "observedTimeUnixNano"):
                    ns = record.get(field)
                    if ns is not None and not in_range(ns):  # as a span's time is refused
                        raise InvalidInput(path, f"{loc}.{field}", f"expected a time in "
                                           f"nanoseconds below 2^64, got {ns}", line=line)
                trace_id = record.get("traceId") or ""
                span_id = record.get("spanId") or ""
                trace_id = hex_id(trace_id, 16, path, f"{loc}.traceId", line) if trace_id else ""
                span_id = hex_id(span_id, 8, path, f"{loc}.spanId", line) if span_id else ""
                found.append(PlainRecord(
                    trace_id=trace_id or f"{path.name} {place} {loc}", span_id=span_id,
                    name=str(name),
                    time=record.get("timeUnixNano") or record.get("observedTimeUnixNano") or 0,
                    attributes=attrs, body=value_of(dict(record.get("body", {}))),
                    resource=resource, source=path,
                    place=(f"{place} log record {n}" if place.startswith("line ") else loc)))
    return found


def joined(spans: list[PlainSpan], records: list[PlainRecord]) -> list[PlainSpan]:
    """A trace's spans with its log events joined to them, and a span made up for each call
    whose events came without their span."""
    if not records:
        return spans
    by_id = {s.span_id: s for s in spans}
    made: dict[str, PlainSpan] = {}
    for record in sorted(records, key=lambda r: r.time):
        span = by_id.get(record.span_id) if record.span_id else None
        if span is None:
            span = made.get(record.span_id)
            if span is None:
                span = made[record.span_id] = PlainSpan(
                    trace_id=record.trace_id, span_id=record.span_id or "no span id",
                    parent_id="", name="chat",
                    start=record.time, end=record.time, attributes={"gen_ai.operation.name":
                                                                    "chat"},
                    events=[], error=None, resource=record.resource, place=record.place)
            span.start, span.end = min(span.start, record.time), max(span.end, record.time)
        if record.name == DETAILS:
            span.attributes = {**record.attributes, **span.attributes}
            if record.span_id in made:  # named as the instrumentation names its span
                span.name = " ".join(str(span.attributes[k]) for k in (
                    "gen_ai.operation.name", "gen_ai.request.model") if k in span.attributes)
        else:
            # No body: the event was emitted without its content (capture off).
            body = (record.body if isinstance(record.body, dict) else
                    {} if record.body is None else {"content": record.body})
            span.events.append((record.name, record.time,
                                {**record.attributes, "gen_ai.event.content": body}))
    return [*spans, *made.values()]
