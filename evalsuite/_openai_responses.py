"""OpenAI Responses API logs: ``Response`` objects, per-call request/response records and
stream events.

A record is read as one model call (:mod:`evalsuite._model_calls` groups the calls of one
conversation into one run). ``client.responses.create`` returns a ``Response`` whose
``output`` items are the answer: ``message`` (its ``output_text`` parts are outputs, a
``refusal`` too), ``function_call`` and ``custom_tool_call`` (calls), ``reasoning`` (its
summary, or its text), and built-in tools' ``…_call`` items (a call named after the tool,
with its result when the item carries one). The request's ``input`` (a string, or items:
messages with ``input_text`` parts, ``function_call_output`` results, earlier output items
sent back) is what was sent, and ``instructions`` is the run's context. A ``Response``
does not hold its input, so a log of bare ``Response`` dumps has the answers but not the
user's words or the tools' results: teams that want them log the request too
(``{"request": {...}, "response": Response.model_dump()}``).

Calls are one run when they chain (``previous_response_id``), name one ``conversation``,
or send a dialogue that extends an earlier call's. Of a stream's events, the one that ends
it (``response.completed``, ``…incomplete``, ``…failed``) carries the whole ``Response``;
the deltas before it add nothing to it and are passed over.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from evalsuite._conversations import (
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


class Item(TypedDict):
    """An input or output item (unknown keys are ignored)."""

    type: NotRequired[str]
    role: NotRequired[str]
    content: NotRequired[str | list[Any] | None]
    call_id: NotRequired[str | None]
    id: NotRequired[str | None]
    name: NotRequired[str]
    arguments: NotRequired[str | dict[str, Any] | None]
    input: NotRequired[Any]
    output: NotRequired[Any]
    error: NotRequired[Any]
    summary: NotRequired[list[Any] | None]
    action: NotRequired[Any]
    # what built-in tools' calls ran: kept, or validation would drop them unsaid
    queries: NotRequired[Any]
    code: NotRequired[Any]
    operation: NotRequired[Any]
    actions: NotRequired[Any]
    status: NotRequired[Any]
    # what built-in tools the server runs returned: kept for the same reason
    results: NotRequired[Any]
    outputs: NotRequired[Any]
    result: NotRequired[Any]


ITEMS = TypeAdapter[list[Any]](list[Item])
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ROLES = frozenset({"user", "system", "developer", "assistant"})
# Items that say nothing the agent did: a reference to an earlier item, the tools an MCP
# server lists, an approval asked or given (the ``mcp_call`` that follows is the act), the
# tools a search found or added, a compacted history the API alone can read.
_NO_STEP = frozenset({"item_reference", "mcp_list_tools", "mcp_approval_request",
                      "mcp_approval_response", "tool_search_output", "additional_tools",
                      "compaction", "compaction_trigger", "configuration_update"})
# Where a built-in tool's call without an ``action`` holds what it ran: file search's
# ``queries``, the code interpreter's ``code``, ``apply_patch``'s ``operation`` (the file
# and its diff), tool search's ``arguments``, a computer call's batch of ``actions``.
_BUILT_IN_ARGUMENTS = ("queries", "code", "operation", "arguments", "actions")
# The results of built-in tools the client runs (the computer, a shell, ``apply_patch``),
# sent back in the next request's input, each naming its call by the call's ``call_id``
# (``local_shell_call_output`` by its ``id``, which is that call id).
_BUILT_IN_OUTPUTS = frozenset({"computer_call_output", "local_shell_call_output",
                               "shell_call_output", "apply_patch_call_output"})
_NO_RESPONSE = ("expected a Response (object 'response'), a request with 'input', or a "
                "stream event that ends a response")


def responses_parts(path: Path, skips: Skips | None = None) -> Iterator[RunPart]:
    """Every model call in an OpenAI Responses API log, grouped into runs."""
    return conversation_parts(path, skips, convert, gather_events)


def gather_events(records: Iterator[tuple[Any, str]]) -> Iterator[tuple[Any, str]]:
    """The records, without the stream events that come before a response's last one.

    A stream cut off before its last event still counts: its first event's response (in
    progress, perhaps with no output) is read at the end, so it is not silently lost.
    """
    started: dict[str, tuple[Any, str]] = {}
    for record, place in records:
        kind = record.get("type") if isinstance(record, dict) else None
        if isinstance(kind, str) and kind.startswith("response."):
            response = record.get("response")
            key = name_of(response.get("id")) if isinstance(response, dict) else None
            if kind not in _ENDS:
                if kind == "response.created" and key is not None:
                    started[key] = ({"type": "response.incomplete", "response": response}, place)
                continue
            started.pop(key or "", None)
        yield record, place
    yield from started.values()


def convert(record: dict[str, Any], prefix: str) -> Call:
    """One record as the model call it logs."""
    request, request_loc, response, response_loc = (
        answer_alone(record, []) if record.get("object") == "response"
        else answer_alone(record.get("response"), ["response"]) if record.get("type") in _ENDS
        else request_and_response(record))
    body = response if isinstance(response, dict) else {}
    if "input" not in request and "output" not in body:
        raise BadRecord(request_loc, _NO_RESPONSE)
    sent: list[Turn] = []
    instructions = request.get("instructions") or body.get("instructions")
    if instructions:
        where = request_loc if request.get("instructions") else response_loc
        sent.append(Turn([], at(prefix, *where, "instructions"),
                         system=_instructions(instructions)))
    raw_input = request.get("input")
    if isinstance(raw_input, str):
        sent.append(Turn([UserInput(content=raw_input)], at(prefix, *request_loc, "input")))
    elif raw_input is not None:
        loc = [*request_loc, "input"]
        items = validated(ITEMS, raw_input, loc)
        sent.extend(_turn(item, at(prefix, *loc, i), [*loc, i]) for i, item in enumerate(items))
    answer: list[Turn] = []
    if "output" in body:
        loc = [*response_loc, "output"]
        items = validated(ITEMS, body["output"] or [], loc)
        answer = [_turn(item, at(prefix, *loc, i), [*loc, i]) for i, item in enumerate(items)]
        answered_at(answer, body.get("created_at"))
    # a bare Response's own fields (temperature, status, …) are settings, not the run's
    fields = header_fields(record if record is not body else {})
    if isinstance(body.get("model"), str):
        fields["metadata"]["model"] = body["model"]
    incomplete = body.get("incomplete_details")
    stopped(fields, incomplete.get("reason") if isinstance(incomplete, dict) else
            body.get("status"))
    usage = usage_of(body.get("usage"), "input_tokens", "output_tokens")
    if usage is not None:
        fields["usage"] = usage
    named = run_name(record, request) or name_of(body.get("conversation"))
    previous = request.get("previous_response_id") or body.get("previous_response_id")
    waiting = any(t.steps and isinstance(t.steps[-1], ToolCall) for t in answer)
    return Call(sent, answer, fields, prefix, named=named, scope=scope_of(record, request),
                own_id=name_of(record.get("id")) or name_of(body.get("id")),
                response_id=name_of(body.get("id")), previous_id=name_of(previous),
                waiting=waiting)


def _instructions(value: Any) -> str:
    if isinstance(value, list):  # instructions as input items (a prompt template's)
        return "\n\n".join(text_of(v.get("content")) for v in value
                           if isinstance(v, dict) and isinstance(v.get("content"), str | list))
    return text_of(value) if isinstance(value, str | list) else ""


def _turn(item: dict[str, Any], place: str, loc: list[str | int]) -> Turn:
    kind = item.get("type", "message")
    if kind == "message" or ("role" in item and "type" not in item):
        role = item.get("role")
        if role not in _ROLES:
            raise BadRecord([*loc, "role"],
                            f"expected one of {', '.join(sorted(_ROLES))}, got {role!r}")
        content = item.get("content")
        text = text_of(content if isinstance(content, str) else [
            {"text": p["refusal"]} if isinstance(p, dict) and "refusal" in p else p
            for p in content or []])
        if role in ("system", "developer"):
            return Turn([], place, system=text or None)
        if role == "user":
            return Turn([UserInput(content=text)], place)
        return Turn([Output(content=text)] if text else [], place)
    unread: list[str] = []
    return Turn(list(_item_steps(kind, item, unread)), place, unread=unread)


def _item_steps(kind: str, item: dict[str, Any], unread: list[str]) -> Iterator[Step]:
    if kind == "function_call":
        arguments, raw = parse_arguments(item.get("arguments"))
        yield ToolCall(tool=item.get("name", ""), call_id=item.get("call_id"),
                       arguments=arguments, raw_arguments=raw)
    elif kind == "custom_tool_call":  # free text, not JSON: kept as logged
        yield ToolCall(tool=item.get("name", ""), call_id=item.get("call_id"),
                       raw_arguments=text_of(item.get("input")))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        yield ToolResult(call_id=item.get("call_id"), result=text_of(item.get("output")))
    elif kind == "reasoning":
        parts = item.get("summary") or item.get("content") or []
        text = text_of(parts) if isinstance(parts, list) else ""
        yield Reasoning(content=text or "[reasoning not shown]")
    elif kind == "mcp_call":
        arguments, raw = parse_arguments(item.get("arguments"))
        yield ToolCall(tool=item.get("name", ""), call_id=item.get("id"),
                       arguments=arguments, raw_arguments=raw)
        if item.get("error"):
            yield ToolResult(tool=item.get("name"), call_id=item.get("id"),
                             error=text_of(item["error"]))
        elif item.get("output") is not None:
            yield ToolResult(tool=item.get("name"), call_id=item.get("id"),
                             result=text_of(item["output"]))
    elif kind in _BUILT_IN_OUTPUTS:
        yield _built_in_result(kind, item)
    elif kind.endswith("_call"):  # a built-in tool (web_search, file_search, …)
        action = item.get("action")
        arguments = action if isinstance(action, dict) else {
            k: v for k, v in item.items() if k in _BUILT_IN_ARGUMENTS and v is not None}
        # the tools the client runs are answered by ``call_id``; the server's own by ``id``
        tool, call_id = kind.removesuffix("_call"), item.get("call_id") or item.get("id")
        yield ToolCall(tool=tool, call_id=call_id, arguments=arguments)
        result = _built_in_call_result(kind, item)
        if result is not None:
            yield ToolResult(tool=tool, call_id=call_id, **result)
    elif kind not in _NO_STEP:  # an item this reader does not know: said, never dropped
        unread.append(f"an item of type {kind!r} is not read as a step")


def _built_in_call_result(kind: str, item: dict[str, Any]) -> dict[str, Any] | None:
    """What a built-in tool the server ran returned, as its call's item holds it: a file
    search's ``results``, the code interpreter's ``outputs``, the image generated, a web
    search's ``sources``; None when the item holds none."""
    error = item.get("error")  # an image generation refused, say
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        return {"error": str(message or error)}
    action = item.get("action")
    found = (item.get("results") if kind == "file_search_call"
             else item.get("outputs") if kind == "code_interpreter_call"
             else item.get("result") if kind == "image_generation_call"
             else action.get("sources") if kind == "web_search_call" and isinstance(action, dict)
             else None)
    if found is None:
        return None
    if kind == "image_generation_call" and isinstance(found, str):
        # the image itself, base64 (megabytes): only its size is kept, as for inline images
        return {"result": f"[image: {len(found)} characters of base64 not kept]"}
    return {"result": _without_image_bytes(found)}


def _built_in_result(kind: str, item: dict[str, Any]) -> ToolResult:
    """A ``…_call_output`` item as the result of the built-in call it names."""
    tool, call_id = kind.removesuffix("_call_output"), item.get("call_id") or item.get("id")
    output = item.get("output")
    if kind == "apply_patch_call_output" and item.get("status") == "failed":
        return ToolResult(tool=tool, call_id=call_id,
                          error=text_of(output) if isinstance(output, str) and output
                          else "the patch failed")
    if kind == "computer_call_output":
        output = _without_image_bytes(output)
    return ToolResult(tool=tool, call_id=call_id, result=output)


def _without_image_bytes(value: Any) -> Any:
    """``value`` with every image inlined as a ``data:`` URL (a screenshot, a plot) replaced
    by a short note of its size: the bytes say nothing a rule or a reader can use, and a few
    megabytes of base64 per step would bloat every run stored and shown."""
    if isinstance(value, str) and value.startswith("data:") and ";base64," in value:
        media, data = value.removeprefix("data:").split(",", 1)
        return f"[{media.split(';', 1)[0] or 'data'}: {len(data)} characters of base64 not kept]"
    if isinstance(value, dict):
        return {k: _without_image_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_image_bytes(v) for v in value]
    return value
