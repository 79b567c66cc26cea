"""Run logs in any supported format: which format a file is, and its runs as a stream.

Formats: ``jsonl`` (the native run format), ``otel`` (OTLP/JSON GenAI traces),
``openai`` (Chat Completions conversations, calls, completions and chunks), ``anthropic``
(Messages conversations, calls and messages), ``openai-responses`` (Responses API),
``text-actions`` (agents that write their calls as text: ReAct, AutoGPT, R-Judge), and
any plugin reader (:mod:`evalsuite._readers`). ``auto`` looks at the first record, then
asks the installed plugins' detectors. Nothing here holds a whole log: commands read the
parts they need and put together only the runs they must show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

from evalsuite._anthropic import anthropic_parts
from evalsuite._conversations import (
    MESSAGE_KEYS,
    first_value,
    model_api_format,
    read_json_text,
    request_and_response,
)
from evalsuite._documents import load_json
from evalsuite._errors import InvalidInput
from evalsuite._files import require_regular
from evalsuite._jsonl import native_parts
from evalsuite._openai_chat import openai_parts
from evalsuite._openai_responses import responses_parts
from evalsuite._otel import otel_files_parts, otel_parts
from evalsuite._otel_sdk_json import first_document, is_sdk_json
from evalsuite._parts import RunPart, Skips, merge_parts
from evalsuite._readers import detect_plugin, is_plugin_format, load_reader, plugin_parts
from evalsuite._run import Run
from evalsuite._text_actions import looks_like_text_actions, text_action_parts

LogFormat = Literal["jsonl", "otel", "openai", "anthropic", "openai-responses", "text-actions"]
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
_READERS: dict[str, Callable[[Path, Skips | None], Iterator[RunPart]]] = {
    "jsonl": native_parts, "otel": otel_parts, "openai": openai_parts,
    "anthropic": anthropic_parts, "openai-responses": responses_parts,
    "text-actions": text_action_parts,
}
_NOT_A_LOG = ("not a run log: expected native JSON Lines (kind, run_id), OTLP/JSON "
              "(resourceSpans or resourceLogs), OpenAI or Anthropic conversations (messages), "
              "calls or responses, text-action turns (contents), or a format a reader plugin "
              "detects")


def detect_format(path: Path) -> str:
    """The format of a log file, from its first record; a file no bundled format
    recognises is offered to the installed plugin readers' detectors."""
    require_regular(path)
    try:
        return _bundled_format(path)
    except InvalidInput:
        plugin = detect_plugin(path)
        if plugin is None:
            raise
        return plugin


def is_log_format(name: str) -> bool:
    """Whether ``name`` names a format: a bundled one, or a plugin reader."""
    return name in _READERS or is_plugin_format(name)


def _bundled_format(path: Path) -> LogFormat:
    first = first_value(path)
    if first is None and is_sdk_json(first_document(path)):
        return "otel"  # spans and log records as the SDK's console exporters write them
    if first is None:
        try:
            first = load_json(read_json_text(path))
        except json.JSONDecodeError as exc:
            raise InvalidInput(path, "", f"{_NOT_A_LOG} (not valid JSON: {exc.msg})",
                               line=exc.lineno) from None
    if isinstance(first, list):
        first = first[0] if first and isinstance(first[0], dict) else {}
        if "role" in first:
            first = {"messages": [first]}
    if not isinstance(first, dict):
        raise InvalidInput(path, "$", _NOT_A_LOG, line=1)
    if "resourceSpans" in first or "resourceLogs" in first or is_sdk_json(first):
        return "otel"
    if "run_id" in first and "kind" in first:
        return "jsonl"
    if looks_like_text_actions(first):
        return "text-actions"
    if (shape := model_api_format(first)) is not None:
        return shape
    first = request_and_response(first)[0]
    messages = next((first[k] for k in MESSAGE_KEYS if isinstance(first.get(k), list)), None)
    if messages is None:
        raise InvalidInput(path, "", _NOT_A_LOG, line=1)
    return "anthropic" if _anthropic(first, messages) else "openai"


def _anthropic(record: dict[str, Any], messages: list[Any]) -> bool:
    """Anthropic's shape: a top-level system, content blocks, no tool or system roles."""
    if isinstance(record.get("system"), str | list):
        return True
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") in ("system", "developer", "tool", "function") or (
                "tool_calls" in message):
            return False
        content = message.get("content")
        if isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") in (
                    "tool_use", "tool_result", "thinking", "redacted_thinking")
                for b in content):
            return True
    return False


