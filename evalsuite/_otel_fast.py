"""The OTLP/JSON trace export's fast path: a line decoded and walked into plain spans at once.

Checking an export line with pydantic and then copying its dicts into plain spans cost more
than half of reading a GenAI trace. Here msgspec decodes the line straight into small
structs that carry the fields :mod:`evalsuite._otel_spans` reads under the same rules, and
one walk over them builds the plain spans, with no dict of the whole line made on the way.
The structs hold no cycles, so they are left out of the garbage collector's tracking
(``gc=False``): a line is thousands of them, and tracking them costs a collection pass.

The structs accept a *subset* of what the pydantic check accepts. msgspec is stricter about
types (no ``"1.5"`` for a double, no ``1`` for a bool, no ``3.0`` for an integer), and a
64-bit integer written as a string (as proto3 JSON allows) is taken here only when it is
plain digits with an optional minus: pydantic also reads ``" 7 "``, ``"+5"`` and ``"1_000"``
and refuses ``"1e3"``, where msgspec's own string reading would differ. An id that is not
plain hex of the right length (base64, or an error to report) is left to the pydantic path
too. Whatever this path refuses (:func:`fast_spans` returns ``None``) is read by the pydantic
path, which accepts it or raises the precise error it always did: a log is accepted or
refused exactly as before, and the error messages are that path's own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from evalsuite._errors import InvalidInput
from evalsuite._otel_spans import PlainSpan, hex_id, in_range


class AnyValueLine(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """An OTLP attribute value (:class:`evalsuite._otel_spans.AnyValue`) of the kinds a
    span's attributes have (the SDK's: text, numbers, booleans and arrays of them). A map or
    bytes (or any other key) is left to the pydantic path: each field a value does not have
    is filled in for every value decoded, and values are most of a line."""

    stringValue: str | UnsetType = UNSET
    intValue: int | str | UnsetType = UNSET
    doubleValue: float | UnsetType = UNSET
    boolValue: bool | UnsetType = UNSET
    arrayValue: ArrayValueLine | UnsetType = UNSET


class ArrayValueLine(msgspec.Struct, gc=False):
    """An array attribute value."""

    values: list[AnyValueLine] = []


class KeyValueLine(msgspec.Struct, gc=False):
    """One attribute."""

    key: str
    value: AnyValueLine | UnsetType = UNSET


class SpanEventLine(msgspec.Struct, gc=False):
    """An event recorded on a span."""

    name: str
    timeUnixNano: int | str | UnsetType = UNSET
    attributes: list[KeyValueLine] = []


class StatusLine(msgspec.Struct, gc=False):
    """A span's status."""

    code: int | str | UnsetType = UNSET
    message: str | UnsetType = UNSET


class SpanLine(msgspec.Struct, gc=False):
    """One span (fields reinstate does not read are ignored, as in the pydantic check)."""

    traceId: str
    spanId: str
    name: str
    startTimeUnixNano: int | str
    parentSpanId: str | UnsetType = UNSET
    endTimeUnixNano: int | str | UnsetType = UNSET
    attributes: list[KeyValueLine] = []
    # Not a list by default: most spans have no events, and a default list is made anew
    # for each span decoded.
    events: list[SpanEventLine] | UnsetType = UNSET
    status: StatusLine | UnsetType = UNSET


class ResourceLine(msgspec.Struct, gc=False):
    """What emitted the spans."""

    attributes: list[KeyValueLine] = []


class ScopeSpansLine(msgspec.Struct, gc=False):
    """Spans of one instrumentation scope."""

    spans: list[SpanLine] = []


class ResourceSpansLine(msgspec.Struct, gc=False):
    """Spans of one resource."""

    resource: ResourceLine | UnsetType = UNSET
    scopeSpans: list[ScopeSpansLine] = []


class ExportLine(msgspec.Struct, gc=False):
    """One export line: its spans, and its logs (checked to be a list, read elsewhere)."""

    resourceSpans: list[ResourceSpansLine] | UnsetType = UNSET
    resourceLogs: list[Any] | UnsetType = UNSET


_DECODER = msgspec.json.Decoder(ExportLine)
_NOWHERE = Path()  # ids are checked here only to refuse: the pydantic path reports
# A span id as the SDK writes it (lowercase hex) is its own hex form: one C call checks it.
_SPAN_ID = re.compile("[0-9a-f]{16}").fullmatch


class _Refused(Exception):
    """A value the fast path leaves to the pydantic check."""


