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
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from evalsuite._documents import json_path, line_of, load_json
from evalsuite._errors import InvalidInput
from evalsuite._parts import RunHeader, RunPart, Skips, skip_or_raise
from evalsuite._run import RunOutcome, Step, Usage

MESSAGE_KEYS = ("messages", "traj")
# Top-level fields that say what the run was, kept in the run's metadata when scalar.
_SKIP_META = frozenset({*MESSAGE_KEYS, "system", "tools", "usage", "outcome", "response",
                        "agent", "agent_version", "context", "run_id", "id", "stop_reason"})

# (record, its validated messages, file, JSON path of the messages, place of the record)
Convert = Callable[[dict[str, Any], list[Any], Path, str, str],
                   tuple[RunHeader, list[Step], list[str]]]


def read_json_text(path: Path) -> str:
    """The file's text, or a clear error when it is not UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8")
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
    with path.open("rb") as handle:
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
        with path.open("rb") as handle:
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


def conversation_parts(path: Path, skips: Skips | None, convert: Convert,
                       messages_model: TypeAdapter[list[Any]]) -> Iterator[RunPart]:
    """Every conversation of the file, validated and converted into a run."""
    text_for_lines: list[str] = []
    for record, place in conversation_records(path, skips):
        try:
            yield _part(record, place, path, convert, messages_model, text_for_lines)
        except InvalidInput as exc:
            skip_or_raise(skips, exc)


def _part(record: Any, place: str, path: Path, convert: Convert,
          messages_model: TypeAdapter[list[Any]], text: list[str]) -> RunPart:
    prefix = "$" if place.startswith("line ") else place
    line = int(place[5:]) if place.startswith("line ") else None
    if not isinstance(record, dict):
        raise _error(path, prefix, [], "expected a conversation object", line, text)
    key = next((k for k in MESSAGE_KEYS if k in record), None)
    if key is None:
        raise _error(path, prefix, [], "expected the conversation's messages under 'messages'",
                     line, text)
    try:
        messages = messages_model.validate_python(record[key])
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = [key, *(p for p in first["loc"] if isinstance(p, int | str))]
        raise _error(path, prefix, loc, _message(first), line, text) from None
    header, steps, found = convert(record, messages, path, f"{prefix}.{key}", place)
    places: list[str | int] = [f"line {line} {p}" if line is not None else p for p in found]
    return RunPart(run_id=header.run_id, source=path, place=place, header=header,
                   steps=steps, places=places)


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


def run_id_of(record: dict[str, Any], path: Path, place: str) -> str:
    """The conversation's id: its own, tau-bench's task and trial, or file and place."""
    for key in ("run_id", "id", "conversation_id"):
        if isinstance(record.get(key), str | int) and str(record[key]):
            return str(record[key])
    if "task_id" in record:
        trial = record.get("trial")
        return f"task-{record['task_id']}" + (f"-trial-{trial}" if trial is not None else "")
    number = place[5:] if place.startswith("line ") else place.strip("$[]") or "0"
    return f"{path.stem}-{number}"


def base_header(record: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Header fields every conversation format reads the same way."""
    metadata = {k: v for k, v in record.items()
                if k not in _SKIP_META and isinstance(v, str | int | float | bool)}
    fields: dict[str, Any] = {"run_id": run_id, "metadata": metadata}
    for key in ("agent", "agent_version"):
        if isinstance(record.get(key), str):
            fields[key] = record[key]
    if isinstance(record.get("context"), dict):
        fields["context"] = dict(record["context"])
    reward = record.get("reward")
    if isinstance(reward, int | float) and not isinstance(reward, bool) and reward in (0, 1):
        fields["outcome"] = RunOutcome(success=reward == 1)
    if isinstance(record.get("outcome"), dict):
        fields["outcome"] = RunOutcome.model_validate(record["outcome"])
    return fields


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
    """The text of a message's content: a string, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part, dict):
            texts.append(f"[{part.get('type', 'part')}]")
        else:
            texts.append(str(part))
    return "\n".join(texts)
