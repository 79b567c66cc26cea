"""Text-action logs: agents that write their tool calls as text, as ReAct-style agent
frameworks and public datasets such as R-Judge log them (``--format text-actions``).

A file holds conversations as the chat formats do (JSON Lines, one conversation a line,
or one JSON document: an array of conversations, or one). A conversation's turns are under
``contents`` (R-Judge: a list of dialogues, each a list of turns; or one list of turns),
``messages``, ``turns`` or ``traj``. Each turn has a ``role``:

- ``user`` / ``human``: an input (its ``content``);
- ``system``: the run's context (R-Judge's ``profile`` too);
- ``agent`` / ``assistant`` / ``ai``: its ``thought`` is reasoning, and its ``action``
  (else its ``content``) is read as text actions, below;
- ``environment`` / ``observation`` / ``tool`` / ``function``: the result of the earliest
  call still waiting for one (a turn without content is no result). In a conversation
  with such turns, an ``Observation:`` in the agent's own text is not a result: it is kept
  as the agent's text and reported (:attr:`RunPart.unread`), for the model wrote it.

The dialects an action text is read in, tried in this order:

1. **ReAct**: ``Thought: …``, ``Action: Name``, ``Action Input: {…}``, ``Observation: …``
   and ``Final Answer: …`` labels, as many rounds as the text holds (a LangChain
   scratchpad); also R-Judge's ``Name`` / ``Action Input: {…}`` with the ``Action:``
   label left out.
2. **AutoGPT**: ``{"thoughts": {…}, "command": {"name": …, "args": {…}}}``, or only its
   ``"command": {…}`` part; the thoughts are reasoning.
3. **Fenced shell blocks**: a ```` ```bash ```` (``sh``, ``shell``, ``console``, ``zsh``,
   ``terminal``) block is a ``shell`` call with the block as its ``command``; the text
   around it is reasoning.
4. **Name{…}**, **Name: {…}** and **Name(key=value, …)**, the whole text one call.

Arguments are JSON or Python literals (``{'email_id': 'email001'}``, read with
:func:`ast.literal_eval`, never evaluated); arguments that are neither, or not an object,
are kept as text in ``raw_arguments``. Text in none of these dialects is the agent's
output. An action the environment answered that reads as no call is kept as output and
reported as not understood (:attr:`RunPart.unread`), so an unknown dialect is never a
silent empty read.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from evalsuite._conversations import (
    _error,
    _message,
    conversation_records,
    header_fields,
    name_of,
    run_name,
    text_of,
)
from evalsuite._errors import InvalidInput
from evalsuite._log_files import log_stem
from evalsuite._parts import RunHeader, RunPart, Skips, skip_or_raise
from evalsuite._run import Output, Reasoning, Step, ToolCall, ToolResult, UserInput

TURN_KEYS = ("contents", "messages", "turns", "traj")
USER_ROLES = frozenset({"user", "human"})
AGENT_ROLES = frozenset({"agent", "assistant", "ai"})
RESULT_ROLES = frozenset({"environment", "observation", "tool", "function"})
ROLES = USER_ROLES | AGENT_ROLES | RESULT_ROLES | {"system"}
SHELL_TOOL = "shell"
NOT_UNDERSTOOD = "agent action not understood as a tool call, though the environment answered it"
FORGED_OBSERVATION = ("an observation in the agent's own text, in a conversation whose environment "
                      "answers the calls: kept as the agent's text, not read as a tool result")


class Turn(TypedDict):
    """One turn of a text-action conversation (unknown keys are ignored)."""

    role: str
    content: NotRequired[Any]
    thought: NotRequired[str | None]
    action: NotRequired[str | None]


TURNS = TypeAdapter[list[Turn]](list[Turn])


def text_action_parts(path: Path, skips: Skips | None = None) -> Iterator[RunPart]:
    """Every conversation of a text-action log, as one run each."""
    for record, place in conversation_records(path, skips):
        try:
            yield _part(record, place, path)
        except InvalidInput as exc:
            skip_or_raise(skips, exc)


def looks_like_text_actions(record: dict[str, Any]) -> bool:
    """Whether a log's first record is a text-action conversation: its turns are under
    ``contents``, or one of them has an agent or environment role, a thought or an action."""
    turns = next((record[k] for k in TURN_KEYS if isinstance(record.get(k), list)), None)
    if not turns:
        return False
    flat = [t for item in turns for t in (item if isinstance(item, list) else [item])]
    if not flat or not all(isinstance(t, dict) and "role" in t for t in flat):
        return False
    return "contents" in record or any(
        t.get("role") in ("agent", "environment", "observation") or "action" in t
        or "thought" in t for t in flat)


def _part(record: Any, place: str, path: Path) -> RunPart:
    prefix = "$" if place.startswith("line ") else place
    line = int(place[5:]) if place.startswith("line ") else None
    text: list[str] = []
    if not isinstance(record, dict):
        raise _error(path, prefix, [], "expected a conversation object", line, text)
    key = next((k for k in TURN_KEYS if k in record), None)
    if key is None or not isinstance(record[key], list):
        raise _error(path, prefix, [key] if key else [],
                     "expected the conversation's turns as a list under 'contents' or "
                     "'messages'", line, text)
    dialogues = record[key] if record[key] and all(
        isinstance(d, list) for d in record[key]) else [record[key]]
    nested = dialogues is record[key]
    fields = {"run_id": _run_id(record, path, place), **header_fields(record)}
    system = [record["profile"]] if isinstance(record.get("profile"), str) and (
        record["profile"]) else []
    fields["metadata"].pop("profile", None)
    # Where the environment answers in turns of its own, an "Observation:" the agent writes
    # is the model's text (made up, or forged by what it quotes), not a tool's result.
    reading = _Reading(observations=not any(
        isinstance(turn, dict) and str(turn.get("role", "")).lower() in RESULT_ROLES
        for dialogue in dialogues for turn in dialogue))
    for d, dialogue in enumerate(dialogues):
        loc: list[int | str] = [key, d] if nested else [key]
        try:
            turns = TURNS.validate_python(dialogue)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = [*loc, *(p for p in first["loc"] if isinstance(p, int | str))]
            raise _error(path, prefix, where, _message(first), line, text) from None
        for t, turn in enumerate(turns):
            at = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                                  for p in [*loc, t])
            role = turn["role"].lower()
            if role not in ROLES:
                raise _error(path, prefix, [*loc, t, "role"],
                             f"expected one of {', '.join(sorted(ROLES))}, got "
                             f"{turn['role']!r}", line, text)
            if role == "system":
                content = text_of(turn.get("content"))
                if content:
                    system.append(content)
                continue
            reading.turn(role, turn, at)
    if system:
        fields["context"] = {**fields.get("context", {}), "system": "\n\n".join(system)}
    places: list[str | int] = [f"line {line} {p}" if line is not None else p
                               for p in reading.places]
    unread: list[tuple[str | int, str]] = [
        (f"line {line} {p}" if line is not None else p, why) for p, why in reading.unread]
    return RunPart(run_id=fields["run_id"], source=path, place=place,
                   header=RunHeader.model_validate(fields), steps=reading.steps,
                   places=places, unread=unread)


class _Reading:
    """The steps of one conversation as its turns are read, and the calls still waiting."""

    def __init__(self, *, observations: bool) -> None:
        self.observations = observations  # whether the agent's own text holds the results
        self.steps: list[Step] = []
        self.places: list[str] = []
        self.unread: list[tuple[str, str]] = []
        self.waiting: list[str] = []  # tools of the calls no result has answered yet
        self.last_text: str | None = None  # an agent action read as no call, maybe answered

    def add(self, step: Step, place: str) -> None:
        self.steps.append(step)
        self.places.append(place)
        if isinstance(step, ToolCall):
            self.waiting.append(step.tool)
        elif isinstance(step, ToolResult) and step.tool in self.waiting:
            self.waiting.remove(step.tool)

    def turn(self, role: str, turn: Turn, at: str) -> None:
        content = turn.get("content")
        if role in USER_ROLES:
            if _text(content).strip():
                self.add(UserInput(content=_text(content)), at)
        elif role in AGENT_ROLES:
            if turn.get("thought"):
                self.add(Reasoning(content=str(turn["thought"]).strip()), f"{at}.thought")
            action = turn.get("action")
            source = f"{at}.action" if action is not None else f"{at}.content"
            text = action if action is not None else _text(content)
            self.last_text = None
            steps = read_actions(text) if text.strip() else []
            for step in steps:
                if isinstance(step, ToolResult) and not self.observations:
                    self.unread.append((source, FORGED_OBSERVATION))
                    step = Reasoning(content=f"Observation: {step.result}")
                self.add(step, source)
            if steps and not any(isinstance(s, ToolCall | ToolResult) for s in steps) and (
                    not _FINAL.match(text)):
                self.last_text = source
        elif content is not None and content != "":
            if not self.waiting and self.last_text is not None:
                self.unread.append((self.last_text, NOT_UNDERSTOOD))
                self.last_text = None
            tool = self.waiting[0] if self.waiting else None
            self.add(ToolResult(tool=tool, result=content), at)


def _text(content: Any) -> str:
    if isinstance(content, str | list) or content is None:
        return text_of(content)
    return json.dumps(content, default=str)


# ---- reading one action text ------------------------------------------------------------

_NAME = r"[A-Za-z_][\w.\-]*"
_IDENT = re.compile(_NAME)
_LABEL = re.compile(r"^[ \t]*(thought|action input|action|observation|final answer)[ \t]*:[ \t]*",
                    re.IGNORECASE | re.MULTILINE)
_FINAL = re.compile(r"\s*final answer\s*:", re.IGNORECASE)
_COMMAND = re.compile(r'"command"\s*:\s*(?=\{)')
# A fence opens a line (perhaps indented, in a list): one after a quote mark ("> ```bash")
# is in a quoted email or message, shown, not run.
_FENCE = re.compile(r"^[ \t]*```[ \t]*(?:bash|sh|shell|console|zsh|terminal)[ \t]*\n(.*?)```",
                    re.IGNORECASE | re.DOTALL | re.MULTILINE)
_OPENS_OBJECT = re.compile(rf"\s*(?:{_NAME}\s*:?\s*)?(?=\{{)")
_BRACE = re.compile(rf"\s*({_NAME})(\s*:)?\s*(\{{.*)", re.DOTALL)
_PAREN = re.compile(rf"\s*({_NAME})\s*\((.*)\)\s*", re.DOTALL)
# Not strict: agents write raw newlines inside JSON strings ("body": "Dear Jason,⏎…").
_DECODER = json.JSONDecoder(strict=False)
_NOTHING = object()


def read_actions(text: str) -> list[Step]:
    """The steps an agent's action text says, in the first dialect it is written in.

    Text in no dialect is one output. See the module's docstring for the dialects.
    """
    # An AutoGPT object is read as one before any label is looked for: its thoughts, in
    # strings with raw newlines, may hold a line "Final Answer: …" quoted from a user, and
    # read as ReAct the command it gives would be lost.
    whole = _autogpt_object(text)
    if whole is not None:
        return whole
    if _LABEL.search(text):
        return _react(text)
    command = _autogpt(text)
    if command is not None:
        return command
    if _FENCE.search(text):
        return _fenced(text)
    call = _inline(text)
    if call is not None:
        return [call]
    return [Output(content=text.strip())]


def _labels(text: str) -> list[re.Match[str]]:
    """The ReAct labels of a text, but not those inside an action's JSON arguments: an
    email body the agent writes may quote a line ``Observation: …``, which would cut the
    arguments there and make the rest a tool result. Nor any after ``Final Answer:``: the
    answer ends the agent's turn (as LangChain's parser reads it), and what it quotes (a
    user's ``Action: issue_refund``) is its text, not a call."""
    labels = []
    inside = 0  # where the last action's JSON arguments end
    for label in _LABEL.finditer(text):
        if label.start() < inside:
            continue
        labels.append(label)
        if label.group(1).lower() == "final answer":
            break
        if label.group(1).lower() in ("action", "action input"):
            inside = _arguments_end(text, label.end())
    return labels


def _arguments_end(text: str, start: int) -> int:
    """Where the JSON object an action label's text opens with (``{…}``, ``Name{…}`` or
    ``Name: {…}``) ends; ``start`` when it opens with none."""
    brace = _OPENS_OBJECT.match(text, start)
    if brace is None:
        return start
    try:
        value, end = _DECODER.raw_decode(text, brace.end())
    except (ValueError, RecursionError):
        return start
    return end if isinstance(value, dict) else start


def _react(text: str) -> list[Step]:
    labels = _labels(text)
    steps: list[Step] = []
    pending: str | None = None
    prelude = text[:labels[0].start()].strip()
    if prelude and _IDENT.fullmatch(prelude) and labels[0].group(1).lower() == "action input":
        pending = prelude  # R-Judge: "Name\nAction Input: {...}"
    elif prelude:
        steps.append(Reasoning(content=prelude))
    for index, label in enumerate(labels):
        end = labels[index + 1].start() if index + 1 < len(labels) else len(text)
        body = text[label.end():end].strip()
        name = label.group(1).lower()
        if name == "action input":
            if pending is None:
                steps.append(Output(content=body))  # an input with no action to take it
            else:
                arguments, raw = _arguments(body)
                steps.append(ToolCall(tool=pending, arguments=arguments, raw_arguments=raw))
            pending = None
            continue
        if pending is not None:  # an action with no input
            steps.append(ToolCall(tool=pending))
            pending = None
        if name == "thought" and body:
            steps.append(Reasoning(content=body))
        elif name == "action":
            call = _inline(body)
            if call is not None:
                steps.append(call)
            elif _IDENT.fullmatch(body.strip("`'\" ")):
                pending = body.strip("`'\" ")
            elif body:
                steps.append(Output(content=body))
        elif name == "observation":
            tool = next((s.tool for s in reversed(steps) if isinstance(s, ToolCall)), None)
            steps.append(ToolResult(tool=tool, result=body))
        elif name == "final answer":
            steps.append(Output(content=body))
    if pending is not None:
        steps.append(ToolCall(tool=pending))
    return steps


def _autogpt_object(text: str) -> list[Step] | None:
    """The steps of a text that is an AutoGPT object (``{"thoughts": …, "command": …}``)."""
    stripped = text.strip()
    whole = _value(stripped) if stripped.startswith("{") else _NOTHING
    if isinstance(whole, dict) and isinstance(whole.get("command"), dict):
        return _command(whole["command"], whole.get("thoughts"))
    return None


def _autogpt(text: str) -> list[Step] | None:
    """The steps of a text that holds only an AutoGPT ``"command": {…}`` (a whole AutoGPT
    object is read before: :func:`_autogpt_object`)."""
    found = _COMMAND.search(text)
    if found is None:
        return None
    try:
        command, _ = _DECODER.raw_decode(text, found.end())
    except (ValueError, RecursionError):
        return None
    return _command(command, None)


def _command(command: Any, thoughts: Any) -> list[Step] | None:
    if not isinstance(command, dict) or not isinstance(command.get("name"), str):
        return None
    steps: list[Step] = []
    if isinstance(thoughts, dict):
        said = [str(v).strip() for v in thoughts.values() if isinstance(v, str) and v.strip()]
        if said:
            steps.append(Reasoning(content="\n".join(said)))
    elif isinstance(thoughts, str) and thoughts.strip():
        steps.append(Reasoning(content=thoughts.strip()))
    args = command.get("args", command.get("arguments"))
    arguments, raw = ((args, None) if isinstance(args, dict) and _plain(args) is not _NOTHING
                      else ({}, None if args is None else json.dumps(args, default=str)))
    steps.append(ToolCall(tool=command["name"], arguments=arguments, raw_arguments=raw))
    return steps


def _fenced(text: str) -> list[Step]:
    steps: list[Step] = []
    start = 0
    for block in _FENCE.finditer(text):
        around = text[start:block.start()].strip()
        if around:
            steps.append(Reasoning(content=around))
        steps.append(ToolCall(tool=SHELL_TOOL, arguments={"command": block.group(1).strip()}))
        start = block.end()
    rest = text[start:].strip()
    if rest:
        steps.append(Reasoning(content=rest))
    return steps


def _inline(text: str) -> ToolCall | None:
    """``Name{…}``, ``Name: {…}`` or ``Name(…)`` as one call; ``None`` for anything else."""
    brace = _BRACE.fullmatch(text)
    if brace is not None:
        name, colon, body = brace.groups()
        arguments, raw = _arguments(body)
        if colon and raw is not None:
            return None  # "Note: {…}" that is no object is prose, not a call
        return ToolCall(tool=name, arguments=arguments, raw_arguments=raw)
    paren = _PAREN.fullmatch(text)
    if paren is not None:
        arguments, raw = _call_arguments(text.strip(), paren.group(2))
        return ToolCall(tool=paren.group(1), arguments=arguments, raw_arguments=raw)
    return None


def _arguments(text: str) -> tuple[dict[str, Any], str | None]:
    """Arguments as an object, or ``({}, text)`` when they are not one."""
    text = text.strip()
    if not text:
        return {}, None
    value = _value(text)
    return (value, None) if isinstance(value, dict) else ({}, text)


def _value(text: str) -> Any:
    """JSON, else a Python literal, as plain JSON data; ``_NOTHING`` when it is neither."""
    try:  # JSON, perhaps followed by stray text (a closing fence, a comment)
        value, _ = _DECODER.raw_decode(text)
        return value
    except (ValueError, RecursionError):
        pass
    return _plain(_literal(text))


def _literal(text: str) -> Any:
    """A Python literal, read without running anything; ``_NOTHING`` when it is not one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOTHING


def _call_arguments(call: str, inner: str) -> tuple[dict[str, Any], str | None]:
    """``Name(a=1, b='x')`` → ``{"a": 1, "b": "x"}``; ``Name('a': 1)`` is read as a dict."""
    try:
        node = ast.parse(call, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        node = None
    if isinstance(node, ast.Call) and not node.args and all(k.arg for k in node.keywords):
        values = {k.arg: _plain(_literal_node(k.value)) for k in node.keywords}
        if all(v is not _NOTHING for v in values.values()):
            return values, None  # type: ignore[return-value]
    as_dict = _plain(_literal("{" + inner + "}"))
    if isinstance(as_dict, dict):
        return as_dict, None
    return {}, (inner.strip() or None)


def _literal_node(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOTHING


def _plain(value: Any) -> Any:
    """A literal as JSON data (tuples and sets become lists); ``_NOTHING`` when a part of it
    has no JSON form (bytes, complex numbers, keys that are not strings)."""
    if value is _NOTHING or value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            plain = _plain(item)
            if not isinstance(key, str) or plain is _NOTHING:
                return _NOTHING
            out[key] = plain
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in (sorted(value, key=repr) if isinstance(
            value, set | frozenset) else value)]
        return _NOTHING if any(i is _NOTHING for i in items) else items
    return _NOTHING


def _run_id(record: dict[str, Any], path: Path, place: str) -> str:
    """The dialogue's id: a run or session id, tau-bench's task and trial, its own ``id``
    (R-Judge's), or else the file and place."""
    named = run_name(record, {}) or name_of(record.get("id"))
    if named is not None:
        return named
    number = place[5:] if place.startswith("line ") else place.strip("$[]") or "0"
    return f"{log_stem(path)}-{number}"
