"""Files of chat conversations, as model APIs log them: what the OpenAI and Anthropic
importers share.

A file holds conversations as JSON Lines (one conversation a line) or as one JSON
document: an array of conversations, one conversation, or a bare list of messages.
A conversation is an object with its messages under ``messages`` (or ``traj``, as the
tau-bench trajectories have them) and anything else beside them. A JSON document is read
whole; logs too large for memory belong in JSON Lines, which stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from evalsuite._documents import json_path, line_of, load_json
from evalsuite._errors import InvalidInput
from evalsuite._log_files import open_log, read_log_bytes
from evalsuite._model_calls import SCOPE_KEYS, SESSION_KEYS, Call, CallGrouper, Turn
from evalsuite._parts import RunPart, Skips, skip_or_raise
from evalsuite._run import RunOutcome, Usage

MESSAGE_KEYS = ("messages", "traj")
REQUEST_KEYS = ("request", "request_body")
RESPONSE_KEYS = ("response", "response_body")
# Top-level fields that say what the run was, kept in the run's metadata when scalar.
_SKIP_META = frozenset({*MESSAGE_KEYS, *REQUEST_KEYS, *RESPONSE_KEYS, "system", "tools",
                        "usage", "outcome", "agent", "agent_version", "context", "run_id",
                        "id", "stop_reason", "object", "created", "choices", "content",
                        "type", "role", "output", "input", "instructions"})

# (record, its JSON path) -> the model call it logs; raises BadRecord
Convert = Callable[[dict[str, Any], str], Call]
_OUTCOME = TypeAdapter(RunOutcome)
ApiFormat = Literal["openai", "anthropic", "openai-responses"]
# what a record sent and where, and what came back and where
Exchange = tuple[dict[str, Any], list[str | int], Any, list[str | int]]
# records with their places -> the same, with records a format spreads over lines joined
Gather = Callable[[Iterator[tuple[Any, str]]], Iterator[tuple[Any, str]]]


def read_json_text(path: Path) -> str:
    """The file's text, or a clear error when it is not UTF-8 text."""
    try:
        return read_log_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(path, "", f"not UTF-8 text ({exc.reason}): not a run log") from None
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the run log ({exc.strerror})") from None