def _int(value: int | str) -> int:
    """A 64-bit integer as OTLP/JSON writes it: a number, or a string of plain digits."""
    if type(value) is int:
        return value
    digits = value[1:] if value[:1] == "-" else value  # type: ignore[index]
    if digits.isascii() and digits.isdigit():  # type: ignore[union-attr]
        return int(value)
    raise _Refused


def _time(value: int | str) -> int:
    """A span or event time: plain digits (as the SDK writes them), else as :func:`_int`
    reads it, and one a step's time can hold (else the pydantic path refuses it)."""
    if type(value) is str and value.isdigit() and value.isascii():
        number = int(value)
    else:
        number = _int(value)
    if not in_range(number):
        raise _Refused
    return number


def _value(value: AnyValueLine | UnsetType) -> Any:
    """One OTLP value as a plain value, as :func:`evalsuite._otel_spans.value_of` reads it."""
    if value is UNSET:
        return None
    if value.stringValue is not UNSET:
        return value.stringValue
    number = value.intValue
    if number is not UNSET:  # most often plain digits (token counts): read inline
        if type(number) is str and number.isdigit() and number.isascii():
            return int(number)
        return _int(number)
    if value.doubleValue is not UNSET:
        return value.doubleValue
    if value.boolValue is not UNSET:
        return value.boolValue
    if value.arrayValue is not UNSET:
        return [_value(v) for v in value.arrayValue.values]
    return None


def _attributes(pairs: list[KeyValueLine]) -> dict[str, Any]:
    """OTLP key-value pairs as a dict of plain values (a string, the usual case, read inline:
    one comprehension, no call a pair)."""
    return {pair.key: value.stringValue
            if (value := pair.value) is not UNSET and value.stringValue is not UNSET
            else _value(value) for pair in pairs}


def fast_spans(raw: bytes, place: str) -> list[PlainSpan] | None:
    """The spans of one export line (``place`` is ``line N``), or ``None`` when the line is
    not one this path decides: the pydantic path then reads it."""
    try:
        request = _DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if request.resourceSpans is UNSET:
        return None  # a logs-only line, or neither: the pydantic path says which
    try:
        return _walk(request.resourceSpans, place)
    except (_Refused, InvalidInput):
        return None


def _walk(resources: list[ResourceSpansLine], place: str) -> list[PlainSpan]:
    spans: list[PlainSpan] = []
    # A line's spans share their trace id and mostly their parent: each id is checked once.
    traces: dict[str, str] = {}
    ids: dict[str, str] = {}
    where = f"{place} span "  # each span's place: this and its id
    for resource_spans in resources:
        resource = (_attributes(resource_spans.resource.attributes)
                    if resource_spans.resource is not UNSET else {})
        for scope in resource_spans.scopeSpans:
            for span in scope.spans:
                span_id = span.spanId
                if _SPAN_ID(span_id) is None:
                    span_id = ids.get(span_id) or ids.setdefault(
                        span_id, hex_id(span_id, 8, _NOWHERE, "", None))
                parent = span.parentSpanId
                if parent is UNSET or not parent:
                    parent = ""
                else:
                    parent = ids.get(parent) or ids.setdefault(
                        parent, hex_id(parent, 8, _NOWHERE, "", None))
                trace = traces.get(span.traceId) or traces.setdefault(
                    span.traceId, hex_id(span.traceId, 16, _NOWHERE, "", None))
                # Times as the SDK writes them (a string of at most 19 plain digits: in
                # range) are read inline, not by a call a span; the rest as _time reads them.
                start = span.startTimeUnixNano
                if type(start) is str and len(start) < 20 and start.isdigit() and start.isascii():
                    start = int(start)
                else:
                    start = _time(start)
                end = span.endTimeUnixNano
                if end is UNSET:
                    end = start
                elif type(end) is str and len(end) < 20 and end.isdigit() and end.isascii():
                    end = int(end)
                else:
                    end = _time(end)
                status = span.status
                error = None
                if status is not UNSET and str(status.code) in ("2", "STATUS_CODE_ERROR"):
                    error = status.message or "error"
                # The span's attributes as _attributes reads them, inline: one call fewer a
                # span. Positional arguments, in PlainSpan's field order: a faster call.
                spans.append(PlainSpan(
                    trace, span_id, parent, span.name, start, end,
                    {pair.key: text
                     if (value := pair.value) is not UNSET and (text := value.stringValue)
                     is not UNSET else _value(value) for pair in span.attributes},
                    [(e.name, start if e.timeUnixNano is UNSET else _time(e.timeUnixNano),
                      _attributes(e.attributes)) for e in span.events]
                    if span.events else [],
                    error, resource, where + span_id))
    return spans
