"""Spans and log records as the OpenTelemetry Python SDK's console exporters write them.

``ConsoleSpanExporter`` and ``ConsoleLogRecordExporter`` (``opentelemetry-sdk``) write
each span or log record as its ``to_json()``: a JSON object indented by four spaces, one
after another with no separator but a newline. A formatter that passes ``indent=None``
writes one object a line. It is what an agent traced without a Collector leaves (``python
agent.py > spans.json``), so the GenAI reader reads it as it reads OTLP/JSON: each span
becomes the plain span an export line's span becomes, each GenAI log event the plain
record, and from there a trace is read the same way.

The shape differs from OTLP/JSON: ids are ``0x``-prefixed hex under ``context``, times are
ISO 8601 text to the microsecond (``ns_to_iso_str``: a span time is rounded to it), the
status is ``{"status_code": "ERROR", "description": …}`` and attributes are plain JSON.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from evalsuite._errors import InvalidInput
from evalsuite._log_files import LINE_BUFFER, open_log
from evalsuite._otel_logs import DETAILS, MESSAGE_EVENTS, PlainRecord
from evalsuite._otel_spans import PlainSpan, hex_id, mentions
from evalsuite._parts import Skips, skip_or_raise


class _Context(msgspec.Struct):
    trace_id: str
    span_id: str


class _Status(msgspec.Struct):
    status_code: str = "UNSET"
    description: str | None = None


class _Event(msgspec.Struct):
    name: str
    timestamp: str
    attributes: dict[str, Any] | None = None


class _Resource(msgspec.Struct):
    attributes: dict[str, Any] | None = None


class SdkSpan(msgspec.Struct):
    """A span as ``ReadableSpan.to_json()`` writes it (fields not read are ignored)."""

    name: str
    context: _Context
    start_time: str
    parent_id: str | None = None
    end_time: str | None = None
    status: _Status | None = None
    attributes: dict[str, Any] | None = None
    events: list[_Event] | None = None
    resource: _Resource | None = None


class SdkLogRecord(msgspec.Struct):
    """A log record as ``ReadableLogRecord.to_json()`` writes it."""

    observed_timestamp: str
    body: Any = None
    attributes: dict[str, Any] | None = None
    timestamp: str | None = None
    trace_id: str = ""
    span_id: str = ""
    resource: _Resource | None = None
    event_name: str = ""


_SPAN = msgspec.json.Decoder(SdkSpan)
_RECORD = msgspec.json.Decoder(SdkLogRecord)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16
# A top-level object's last line in the exporter's output: its closing brace, not indented.
_CLOSES = re.compile(rb"\}\s*$").search


def is_sdk_json(value: Any) -> bool:
    """Whether a JSON value is a span or log record as the SDK's ``to_json()`` writes it."""
    if not isinstance(value, dict):
        return False
    context = value.get("context")
    if isinstance(context, dict) and "span_id" in context and "start_time" in value:
        return True
    return "observed_timestamp" in value and "severity_number" in value


def first_document(path: Path) -> Any:
    """The file's first JSON object when it is one the console exporters may have written:
    one a line, or indented as ``to_json()`` indents it (its first key, ``name`` of a
    span or ``body`` of a log record, on the line after the brace). ``None`` otherwise,
    found without reading on: a JSON document of another shape may be the whole file."""
    with open_log(path, LINE_BUFFER) as handle:
        first = next((raw for raw in handle if not raw.isspace()), b"")
        second = handle.readline()
    if first[:1] != b"{":
        return None
    if first.strip() != b"{":
        return _decoded(first)
    if not second.startswith((b'    "name"', b'    "body"')):
        return None
    with closing(documents(path, None)) as found:
        for _, document, _ in found:
            return _decoded(document)
    return None


def _decoded(document: bytes) -> Any:
    """The JSON value, or None when it is not one msgspec reads (invalid, or nested too
    deep): the caller's other paths then say what is wrong with it."""
    try:
        return msgspec.json.decode(document)
    except (msgspec.DecodeError, RecursionError):
        return None