def conversation_records(path: Path, skips: Skips | None) -> Iterator[tuple[Any, str]]:
    """Each conversation of the file with where it is: ``line 7`` or ``$[3]``."""
    first = first_value(path)
    if not isinstance(first, dict):  # one JSON document, read whole
        text = read_json_text(path)
        try:
            data = load_json(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(path, "", f"not valid JSON: {exc.msg}", line=exc.lineno) from None
        if isinstance(data, list) and data and all(
                isinstance(m, dict) and "role" in m for m in data):
            yield {"messages": data}, "$"
        elif isinstance(data, list):
            for index, record in enumerate(data):
                yield record, f"$[{index}]"
        else:
            yield data, "$"
        return
    with open_log(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield load_json(raw), f"line {number}"
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                error = InvalidInput(path, "", f"not valid JSON: {_reason(exc)}", line=number)
                skip_or_raise(skips, error)


def first_value(path: Path) -> Any:
    """The first line parsed as JSON when it is a whole JSON object (so the file is JSON
    Lines), else ``None`` (the file is one JSON document spread over lines, or not JSON)."""
    try:
        with open_log(path) as handle:
            for raw in handle:
                if raw.strip():
                    try:
                        value = load_json(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        return None
                    return value if isinstance(value, dict) else None
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the run log ({exc.strerror})") from None
    return None


def _reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"


class BadRecord(Exception):
    """A record that is not what its format expects: the place below the record, and what
    was expected there."""

    def __init__(self, loc: list[str | int], expected: str) -> None:
        super().__init__(expected)
        self.loc = loc
        self.expected = expected


def validated(adapter: TypeAdapter[Any], value: Any, loc: list[str | int]) -> Any:
    """``value`` validated by ``adapter``, or :class:`BadRecord` naming its first error."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BadRecord([*loc, *(p for p in first["loc"] if isinstance(p, int | str))],
                        _message(first)) from None


def at(prefix: str, *loc: str | int) -> str:
    """The JSON path of a place below the record at ``prefix``: ``$[3].traj[5]``."""
    return prefix + json_path(loc)[1:]


def conversation_parts(path: Path, skips: Skips | None, convert: Convert,
                       gather: Gather | None = None) -> Iterator[RunPart]:
    """Every record of the file read as a model call, the calls grouped into runs."""
    grouper = CallGrouper(path)
    text_for_lines: list[str] = []
    records = conversation_records(path, skips)
    for record, place in gather(records) if gather is not None else records:
        try:
            call = _call(record, place, path, convert, text_for_lines)
        except InvalidInput as exc:
            skip_or_raise(skips, exc)
            continue
        yield grouper.part(call)


def _call(record: Any, place: str, path: Path, convert: Convert, text: list[str]) -> Call:
    prefix = "$" if place.startswith("line ") else place
    line = int(place[5:]) if place.startswith("line ") else None
    if not isinstance(record, dict):
        raise _error(path, prefix, [], "expected a conversation object", line, text)
    try:
        call = convert(record, prefix)
    except BadRecord as exc:
        raise _error(path, prefix, exc.loc, exc.expected, line, text) from None
    if line is not None:
        for turn in [*call.sent, *call.answer]:
            turn.place = f"line {line} {turn.place}"
    call.place = place
    return call


def _message(error: Any) -> str:
    if error["type"] == "missing":
        return f"required field '{error['loc'][-1]}' is missing"
    shown = json.dumps(error.get("input"), default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{error['msg']}, got {shown}"


def _error(path: Path, prefix: str, loc: list[Any], expected: str, line: int | None,
           text: list[str]) -> InvalidInput:
    where = prefix + json_path(loc)[1:]
    if line is None and prefix.startswith("$"):  # one JSON document: find the line
        if not text:
            text.append(read_json_text(path))
        inner = [int(p) for p in prefix[2:-1].split("][")] if prefix.startswith("$[") else []
        line = line_of(text[0], [*inner, *loc]) if len(text[0]) < 5_000_000 else None
    return InvalidInput(path, where, expected, line=line)


def answer_alone(response: Any, loc: list[str | int]) -> Exchange:
    """A record that is a response alone (a ``chat.completion``, a ``Message``, a
    ``Response``), found at ``loc`` of the record: nothing sent."""
    return {}, [], response, loc


def request_and_response(record: dict[str, Any]) -> Exchange:
    """The request a record logs and its response, each with its place in the record.

    The record is the request itself (a conversation with its ``response``), or holds it
    under ``request``/``request_body`` (a proxy's per-call log), perhaps as ``{"body": …}``;
    the response is under ``response``/``response_body`` and is ``None`` when not logged.
    """
    request: dict[str, Any] = record
    request_loc: list[str | int] = []
    for key in REQUEST_KEYS:
        if isinstance(record.get(key), dict):
            request, request_loc = record[key], [key]
            if isinstance(request.get("body"), dict):
                request, request_loc = request["body"], [key, "body"]
            break
    response: Any = None
    response_loc: list[str | int] = []
    for key in RESPONSE_KEYS:
        if record.get(key) is not None:
            response, response_loc = record[key], [key]
            if isinstance(response, dict) and isinstance(response.get("body"), dict | list):
                response, response_loc = response["body"], [key, "body"]
            break
    return request, request_loc, response, response_loc


def name_of(value: Any) -> str | None:
    """An id as text: a string or number, or the ``id`` of an object that has one."""
    if isinstance(value, dict):  # the Responses API's conversation: {"id": "conv_…"}
        value = value.get("id")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    return None


def _sources(record: dict[str, Any], request: dict[str, Any]) -> list[dict[str, Any]]:
    """Where a record may name its run: itself, the request, and the metadata of each."""
    found: list[dict[str, Any]] = []
    for holder in [record] if request is record else [record, request]:
        found.append(holder)
        if isinstance(holder.get("metadata"), dict):
            found.append(holder["metadata"])
    return found


def run_name(record: dict[str, Any], request: dict[str, Any]) -> str | None:
    """The run a record names: its ``run_id``, a session or conversation id
    (:data:`SESSION_KEYS`), or tau-bench's task and trial."""
    if (named := name_of(record.get("run_id"))) is not None:
        return named
    for source in _sources(record, request):
        for key in SESSION_KEYS:
            if (named := name_of(source.get(key))) is not None:
                return named
    if "task_id" in record:
        trial = record.get("trial")
        return f"task-{record['task_id']}" + (f"-trial-{trial}" if trial is not None else "")
    return None


def scope_of(record: dict[str, Any], request: dict[str, Any]) -> str:
    """The end user a record names (:data:`SCOPE_KEYS`), or ``""``."""
    for source in _sources(record, request):
        for key in SCOPE_KEYS:
            if (named := name_of(source.get(key))) is not None:
                return named
    return ""


def model_api_format(record: dict[str, Any]) -> ApiFormat | None:
    """The format a model API's own object says it is (a ``chat.completion``, a ``Response``,
    a ``Message``, a stream's chunk or event, alone or as a record's response, or a
    Responses request), or ``None`` when only its messages can tell."""
    request, _, response, _ = request_and_response(record)
    for value in (record, response[0] if isinstance(response, list) and response else response):
        if not isinstance(value, dict):
            continue
        kind = value.get("type")
        if value.get("object") in ("chat.completion", "chat.completion.chunk"):
            return "openai"
        if value.get("object") == "response" or (
                isinstance(kind, str) and kind.startswith("response.")):
            return "openai-responses"
        if (kind == "message" and "content" in value) or kind == "message_start":
            return "anthropic"
    if "input" in request and "model" in request and not any(k in request for k in MESSAGE_KEYS):
        return "openai-responses"
    return None


def header_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Header fields (apart from the run id) every conversation format reads the same way."""
    metadata = {k: v for k, v in record.items()
                if k not in _SKIP_META and isinstance(v, str | int | float | bool)}
    fields: dict[str, Any] = {"metadata": metadata}
    for key in ("agent", "agent_version"):
        if isinstance(record.get(key), str):
            fields[key] = record[key]
    if isinstance(record.get("context"), dict):
        fields["context"] = dict(record["context"])
    reward = record.get("reward")
    if isinstance(reward, int | float) and not isinstance(reward, bool) and reward in (0, 1):
        fields["outcome"] = RunOutcome(success=reward == 1)
    if isinstance(record.get("outcome"), dict):
        fields["outcome"] = validated(_OUTCOME, record["outcome"], ["outcome"])
    return fields


def stopped(fields: dict[str, Any], reason: Any) -> None:
    """Record the model's stop reason in the header fields."""
    if isinstance(reason, str):
        outcome = fields.get("outcome") or RunOutcome()
        fields["outcome"] = outcome.model_copy(update={"stop_reason": reason})


def answered_at(turns: list[Turn], created: Any) -> None:
    """Time the answer's steps by the response's ``created`` (Unix seconds), if it has one."""
    if not isinstance(created, int | float) or isinstance(created, bool) or created <= 0:
        return
    try:
        when = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        return
    for turn in turns:
        for step in turn.steps:
            step.at = when


def usage_of(raw: Any, input_key: str, output_key: str) -> Usage | None:
    """Token usage from a model API's ``usage`` object."""
    if not isinstance(raw, dict):
        return None
    tokens = {"input_tokens": raw.get(input_key), "output_tokens": raw.get(output_key)}
    clean = {k: v for k, v in tokens.items() if isinstance(v, int) and v >= 0}
    return Usage(model_calls=1, **clean) if clean else None


def parse_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments as an object, and the raw text when they are not one."""
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if isinstance(raw, str):
        try:
            value = pydantic_core.from_json(raw)
        except ValueError:
            return {}, raw
        return (value, None) if isinstance(value, dict) else ({}, raw)
    return {}, json.dumps(raw)


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts.

    Anything else (a tool's output logged as an object or a number, an error object) is
    its JSON: iterating an object gave its key names and dropped every value, and a
    number raised a bare ``TypeError``.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return json.dumps(content, ensure_ascii=False, default=str)
    texts = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part, dict):
            texts.append(f"[{part.get('type', 'part')}]")
        else:
            texts.append(str(part))
    return "\n".join(texts)
