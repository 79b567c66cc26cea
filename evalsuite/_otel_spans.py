"""OTLP/JSON trace export, read into plain spans: ids, times, attributes, events.

What the OpenTelemetry file exporter and the Collector's ``file`` exporter write: one
``ExportTraceServiceRequest`` a line (``{"resourceSpans": […]}``), or one such request as
a JSON document; lines of logs exports (``{"resourceLogs": […]}``) may be among them, and
are read by ``_otel_logs``. Ids are hex per the OTLP/JSON spec; base64 (protobuf's generic JSON
mapping, which some exporters use) is accepted too and turned into hex. 64-bit integers
may arrive as strings, as proto3 JSON allows.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Literal, NotRequired

import msgspec
import pydantic_core
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from evalsuite._conversations import first_value, read_json_text
from evalsuite._documents import json_path
from evalsuite._errors import InvalidInput
from evalsuite._log_files import LINE_BUFFER, open_log
from evalsuite._parts import Skips, ns_time, skip_or_raise


class AnyValue(TypedDict, total=False):
    """An OTLP attribute value: exactly one of these keys."""

    stringValue: str
    boolValue: bool
    intValue: int
    doubleValue: float
    arrayValue: ArrayValue
    kvlistValue: KeyValueList
    bytesValue: str


class ArrayValue(TypedDict, total=False):
    """An array attribute value."""

    values: list[AnyValue]


class KeyValue(TypedDict):
    """One attribute."""

    key: str
    value: NotRequired[AnyValue]


class KeyValueList(TypedDict, total=False):
    """A map attribute value."""

    values: list[KeyValue]


class SpanEvent(TypedDict):
    """An event recorded on a span."""

    name: str
    timeUnixNano: NotRequired[int]
    attributes: NotRequired[list[KeyValue]]


class Status(TypedDict, total=False):
    """A span's status: 0 unset, 1 ok, 2 error."""

    code: int | str
    message: str


class Span(TypedDict):
    """One span (fields reinstate does not read are ignored)."""

    traceId: str
    spanId: str
    parentSpanId: NotRequired[str]
    name: str
    startTimeUnixNano: int
    endTimeUnixNano: NotRequired[int]
    attributes: NotRequired[list[KeyValue]]
    events: NotRequired[list[SpanEvent]]
    status: NotRequired[Status]


class Resource(TypedDict, total=False):
    """What emitted the spans."""

    attributes: list[KeyValue]


class ScopeSpans(TypedDict, total=False):
    """Spans of one instrumentation scope."""

    spans: list[Span]


class ResourceSpans(TypedDict, total=False):
    """Spans of one resource."""

    resource: Resource
    scopeSpans: list[ScopeSpans]


class ExportRequest(TypedDict):
    """One OTLP/JSON export: of traces, or of logs (validated by ``_otel_logs``), or both."""

    resourceSpans: NotRequired[list[ResourceSpans]]
    resourceLogs: NotRequired[list[Any]]


_EXPORT = TypeAdapter[Any](ExportRequest)


class PlainSpan(msgspec.Struct):
    """A span with its ids in hex, its times in nanoseconds and its attributes as a dict.

    A struct, not a dataclass: every span read is made here, and its constructor runs in C.
    """

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start: int
    end: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    error: str | None
    resource: dict[str, Any]
    place: str


def export_requests(path: Path, skips: Skips | None, signal: Signal | None = None,
                    fast: FastSpans | None = None) -> Iterator[tuple[Any, str, int | None]]:
    """Each validated export request of the file, with its place and line.

    With ``fast``, each line is first offered to it: the spans it returns stand for the
    line's request (:func:`plain_spans` passes them on); a line it refuses (``None``) is
    checked here as always.

    With ``signal``, only the requests that may hold it: ``"logs"`` those that mention
    ``resourceLogs``, ``"spans"`` all but those that mention only ``resourceLogs`` (a
    look at the raw text, so a line is parsed in one of the two passes, not both).
    """
    if first_value(path) is None:  # one JSON document over many lines
        text = read_json_text(path)
        if signal is not None and not _holds(text.encode(), signal):
            return
        try:
            yield _validated(text, path, None), "$", None
        except InvalidInput as exc:
            skip_or_raise(skips, exc)
        return
    with open_log(path, LINE_BUFFER) as handle:
        for number, raw in enumerate(handle, start=1):
            # isspace, not strip: the same test without a copy of a line of many kB
            if not raw or raw.isspace() or (signal is not None and not _holds(raw, signal)):
                continue
            place = f"line {number}"
            spans = fast(raw, place) if fast is not None else None
            if spans is not None:
                yield spans, place, number
                continue
            try:
                yield _validated(raw, path, number), place, number
            except InvalidInput as exc:
                skip_or_raise(skips, exc)


