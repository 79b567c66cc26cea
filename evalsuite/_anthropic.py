"""Anthropic Messages conversations: content blocks with ``tool_use`` and ``tool_result``.

Each conversation (a Messages API request body, perhaps with its ``response``) becomes
one run. ``system`` is the run's context. In ``user`` messages, ``text`` blocks are
inputs and ``tool_result`` blocks are results (``is_error`` makes the text an error);
in ``assistant`` messages, ``thinking`` blocks are reasoning (``redacted_thinking`` is
recorded as reasoning that cannot be read), ``text`` blocks are outputs and ``tool_use``
blocks are calls. Server tools (``server_tool_use`` and their ``…_tool_result`` blocks)
are read the same way. ``stop_reason`` and ``usage`` come from the response or the
conversation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from evalsuite._conversations import (
    base_header,
    conversation_parts,
    parse_arguments,
    run_id_of,
    text_of,
    usage_of,
)
from evalsuite._errors import InvalidInput
from evalsuite._parts import RunHeader, RunPart, Skips
from evalsuite._run import Output, Reasoning, RunOutcome, Step, ToolCall, ToolResult, UserInput


class Block(TypedDict):
    """A content block (unknown keys are ignored)."""

    type: str
    text: NotRequired[str]
    thinking: NotRequired[str]
    id: NotRequired[str]
    name: NotRequired[str]
    input: NotRequired[Any]
    tool_use_id: NotRequired[str]
    content: NotRequired[str | list[Any] | None]
    is_error: NotRequired[bool]


class Message(TypedDict):
    """A Messages API message."""

    role: str
    content: str | list[Block]


MESSAGES = TypeAdapter[list[Any]](list[Message])
ROLES = frozenset({"user", "assistant"})


def anthropic_parts(path: Path, skips: Skips | None = None) -> Iterator[RunPart]:
    """Every conversation in an Anthropic Messages log, as one run each."""
    return conversation_parts(path, skips, convert, MESSAGES)


def convert(record: dict[str, Any], messages: list[Any], path: Path, prefix: str,
            place: str) -> tuple[RunHeader, list[Step], list[str]]:
    """One conversation as a run header, its steps and where each step came from."""
    run_id = run_id_of(record, path, place)
    fields = base_header(record, run_id)
    response = record.get("response") if isinstance(record.get("response"), dict) else None
    all_messages = [*messages, *([response] if response and "content" in response else [])]
    steps: list[Step] = []
    places: list[str] = []
    names: dict[str, str] = {}
    for index, message in enumerate(all_messages):
        place = f"{prefix}[{index}]" if index < len(messages) else "$.response"
        role = message.get("role", "assistant")
        if role not in ROLES:
            raise InvalidInput(path, f"{place}.role", f"expected 'user' or 'assistant', got "
                                                      f"{role!r}")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks or []:
            step = _step(role, block, names)
            if step is not None:
                steps.append(step)
                places.append(place)
    system = record.get("system")
    if system:
        fields["context"] = {**fields.get("context", {}), "system": text_of(system)}
    source = response or record
    if isinstance(source.get("stop_reason"), str):
        outcome = fields.get("outcome") or RunOutcome()
        fields["outcome"] = outcome.model_copy(update={"stop_reason": source["stop_reason"]})
    usage = usage_of(source.get("usage"), "input_tokens", "output_tokens")
    if usage is not None:
        fields["usage"] = usage
    return RunHeader.model_validate(fields), steps, places


def _step(role: str, block: dict[str, Any], names: dict[str, str]) -> Step | None:
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
        if block.get("id"):
            names[block["id"]] = block.get("name", "")
        return ToolCall(tool=block.get("name", ""), call_id=block.get("id"),
                        arguments=arguments, raw_arguments=raw)
    if kind.endswith("tool_result"):
        call_id = block.get("tool_use_id")
        text = text_of(block.get("content"))
        tool = names.get(call_id) if call_id else None
        if block.get("is_error"):
            return ToolResult(tool=tool, call_id=call_id, error=text or "error")
        return ToolResult(tool=tool, call_id=call_id, result=text)
    return None  # images, documents and other blocks carry no step