def documents(path: Path, skips: Skips | None) -> Generator[tuple[int, bytes, str]]:
    """Each top-level JSON object of the file as (the line it starts on, its bytes, its
    place), however it is indented: an object ends on a line that closes a brace and
    does not start with a space. A line that opens one while another is not closed ends
    the unclosed one, which is refused (or counted in ``skips``) as not valid JSON; so is
    a line of other text between objects (a program's own output to the same stream)."""
    lines: list[bytes] = []
    start = 0
    with open_log(path, LINE_BUFFER) as handle:
        for number, raw in enumerate(handle, start=1):
            if not lines:
                if raw.isspace():
                    continue
                if raw[:1] != b"{":  # something else printed to the same stream
                    skip_or_raise(skips, InvalidInput(
                        path, "", "expected a span or log record as the SDK's console "
                                  "exporter writes it (a JSON object), got other text",
                        line=number))
                    continue
                start = number
            elif raw[:1] == b"{":  # a new object while one is open: that one was cut off
                _refuse(path, b"".join(lines), start, skips)
                lines, start = [], number
            lines.append(raw)
            if raw[:1] not in (b" ", b"\t") and _CLOSES(raw):
                # The object ends here, whole or not: decoded once, never again as lines
                # are added (lines that close braces, each decoding all the lines before
                # it, would take hours over a file of a few MB).
                document = b"".join(lines)
                lines = []
                if _complete(document):
                    yield start, document, f"line {start}"
                else:
                    _refuse(path, document, start, skips)
    if lines:
        _refuse(path, b"".join(lines), start, skips)


def _complete(document: bytes) -> bool:
    try:
        msgspec.json.decode(document)
    except msgspec.DecodeError:
        return False
    except RecursionError:
        return True  # whole, but too deep: refused when it is read
    return True


def _refuse(path: Path, document: bytes, start: int, skips: Skips | None) -> None:
    try:
        msgspec.json.decode(document)
        reason = "not a JSON object"
    except msgspec.DecodeError as exc:
        cut = "truncated" in str(exc)  # msgspec: "Input data was truncated"
        reason = f"not valid JSON ({exc}){'; an object cut off?' if cut else ''}"
    except RecursionError:
        reason = "nested too deeply to read"
    skip_or_raise(skips, InvalidInput(path, "", f"a span or log record of the SDK's console "
                                                f"exporter is {reason}", line=start))


def sdk_spans(path: Path, skips: Skips | None
              ) -> Iterator[tuple[list[PlainSpan], str, int]]:
    """Each span of the file as a plain span (log records are passed over), with its
    place and line: one object at a time, as an export line's spans. An object that is
    neither (a program's own JSON printed to the same stream) is an invalid record."""
    for line, document, place in documents(path, skips):
        kind = _kind(document)
        if kind == "record":
            continue  # read by sdk_records
        if kind is None:
            skip_or_raise(skips, InvalidInput(
                path, "", "expected a span or log record as the SDK's console exporter "
                          "writes it, got a JSON object of other keys", line=line))
            continue
        try:
            yield [_plain_span(_SPAN.decode(document), path, place, line)], place, line
        except msgspec.ValidationError as exc:
            skip_or_raise(skips, _invalid(path, line, "span", exc))
        except RecursionError:
            _refuse(path, document, line, skips)
        except InvalidInput as exc:
            skip_or_raise(skips, exc)


def sdk_records(path: Path, skips: Skips | None) -> Iterator[PlainRecord]:
    """The GenAI log events of the file, as plain records (other records are not a run's).

    Read before :func:`sdk_spans` reads the same objects: a log record that is invalid is
    refused (or counted in ``skips``) here, and what is not an object of either kind
    there, so each is counted once."""
    for line, document, place in documents(path, None if skips is None else Skips()):
        if _kind(document) != "record":
            continue  # a span, or an object sdk_spans refuses
        try:
            found = _read_record(path, document, place, line)
        except InvalidInput as exc:
            skip_or_raise(skips, exc)
            continue
        if found is not None:
            yield found


def _read_record(path: Path, document: bytes, place: str, line: int) -> PlainRecord | None:
    try:
        record = _RECORD.decode(document)
    except msgspec.ValidationError as exc:
        raise _invalid(path, line, "log record", exc) from None
    except RecursionError:
        _refuse(path, document, line, None)  # raises: nested too deeply
        raise
    return _plain_record(record, path, place, line)


