"""OpenAI Chat Completions logs: conversations, per-call request/response records, bare
``chat.completion`` dumps and ``chat.completion.chunk`` streams.

A record is read as one model call (:mod:`evalsuite._model_calls` groups the calls of one
conversation into one run): its ``messages`` (or ``traj``, as the tau-bench trajectories
have them), on the record or under ``request``/``request_body``, are what was sent, and its
``response`` (a ``chat.completion`` as ``ChatCompletion.model_dump()`` gives it, or the
chunks of a stream) is the answer, whose ``finish_reason`` is the stop reason. A record
that is a ``chat.completion`` is an answer alone; consecutive lines that are chunks of one
stream are one answer, their text and tool-call fragments joined.

``system`` and ``developer`` messages are the run's context; ``user`` messages are inputs;
an ``assistant`` message gives its reasoning (``reasoning_content``, as some compatible APIs
log it), its text (an output) and its tool calls, in that order; ``tool`` messages (and the
legacy ``function`` role) are results. Arguments arrive as JSON text or as objects; text
that is not a JSON object is kept in ``raw_arguments``. Results are kept as logged. Ids
repeat in real logs (tau-bench reuses them within and across conversations), so results
are paired by id and order within the one run (:meth:`Run.pairs`), never across runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from evalsuite._conversations import (
    MESSAGE_KEYS,
    BadRecord,
    answer_alone,
    answered_at,
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


class Function(TypedDict):
    """The function a tool call names."""

    name: str
    arguments: NotRequired[str | dict[str, Any] | None]


class Custom(TypedDict):
    """A custom tool's call: its name and free-text input."""

    name: str
    input: NotRequired[str | None]


class ToolCallBody(TypedDict):
    """One entry of an assistant message's ``tool_calls``."""

    id: NotRequired[str | None]
    type: NotRequired[str]
    function: NotRequired[Function]
    custom: NotRequired[Custom]


class Message(TypedDict):
    """A Chat Completions message (unknown keys are ignored)."""

    role: str
    content: NotRequired[str | list[Any] | None]
    audio: NotRequired[Any]
    tool_calls: NotRequired[list[ToolCallBody] | None]
    tool_call_id: NotRequired[str | None]
    name: NotRequired[str | None]
    function_call: NotRequired[Function | None]
    reasoning_content: NotRequired[str | None]
    refusal: NotRequired[str | None]


class Choice(TypedDict):
    """The first choice of a ``chat.completion``."""

    message: Message
    finish_reason: NotRequired[str | None]


MESSAGES = TypeAdapter[list[Any]](list[Message])
CHOICE = TypeAdapter[Any](Choice)
MESSAGE = TypeAdapter[Any](Message)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NO_MESSAGES = ("expected the conversation's messages under 'messages' (or a request with "
                "them), or a chat.completion")


def openai_parts(path: Path, skips: Skips | None = None) -> Iterator[RunPart]:
    """Every conversation in an OpenAI Chat Completions log, its calls grouped into runs."""
    return conversation_parts(path, skips, convert, gather_chunks)


def convert(record: dict[str, Any], prefix: str) -> Call:
    """One record as the model call it logs."""
    request, request_loc, response, response_loc = (
        answer_alone(record, []) if record.get("object") == "chat.completion"
        else request_and_response(record))
    key = next((k for k in MESSAGE_KEYS if k in request), None)
    if key is None and not isinstance(response, dict | list):
        raise BadRecord(request_loc, _NO_MESSAGES)
    messages = validated(MESSAGES, request[key], [*request_loc, key]) if key else []
    base = at(prefix, *request_loc, key) if key else ""
    sent = [_turn(m, f"{base}[{i}]", [*request_loc, key, i])
            for i, m in enumerate(messages)] if key else []
    fields = header_fields(record)
    if isinstance(response, list):  # the chunks of a stream
        response = assemble_chunks(response)
    answer: list[Turn] = []
    waiting = False
    several = False
    if isinstance(response, dict):
        choices = response.get("choices")
        if isinstance(choices, list) and choices:
            read = [(validated(CHOICE, c, [*response_loc, "choices", i]),
                     [*response_loc, "choices", i]) for i, c in enumerate(choices)]
            stopped(fields, read[0][0].get("finish_reason"))
        elif "role" in response:  # a message where the completion would be
            read = [({"message": validated(MESSAGE, response, response_loc)}, response_loc)]
        else:
            raise BadRecord([*response_loc, "choices"], "expected a chat.completion with "
                                                        "choices")
        # Several choices (``n``): the agent went on with one, which this record does not
        # say; every one is read, and the run says so (a call of any may have run).
        several = len(read) > 1
        if several:
            fields["metadata"].setdefault("choices", []).append(
                f"a model call with {len(read)} choices, and the record does not show which "
                "one the agent took: the steps of every choice are kept")
        for choice, loc in read:
            message, reason = choice["message"], choice.get("finish_reason")
            answer.append(_turn(message, at(prefix, *loc), loc))
            waiting = waiting or bool(message.get("tool_calls") or message.get(
                "function_call")) or reason in ("tool_calls", "function_call")
        answered_at(answer, response.get("created"))
        for name in ("model", "system_fingerprint"):
            if isinstance(response.get(name), str):
                fields["metadata"].setdefault(name, response[name])
    response_body = response if isinstance(response, dict) else {}
    usage = usage_of(record.get("usage") or response_body.get("usage"),
                     "prompt_tokens", "completion_tokens")
    if usage is not None:
        fields["usage"] = usage
    return Call(sent, answer, fields, prefix, named=run_name(record, request),
                scope=scope_of(record, request),
                own_id=name_of(record.get("id")) or name_of(response_body.get("id")),
                response_id=name_of(response_body.get("id")), waiting=waiting,
                choices=several)