Signal = Literal["spans", "logs"]
FastSpans = Callable[[bytes, str], "list[PlainSpan] | None"]
"""Reads an export line (and its place) straight into its spans, or refuses it (``None``)."""


def mentions_logs(path: Path) -> bool:
    """Whether the file may hold a logs export: one fast search of its bytes, so a file of
    spans only is read in one pass."""
    return mentions(path, (b'"resourceLogs"',))


def mentions(path: Path, needles: tuple[bytes, ...]) -> bool:
    """Whether any of ``needles`` is in the file's bytes (as a log reads them: a gzip
    file's text). Read in blocks, not mapped: a mapped file's pages count as the
    process's memory, which would then grow with the log."""
    longest = max(map(len, needles))
    tail = b""
    with open_log(path) as handle:
        while block := handle.read(1 << 20):
            joint = tail + block[:longest]  # a needle across two blocks
            if any(needle in joint or needle in block for needle in needles):
                return True
            tail = block[-longest:]
    return False


def _holds(raw: bytes, signal: Signal) -> bool:
    logs = b'"resourceLogs"' in raw
    return logs if signal == "logs" else (not logs or b'"resourceSpans"' in raw)


def _validated(raw: str | bytes, path: Path, line: int | None) -> Any:
    try:
        request = _EXPORT.validate_json(raw)
    except ValidationError as exc:
        logs = exc.errors(include_url=False)[0]["loc"][:1] == ("resourceLogs",)
        raise invalid(exc, path, line, "logs" if logs else "trace") from None
    if "resourceSpans" not in request and "resourceLogs" not in request:
        raise InvalidInput(path, "$", "expected resourceSpans (an OTLP/JSON trace export) or "
                                      "resourceLogs (an OTLP/JSON logs export)", line=line)
    return request


def invalid(exc: ValidationError, path: Path, line: int | None, kind: str,
            prefix: tuple[str | int, ...] = ()) -> InvalidInput:
    """The first of pydantic's errors as one line naming the place in the export."""
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        reason = str(first["ctx"].get("error", ""))
        # One document: pydantic says where in it ("… at line 3 column 7").
        where = re.search(r" at line (\d+) column \d+$", reason)
        if where is not None and line is None:
            line, reason = int(where.group(1)), reason[:where.start()]
        return InvalidInput(path, "", f"not valid JSON: {reason}", line=line)
    loc = [*prefix, *(p for p in first["loc"] if isinstance(p, int | str))]
    message = (f"required field '{loc[-1]}' is missing" if first["type"] == "missing"
               else first["msg"])
    return InvalidInput(path, json_path(loc), f"{message} (in an OTLP/JSON {kind} export)",
                        line=line)


def plain_spans(request: Any, path: Path, place: str, line: int | None) -> Iterator[PlainSpan]:
    """The spans of one export request (spans a fast path read already are passed on)."""
    if isinstance(request, list):
        yield from request
        return
    for r, resource_spans in enumerate(request.get("resourceSpans", ())):
        resource = attributes(resource_spans.get("resource", {}).get("attributes", []))
        for s, scope in enumerate(resource_spans.get("scopeSpans", [])):
            for n, span in enumerate(scope.get("spans", [])):
                loc = f"$.resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                trace = hex_id(span["traceId"], 16, path, f"{loc}.traceId", line)
                span_id = hex_id(span["spanId"], 8, path, f"{loc}.spanId", line)
                parent = span.get("parentSpanId") or ""
                parent = hex_id(parent, 8, path, f"{loc}.parentSpanId", line) if parent else ""
                for name, ns in (("startTimeUnixNano", span["startTimeUnixNano"]),
                                 ("endTimeUnixNano", span.get("endTimeUnixNano", 0)),
                                 *((f"events[{e}].timeUnixNano", event.get("timeUnixNano", 0))
                                   for e, event in enumerate(span.get("events", [])))):
                    if not in_range(ns):
                        raise InvalidInput(path, f"{loc}.{name}", f"expected a time in "
                                           f"nanoseconds below 2^64, got {ns}", line=line)
                status = span.get("status", {})
                error = None
                if str(status.get("code", "")) in ("2", "STATUS_CODE_ERROR"):
                    error = status.get("message") or "error"
                yield PlainSpan(
                    trace_id=trace, span_id=span_id, parent_id=parent, name=span["name"],
                    start=span["startTimeUnixNano"],
                    end=span.get("endTimeUnixNano", span["startTimeUnixNano"]),
                    attributes=attributes(span.get("attributes", [])),
                    events=[(e["name"], e.get("timeUnixNano", span["startTimeUnixNano"]),
                             attributes(e.get("attributes", []))) for e in span.get("events", [])],
                    error=error, resource=resource,
                    place=f"{place} span {span_id}" if place.startswith("line ") else loc,
                )


