"""The native JSONL format's fast path: a line decoded and checked without a pydantic model.

``reinstate ingest`` reads a log to count and summarise it; building a pydantic model for
each of a million steps cost about three times the JSON parse itself. Here each line is
decoded by msgspec straight into a small struct that carries the same fields under the same
rules as the run record's step models (:mod:`evalsuite._run`), which costs about one parse.

The structs accept a *subset* of what the pydantic models accept: msgspec is stricter about
types (no ``"5"`` for a number, no ``1`` for a bool, no Unix time for a datetime) and a line
it refuses is handed to the pydantic path, which either accepts it (the lax forms) or raises
the precise error it always did. So a log is accepted or refused exactly as before, and the
error messages are the pydantic path's own. A line whose time has more than six digits of
fraction is also handed over: msgspec rounds such a time, pydantic truncates it.

The pydantic models are built, from the line itself, only when a caller reads the steps.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

_RunId = Annotated[str, msgspec.Meta(min_length=1)]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_Money = Annotated[float, msgspec.Meta(ge=0)]


class _Line(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True):
    """A line of a native log: ``run_id`` and, on the step structs, ``kind`` (the tag)."""

    run_id: _RunId


class RunOutcomeLine(msgspec.Struct, forbid_unknown_fields=True):
    """:class:`evalsuite.RunOutcome`'s fields and rules."""

    success: bool | None = None
    escalated: bool | None = None
    human_corrected: bool | None = None
    stop_reason: str | None = None


class UsageLine(msgspec.Struct, forbid_unknown_fields=True):
    """:class:`evalsuite.Usage`'s fields and rules."""

    input_tokens: _Count | None = None
    output_tokens: _Count | None = None
    model_calls: _Count | None = None
    cost_usd: _Money | None = None


class HeaderLine(_Line, tag="run"):
    """A run header line (``_HeaderLine`` in :mod:`evalsuite._jsonl`)."""

    kind: ClassVar[str] = "run"
    schema_version: Literal[1] = 1
    agent: str | None = None
    agent_version: str | None = None
    started_at: datetime | None = None
    context: dict[str, Any] = {}
    outcome: RunOutcomeLine | None = None
    usage: UsageLine | None = None
    metadata: dict[str, Any] = {}


class UserInputLine(_Line, tag="user_input"):
    """:class:`evalsuite.UserInput` plus its run id."""

    kind: ClassVar[str] = "user_input"
    content: str
    at: datetime | None = None


class ReasoningLine(_Line, tag="reasoning"):
    """:class:`evalsuite.Reasoning` plus its run id."""

    kind: ClassVar[str] = "reasoning"
    content: str
    at: datetime | None = None


class ToolCallLine(_Line, tag="tool_call"):
    """:class:`evalsuite.ToolCall` plus its run id."""

    kind: ClassVar[str] = "tool_call"
    tool: str
    arguments: dict[str, Any] = {}
    call_id: str | None = None
    at: datetime | None = None
    raw_arguments: str | None = None
    arguments_logged: bool | None = None


class ToolResultLine(_Line, tag="tool_result"):
    """:class:`evalsuite.ToolResult` plus its run id (``result`` as logged: a JSON text is
    parsed only when the step model is built)."""

    kind: ClassVar[str] = "tool_result"
    tool: str | None = None
    call_id: str | None = None
    result: Any = None
    error: str | None = None
    at: datetime | None = None
    blocked: bool | None = None
    result_text: str | None = None


class OutputLine(_Line, tag="output"):
    """:class:`evalsuite.Output` plus its run id."""

    kind: ClassVar[str] = "output"
    content: str
    at: datetime | None = None


FAST_DECODER = msgspec.json.Decoder(
    HeaderLine | UserInputLine | ReasoningLine | ToolCallLine | ToolResultLine | OutputLine)
"""Decodes a line into its struct, or raises one of :data:`FAST_ERRORS`."""
FAST_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)
"""What the fast path raises for a line it cannot decide."""
# A time with more than six digits of fraction: msgspec would round it, pydantic truncates.
# Spelled out: faster than \d{7}.
LONG_FRACTION = re.compile(rb"\.\d\d\d\d\d\d\d")