def read_log(path: Path, fmt: str = "auto", *, skips: Skips | None = None,
             defer_steps: bool = False, headers: bool = True) -> Iterator[RunPart]:
    """The parts of every run in one log file, validated as they stream.

    ``fmt`` is ``auto``, a bundled format, an installed reader plugin's name or
    ``module:callable``. A bad record raises :class:`InvalidInput` naming file, line and
    place; with ``skips`` it is counted there instead and reading goes on. With
    ``defer_steps``, a reader that can (native, OTLP/JSON) checks each record without
    building its step model, built when the part's ``steps`` are read: for a caller that
    counts steps (``RunPart.records``) more than it reads them. With ``defer_steps`` and
    not ``headers``, a caller that never reads a part's header says so: an OTLP/JSON
    trace's header then holds only its run id, agent, start and trace ids, and the trace's
    spans are let go as soon as its part is made (they are what a header is found in).
    """
    chosen = detect_format(path) if fmt == "auto" else fmt
    if chosen not in _READERS:
        load_reader(chosen)  # a name that names no reader fails now, not at the first part
    require_regular(path)
    if chosen == "jsonl" and defer_steps:
        return native_parts(path, skips, defer=True)
    if chosen == "otel" and defer_steps:
        return otel_parts(path, skips, defer=True, headers=headers)
    if chosen in _READERS:
        return _READERS[chosen](path, skips)
    return plugin_parts(chosen, path, skips)


def read_logs(paths: Iterable[Path], fmt: str = "auto", *, agent: str | None = None,
              skips: Skips | None = None, defer_steps: bool = False,
              headers: bool = True) -> Iterator[RunPart]:
    """The parts of every run in several logs, optionally only one agent's.

    With ``agent``, runs that name no agent are taken as that agent's (and stamped so),
    and runs of another agent are left out, but not a part naming the agent after one
    naming another (a conversation handed over to it); a part naming no agent follows the
    last part of its run that named one. Every file is checked to exist
    before any is read, so a typo fails before work is done. ``defer_steps`` and ``headers`` are as
    in :func:`read_log`: an OTLP/JSON trace's agent is found without its header, so
    ``headers=False`` still filters by agent, and a header read later is stamped too.
    """
    files = list(paths)
    for path in files:
        require_regular(path)
    others: set[str] = set()
    for group, chosen in _read_together(files, fmt):
        parts = (read_log(group[0], chosen, skips=skips, defer_steps=defer_steps,
                          headers=headers)
                 if len(group) == 1
                 else otel_files_parts(group, skips, defer=defer_steps, headers=headers))
        if agent is None:
            yield from parts
            continue
        for part in parts:
            raw = part.raw_header
            if raw is not None:  # the header's fields, its model not built: the agent is one
                named = raw.get("agent")
                if named is not None and named != agent:
                    others.add(part.run_id)
                    continue
                if named is None and part.run_id in others:
                    continue
                if named is None:
                    raw["agent"] = agent  # as stamped on the model when it is built
                else:
                    others.discard(part.run_id)  # handed (back) over to the agent
                yield part
                continue
            header = part.header
            if header is not None and header.agent not in (None, agent):
                others.add(part.run_id)
                continue
            # A part that names the agent is its own, whoever an earlier part of the run
            # named (a conversation handed over between agents): only an unnamed part
            # follows the run's earlier parts.
            if (header is None or header.agent is None) and part.run_id in others:
                continue
            if header is not None and header.agent is None:
                part.header = header.model_copy(update={"agent": agent})
            elif header is not None:
                # Handed (back) over to the agent: its later unnamed parts are its own (a
                # record of another run between two of its steps starts such a part).
                others.discard(part.run_id)
            yield part


def _read_together(files: list[Path], fmt: str) -> list[tuple[list[Path], str]]:
    """The files one by one with their formats, but the OTLP/JSON ones all together, where
    the first of them is: a trace's spans and its log events (content, in event mode) may
    be in two files. Each file's format is detected here once (a JSON document is parsed
    whole to be detected), and the reader is given it."""
    groups: list[tuple[list[Path], str]] = []
    otel: list[Path] | None = None
    for path in files:
        chosen = detect_format(path) if fmt == "auto" else fmt
        if chosen != "otel":
            groups.append(([path], chosen))
        elif otel is None:
            otel = [path]
            groups.append((otel, chosen))
        else:
            otel.append(path)
    return groups


def read_log_runs(path: Path, fmt: str = "auto") -> list[Run]:
    """Every run of one log, whole. For small logs: this holds them all in memory."""
    return merge_parts(read_log(path, fmt))

