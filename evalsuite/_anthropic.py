"""Anthropic Messages logs: request bodies with their response, per-call request/response
records, bare ``Message`` dumps and raw stream events.

A record is read as one model call (:mod:`evalsuite._model_calls` groups the calls of one
conversation into one run): the request's ``messages`` and ``system``, on the record or
under ``request``/``request_body``, are what was sent, and its ``response`` (a ``Message``
as ``Message.model_dump()`` gives it) is the answer. A record that is a ``Message``
(``"type": "message"``) is an answer alone; the events of a stream (``message_start``,
``content_block_*``, ``message_delta``, ``message_stop``) are joined into one.

``system`` is the run's context. In ``user`` messages, ``text`` blocks are inputs and
``tool_result`` blocks are results (``is_error`` makes the text an error); in ``assistant``
messages, ``thinking`` blocks are reasoning (``redacted_thinking`` is recorded as reasoning
that cannot be read), ``text`` blocks are outputs and ``tool_use`` blocks are calls. Server
tools (``server_tool_use`` and their ``…_tool_result`` blocks) are read the same way.
``stop_reason`` and ``usage`` come from the response or the conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from evalsuite._conversations import (
    MESSAGE_KEYS,
    BadRecord,
    answer_alone,
    at,
    conversation_parts,
    header_fields,
    name_of,
    parse_arguments,
    request_and_response,
    run_name,
    scope_of,
    stopped,
    text_of,
    usage_of,
    validated,
)
from evalsuite._model_calls import Call, Turn
from evalsuite._parts import RunPart, Skips
from evalsuite._run import Output, Reasoning, Step, ToolCall, ToolResult, UserInput


class Block(TypedDict):
    """A content block (unknown keys are ignored)."""

    type: str
    text: NotRequired[str]
    thinking: NotRequired[str]
    id: NotRequired[str]
    name: NotRequired[str]
    input: NotRequired[Any]
    tool_use_id: NotRequired[str]
    # a server tool's result is an object: code execution's output, a search's error
    content: NotRequired[str | list[Any] | dict[str, Any] | None]
    is_error: NotRequired[bool]


class Message(TypedDict):
    """A Messages API message."""

    role: str
    content: str | list[Block]


MESSAGES = TypeAdapter[list[Any]](list[Message])
MESSAGE = TypeAdapter[Any](Message)
ROLES = frozenset({"user", "assistant"})
_NO_MESSAGES = ("expected the conversation's messages under 'messages' (or a request with "
                "them), or a Message")
_STREAM_EVENTS = frozenset({"message_start", "content_block_start", "content_block_delta",
                            "content_block_stop", "message_delta", "message_stop", "ping"})


def anthropic_parts(path: Path, skips: Skips | None = None) -> Iterator[RunPart]:
    """Every conversation in an Anthropic Messages log, its calls grouped into runs."""
    return conversation_parts(path, skips, convert, gather_events)


def convert(record: dict[str, Any], prefix: str) -> Call:
    """One record as the model call it logs."""
    request, request_loc, response, response_loc = (
        answer_alone(record, []) if record.get("type") == "message"
        else request_and_response(record))
    key = next((k for k in MESSAGE_KEYS if k in request), None)
    if key is None and not isinstance(response, dict):
        raise BadRecord(request_loc, _NO_MESSAGES)
    messages = validated(MESSAGES, request[key], [*request_loc, key]) if key else []
    base = at(prefix, *request_loc, key) if key else ""
    sent = [_turn(m, f"{base}[{i}]", [*request_loc, key, i])
            for i, m in enumerate(messages)] if key else []
    if request.get("system"):
        sent.insert(0, Turn([], at(prefix, *request_loc, "system"),
                            system=text_of(request["system"])))
    fields = header_fields(record)
    answer: list[Turn] = []
    body = response if isinstance(response, dict) else {}
    if "content" in body:
        message = validated(MESSAGE, {**body, "role": body.get("role", "assistant")},
                            response_loc)
        answer = [_turn(message, at(prefix, *response_loc), response_loc)]
    source = body or request
    stopped(fields, source.get("stop_reason") or record.get("stop_reason"))
    if isinstance(body.get("model"), str):
        fields["metadata"].setdefault("model", body["model"])
    usage = usage_of(source.get("usage") or record.get("usage"), "input_tokens",
                     "output_tokens")
    if usage is not None:
        fields["usage"] = usage
    return Call(sent, answer, fields, prefix, named=run_name(record, request),
                scope=scope_of(record, request),
                own_id=name_of(record.get("id")) or name_of(body.get("id")),
                response_id=name_of(body.get("id")),
                waiting=body.get("stop_reason") == "tool_use")


def _turn(message: dict[str, Any], place: str, loc: list[str | int]) -> Turn:
    role = message.get("role", "assistant")
    if role not in ROLES:
        raise BadRecord([*loc, "role"], f"expected 'user' or 'assistant', got {role!r}")
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    steps: list[Step] = []
    unread: list[str] = []
    for block in blocks or []:
        step = _step(role, block)
        if step is not None:
            steps.append(step)
        else:  # an image, a document, a block of a type not known here: said, never dropped
            unread.append(f"a {role} content block of type {block['type']!r} is not read "
                          "as a step")
    return Turn(steps, place, unread=unread)


def _step(role: str, block: dict[str, Any]) -> Step | None:
    kind = block["type"]
    if kind == "text":
        text = block.get("text", "")
        return UserInput(content=text) if role == "user" else Output(content=text)
    if kind == "thinking":
        return Reasoning(content=block.get("thinking", ""))
    if kind == "redacted_thinking":
        return Reasoning(content="[redacted thinking]")
    if kind.endswith("tool_use"):
        arguments, raw = parse_arguments(block.get("input"))
        return ToolCall(tool=block.get("name", ""), call_id=block.get("id"),
                        arguments=arguments, raw_arguments=raw)
    if kind.endswith("tool_result"):  # the run names a result from its call's id
        call_id = block.get("tool_use_id")
        content = block.get("content")
        if isinstance(content, dict):  # a server tool's: kept whole, its error as the error
            text = json.dumps(content, ensure_ascii=False)
            failed = str(content.get("type", "")).endswith("_error")
        else:
            text, failed = text_of(content), bool(block.get("is_error"))
        if failed:
            return ToolResult(call_id=call_id, error=text or "error")
        return ToolResult(call_id=call_id, result=text)
    return None  # images, documents and other blocks: reported as not read


def gather_events(records: Iterator[tuple[Any, str]]) -> Iterator[tuple[Any, str]]:
    """The records, with the events of each stream (``message_start`` … ``message_stop``)
    joined into the ``Message`` they add up to, at the place of its first event."""
    events: list[dict[str, Any]] = []
    first = ""
    for record, place in records:
        kind = record.get("type") if isinstance(record, dict) else None
        if kind in _STREAM_EVENTS:
            if kind == "message_start" and events:
                yield assemble_events(events), first
                events = []
            if not events:
                first = place
            events.append(record)
            if kind == "message_stop":
                yield assemble_events(events), first
                events = []
            continue
        if events:
            yield assemble_events(events), first
            events = []
        yield record, place
    if events:
        yield assemble_events(events), first


def assemble_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``Message`` a stream's events add up to: blocks filled in from their deltas,
    a ``tool_use`` block's input from its JSON fragments."""
    message: dict[str, Any] = {"type": "message", "role": "assistant", "content": []}
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    usage: dict[str, Any] = {}
    for event in events:
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            message.update({k: v for k, v in event["message"].items() if k != "content"})
            usage.update(_mapping(event["message"].get("usage")))
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            blocks[event.get("index", len(blocks))] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            block = blocks.setdefault(event.get("index", 0), {"type": "text", "text": ""})
            delta = event["delta"]
            if delta.get("type") == "input_json_delta":
                partial.setdefault(event.get("index", 0), []).append(
                    delta.get("partial_json", ""))
            for name in ("text", "thinking"):
                if isinstance(delta.get(name), str):
                    block[name] = block.get(name, "") + delta[name]
        elif kind == "message_delta":
            change: dict[str, Any] = event["delta"] if isinstance(event.get("delta"), dict) else {}
            message.update({k: v for k, v in change.items() if v is not None})
            usage.update(_mapping(event.get("usage")))
    for index, pieces in partial.items():
        if "".join(pieces):
            blocks[index]["input"] = "".join(pieces)  # JSON text, parsed like any arguments
    message["content"] = [blocks[i] for i in sorted(blocks)]
    message["usage"] = usage or None
    return message


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
