"""OpenAI Chat Completions conversations: ``messages`` with ``tool_calls`` and ``role: tool``.

Each conversation becomes one run. ``system`` and ``developer`` messages are the run's
context; ``user`` messages are inputs; an ``assistant`` message gives its reasoning
(``reasoning_content``, as some compatible APIs log it), its text (an output) and its tool
calls, in that order; ``tool`` messages (and the legacy ``function`` role) are results.
Arguments arrive as JSON text or as objects; text that is not a JSON object is kept in
``raw_arguments``. Results are kept as logged. Ids repeat in real logs (tau-bench reuses
them within and across conversations), so results are paired by id and order within the
one run (:meth:`Run.pairs`), never across runs.

A conversation may carry ``response`` (a ``chat.completion`` object whose first choice
ends the conversation and whose ``finish_reason`` is the stop reason) and ``usage``.
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


class Function(TypedDict):
    """The function a tool call names."""

    name: str
    arguments: NotRequired[str | dict[str, Any] | None]


class ToolCallBody(TypedDict):
    """One entry of an assistant message's ``tool_calls``."""

    id: NotRequired[str | None]
    type: NotRequired[str]
    function: Function


class Message(TypedDict):
    """A Chat Completions message (unknown keys are ignored)."""

    role: str
    content: NotRequired[str | list[Any] | None]
    tool_calls: NotRequired[list[ToolCallBody] | None]
    tool_call_id: NotRequired[str | None]
    name: NotRequired[str | None]
    function_call: NotRequired[Function | None]
    reasoning_content: NotRequired[str | None]
    refusal: NotRequired[str | None]


MESSAGES = TypeAdapter[list[Any]](list[Message])
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def openai_parts(path: Path, skips: Skips | None = None) -> Iterator[RunPart]:
    """Every conversation in an OpenAI Chat Completions log, as one run each."""
    return conversation_parts(path, skips, convert, MESSAGES)


def convert(record: dict[str, Any], messages: list[Any], path: Path, prefix: str,
            place: str) -> tuple[RunHeader, list[Step], list[str]]:
    """One conversation as a run header, its steps and where each step came from."""
    run_id = run_id_of(record, path, place)
    fields = base_header(record, run_id)
    system: list[str] = []
    steps: list[Step] = []
    places: list[str] = []
    names: dict[str, str] = {}
    response = record.get("response")
    choices = response.get("choices") if isinstance(response, dict) else None
    final = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(
        choices[0], dict) else None
    all_messages = [*messages, *([final] if isinstance(final, dict) else [])]
    for index, message in enumerate(all_messages):
        place = f"{prefix}[{index}]" if index < len(messages) else "$.response.choices[0]"
        role = message.get("role")
        if role not in ROLES:
            raise InvalidInput(path, f"{place}.role",
                               f"expected one of {', '.join(sorted(ROLES))}, got {role!r}")
        for step in _steps(message, system, names):
            steps.append(step)
            places.append(place)
    if system:
        fields["context"] = {**fields.get("context", {}), "system": "\n\n".join(system)}
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        if isinstance(reason, str):
            outcome = fields.get("outcome") or RunOutcome()
            fields["outcome"] = outcome.model_copy(update={"stop_reason": reason})
    usage = usage_of(record.get("usage") or (response or {}).get("usage"),
                     "prompt_tokens", "completion_tokens")
    if usage is not None:
        fields["usage"] = usage
    return RunHeader.model_validate(fields), steps, places


def _steps(message: dict[str, Any], system: list[str], names: dict[str, str]) -> Iterator[Step]:
    role = message["role"]
    content = text_of(message.get("content"))
    if role in ("system", "developer"):
        if content:
            system.append(content)
    elif role == "user":
        yield UserInput(content=content)
    elif role == "assistant":
        if message.get("reasoning_content"):
            yield Reasoning(content=message["reasoning_content"])
        if content:
            yield Output(content=content)
        if message.get("refusal"):
            yield Output(content=message["refusal"])
        for call in message.get("tool_calls") or []:
            arguments, raw = parse_arguments(call["function"].get("arguments"))
            if call.get("id"):
                names[call["id"]] = call["function"]["name"]
            yield ToolCall(tool=call["function"]["name"], call_id=call.get("id"),
                           arguments=arguments, raw_arguments=raw)
        legacy = message.get("function_call")
        if legacy:
            arguments, raw = parse_arguments(legacy.get("arguments"))
            yield ToolCall(tool=legacy["name"], arguments=arguments, raw_arguments=raw)
    else:  # tool, or the legacy function role
        call_id = message.get("tool_call_id")
        yield ToolResult(tool=message.get("name") or names.get(call_id or ""), call_id=call_id,
                         result=content)