def _kind(document: bytes) -> str | None:
    """``span``, ``record`` or None (neither): by the first key, as ``to_json()`` writes
    each (a span's ``name``, a record's ``body``), else by the keys it holds."""
    head = document[:32].lstrip(b"{ \t\r\n")
    if head.startswith(b'"name"'):
        return "span"
    if head.startswith(b'"body"'):
        return "record"
    value = _decoded(document)
    if not is_sdk_json(value):
        return None
    return "record" if "observed_timestamp" in value else "span"


def mentions_sdk_logs(path: Path) -> bool:
    """Whether the file may hold a log record: one search of its bytes, in blocks. An
    object :func:`_kind` calls a record (its first key ``body``) is one too, whatever it
    lacks: :func:`sdk_spans` passes it over, so unread here it would vanish unreported."""
    return mentions(path, (b'"observed_timestamp"', b'"body"'))


def _invalid(path: Path, line: int, what: str, exc: msgspec.ValidationError) -> InvalidInput:
    # msgspec says "Expected `str`, got `int` - at `$.context.trace_id`"
    message, _, where = str(exc).partition(" - at ")
    return InvalidInput(path, where.strip("`") or "$",
                        f"not a {what} as the SDK's console exporter writes it: {message}",
                        line=line)


def _ns(text: str, path: Path, place: str, line: int) -> int:
    """A time as ``ns_to_iso_str`` writes it (``2026-11-25T21:00:00.123456Z``), in ns."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(path, place, f"expected an ISO 8601 time, got {text!r}",
                           line=line) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:  # a step's time is a UTC datetime: year 9999 at -01:00 is none
        when.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(path, place, f"expected a time in years 1 to 9999 (UTC), got "
                                        f"{text!r}", line=line) from None
    return (when - _EPOCH) // _MICROSECOND * 1000


def _id(raw: str, size: int, path: Path, place: str, line: int) -> str:
    return hex_id(raw.removeprefix("0x"), size, path, place, line)


def _plain_span(span: SdkSpan, path: Path, place: str, line: int) -> PlainSpan:
    trace = _id(span.context.trace_id, 16, path, "$.context.trace_id", line)
    span_id = _id(span.context.span_id, 8, path, "$.context.span_id", line)
    parent = _id(span.parent_id, 8, path, "$.parent_id", line) if span.parent_id else ""
    start = _ns(span.start_time, path, "$.start_time", line)
    end = _ns(span.end_time, path, "$.end_time", line) if span.end_time else start
    error = None
    if span.status is not None and span.status.status_code == "ERROR":
        error = span.status.description or "error"
    events = [(e.name, _ns(e.timestamp, path, f"$.events[{n}].timestamp", line),
               e.attributes or {}) for n, e in enumerate(span.events or ())]
    resource = (span.resource.attributes if span.resource is not None else None) or {}
    return PlainSpan(trace, span_id, parent, span.name, start, end, span.attributes or {},
                     events, error, resource, f"{place} span {span_id}")


def _plain_record(record: SdkLogRecord, path: Path, place: str,
                  line: int) -> PlainRecord | None:
    attributes = record.attributes or {}
    name = record.event_name or attributes.get("event.name")
    # A name that is no text names no GenAI event (nor can it be looked up: unhashable).
    if not isinstance(name, str) or (name != DETAILS and name not in MESSAGE_EVENTS):
        return None
    trace = _id(record.trace_id, 16, path, "$.trace_id", line) if record.trace_id else ""
    span = _id(record.span_id, 8, path, "$.span_id", line) if record.span_id else ""
    # An event emitted outside a span carries zero ids: it belongs to no trace.
    trace = "" if trace == _NO_TRACE else trace
    span = "" if span == _NO_SPAN else span
    time = record.timestamp or record.observed_timestamp
    return PlainRecord(
        trace_id=trace or f"{path.name} {place}", span_id=span, name=str(name),
        time=_ns(time, path, "$.timestamp", line), attributes=attributes, body=record.body,
        resource=(record.resource.attributes if record.resource is not None else None) or {},
        source=path, place=f"{place} log record")