def attributes(pairs: list[Any]) -> dict[str, Any]:
    """OTLP key-value pairs as a dict of plain values."""
    return {pair["key"]: value_of(pair.get("value", {})) for pair in pairs}


def value_of(value: dict[str, Any]) -> Any:
    """One OTLP value as a plain value (arrays as lists, kvlists as dicts)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return value["intValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "arrayValue" in value:
        return [value_of(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def hex_id(raw: str, size: int, path: Path, place: str, line: int | None) -> str:
    """A trace (16 bytes) or span (8 bytes) id as lowercase hex, from hex or base64."""
    if len(raw) == size * 2:
        try:
            bytes.fromhex(raw)
        except ValueError:
            pass
        else:
            return raw.lower()
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == size:
        return decoded.hex()
    raise InvalidInput(path, place, f"expected {size * 2} hex digits or the base64 of {size} "
                                    f"bytes, got {raw!r}", line=line)


def json_value(raw: Any) -> tuple[Any, bool]:
    """An attribute that holds JSON: structured already, or a JSON string. (value, readable)

    msgspec reads it first (the faster parser; where it reads a text at all, it reads
    the same values); what it refuses, pydantic-core's parser decides as it always did
    (it also reads ``NaN``, ``Infinity`` and numbers too large for a double).
    """
    if isinstance(raw, str):
        try:
            return _decode_json(raw), True
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        try:
            return pydantic_core.from_json(raw), True
        except ValueError:
            return raw, False
    return raw, True


_decode_json = msgspec.json.Decoder().decode
_ABSENT = object()


def taken_choice(choices: list[dict[str, Any]], later_input: list[dict[str, Any]],
                 said: Callable[[dict[str, Any]], Hashable]) -> dict[str, Any] | None:
    """Of a model call's several choices, the one a later call's input holds as an
    assistant message (compared by ``said``: what a message says as its copy says it
    too), when exactly one is; else None."""
    sent = {said(m) for m in later_input if m.get("role") == "assistant"}
    found = [choice for choice in choices if said(choice) in sent]
    return found[0] if len(found) == 1 else None


def in_range(ns: int) -> bool:
    """Whether a span time is one OTLP can write (a 64-bit count of nanoseconds): larger
    ones are past what a step's time holds."""
    return -(1 << 63) <= ns < (1 << 64)


step_time = ns_time
"""A span time (nanoseconds since the epoch) as a step's time."""


def new_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of a model call's input after its last assistant message (all of them
    when it has none): what the call adds to the history the earlier calls sent."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "assistant":
            return messages[index + 1:]
    return messages


_EARLY = 1 << 40  # orders a step before every step of its time found before it


class TraceSteps:
    """The steps of one trace as a convention's reader finds them, with their times and
    places, put in time order when the trace is done."""

    def __init__(self) -> None:
        # Step models, or a reader's light records of them (:mod:`evalsuite._otel_steps`).
        self.steps: list[tuple[int, int, Any, str]] = []
        self.waiting: list[Any] = []
        self.system: list[str] = []
        self.unreadable: list[str] = []
        # The same, each as (span's place, why): the part's ``unread``, which ingest warns
        # of and ``--strict`` refuses; the metadata alone left a dropped message unsaid.
        self.unread: list[tuple[str | int, str]] = []

    def note(self, span: PlainSpan, why: str) -> None:
        """Content of ``span`` that could not be read as steps: kept in the run's
        ``metadata.unreadable`` and reported as unread."""
        self.unreadable.append(f"span {span.span_id}: {why}")
        self.unread.append((span.place, why))

    def add(self, ns: int, step: Any, place: str, *, early: bool = False) -> None:
        """Note a step at ``ns``; ``early`` puts it before the steps found earlier at the
        same time (a result read from a call whose log event has one time for all)."""
        self.steps.append((ns, len(self.steps) - (_EARLY if early else 0), step, place))

    def json(self, span: PlainSpan, key: str) -> Any:
        """An attribute holding JSON text, parsed; unreadable ones are noted, not guessed."""
        raw = span.attributes.get(key, _ABSENT)
        if raw is _ABSENT:
            return None
        if type(raw) is str:  # the usual case, as json_value reads it first: one call fewer
            try:
                return _decode_json(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
        value, readable = json_value(raw)
        if not readable:
            self.note(span, f"{key} is not valid JSON")
            return None
        return value