def _turn(message: dict[str, Any], place: str, loc: list[str | int]) -> Turn:
    role = message.get("role")
    if role not in ROLES:
        raise BadRecord([*loc, "role"],
                        f"expected one of {', '.join(sorted(ROLES))}, got {role!r}")
    content = text_of(message.get("content"))
    if role in ("system", "developer"):
        return Turn([], place, system=content or None)
    unread: list[str] = []
    if message.get("audio"):  # a spoken answer (or the reference sent back to it)
        unread.append("an assistant message's audio is not read as a step")
    return Turn(list(_steps(role, message, content, unread)), place, unread=unread)


def _steps(role: str, message: dict[str, Any], content: str,
           unread: list[str]) -> Iterator[Step]:
    if role == "user":
        yield UserInput(content=content)
    elif role == "assistant":
        if message.get("reasoning_content"):
            yield Reasoning(content=message["reasoning_content"])
        if content:
            yield Output(content=content)
        if message.get("refusal"):
            yield Output(content=message["refusal"])
        for call in message.get("tool_calls") or []:
            if "function" in call:
                arguments, raw = parse_arguments(call["function"].get("arguments"))
                name = call["function"]["name"]
            elif "custom" in call:  # free text, not JSON: kept as logged
                arguments, raw, name = {}, call["custom"].get("input"), call["custom"]["name"]
            else:  # a call of a kind not known here: said, never dropped
                unread.append(f"a tool call of type {call.get('type')!r} is not read")
                continue
            yield ToolCall(tool=name, call_id=call.get("id"), arguments=arguments,
                           raw_arguments=raw)
        legacy = message.get("function_call")
        if legacy:
            arguments, raw = parse_arguments(legacy.get("arguments"))
            yield ToolCall(tool=legacy["name"], arguments=arguments, raw_arguments=raw)
    else:  # tool, or the legacy function role; the run names a result from its call's id
        yield ToolResult(tool=message.get("name"), call_id=message.get("tool_call_id"),
                         result=content)


def gather_chunks(records: Iterator[tuple[Any, str]]) -> Iterator[tuple[Any, str]]:
    """The records, with the ``chat.completion.chunk`` lines of each stream joined into one
    ``chat.completion`` at the place of its first chunk.

    A stream ends when its finishing chunk (and the usage chunk after it, if any) is
    followed by a line that is not one of its chunks; streams may interleave.
    """
    streams: dict[str, tuple[list[dict[str, Any]], str]] = {}
    for record, place in records:
        chunk = isinstance(record, dict) and record.get("object") == "chat.completion.chunk"
        stream = str(record.get("id")) if chunk else None
        for done in [k for k, (chunks, _) in streams.items()
                     if k != stream and _finished(chunks)]:
            chunks, first = streams.pop(done)
            yield assemble_chunks(chunks), first
        if stream is None:
            yield record, place
        else:
            streams.setdefault(stream, ([], place))[0].append(record)
    for chunks, first in streams.values():
        yield assemble_chunks(chunks), first


def _finished(chunks: list[dict[str, Any]]) -> bool:
    """Whether every choice the stream has shown has its finishing chunk (with ``n`` > 1 the
    choices finish one by one, their chunks interleaved)."""
    finished: dict[Any, bool] = {}
    for chunk in chunks:
        for c in chunk.get("choices") or []:
            if isinstance(c, dict):
                index = c.get("index", 0)
                finished[index] = finished.get(index, False) or bool(c.get("finish_reason"))
    return bool(finished) and all(finished.values())


class _Choice:
    """One choice of a stream, added up from its deltas."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        self.finish = choice.get("finish_reason") or self.finish
        delta: dict[str, Any] = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
        for into, name in ((self.text, "content"), (self.reasoning, "reasoning_content"),
                           (self.refusal, "refusal")):
            if isinstance(delta.get(name), str):
                into.append(delta[name])
        for piece in delta.get("tool_calls") or []:
            if isinstance(piece, dict):
                _add_call_piece(self.calls, piece)

    def whole(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        return {"index": index, "message": message, "finish_reason": self.finish}


def assemble_chunks(chunks: list[Any]) -> dict[str, Any]:
    """The ``chat.completion`` a stream of chunks adds up to: every choice it streamed (a
    call with ``n`` > 1 streams several, by ``index``), each joined from its own deltas."""
    choices: dict[int, _Choice] = {}
    usage: Any = None
    first = next((c for c in chunks if isinstance(c, dict)), {})
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                index = choice.get("index", 0)
                choices.setdefault(index if isinstance(index, int) else 0, _Choice()).add(choice)
    if not choices:
        choices[0] = _Choice()  # a stream of usage alone still reads as one (empty) answer
    return {"id": first.get("id"), "object": "chat.completion", "model": first.get("model"),
            "choices": [choices[i].whole(i) for i in sorted(choices)], "usage": usage}


def _add_call_piece(calls: dict[int, dict[str, Any]], piece: dict[str, Any]) -> None:
    """A tool call's fragment: the first brings its id and name, the rest more arguments."""
    index: int = piece["index"] if isinstance(piece.get("index"), int) else len(calls)
    call = calls.setdefault(index, {"id": None, "type": "function",
                                    "function": {"name": "", "arguments": ""}})
    if piece.get("id"):
        call["id"] = piece["id"]
    function: dict[str, Any] = (piece["function"] if isinstance(piece.get("function"), dict)
                                else {})
    for name in ("name", "arguments"):
        if isinstance(function.get(name), str):
            call["function"][name] += function[name]
