"""A GenAI trace's steps as light records, built as step models only when they are read.

``reinstate ingest`` and ``runs`` only count an OTLP/JSON log's steps; building a pydantic
model for each step, and a header model for each trace, cost about a third of reading a
trace. The GenAI reader (:mod:`evalsuite._otel`) and the session joining
(:mod:`evalsuite._sessions`) therefore work on these records: small structs with the
fields counting reads (``kind``, ``content``, ``tool``, ``call_id``, ``result``, ``error``,
``at``, ``arguments_logged``), each knowing how to build its model (:meth:`model`) with the
very arguments the reader used to pass the model's constructor. So a part's steps are
the same whether they are built at once or when first read, and counting them gives
the same summary either way.

A tool call's arguments are parsed only when its model is built: counting needs only
whether they were logged. The structs hold JSON values that cannot refer back to them,
so they are left out of the garbage collector's tracking (``gc=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from evalsuite._conversations import parse_arguments
from evalsuite._otel_spans import json_value, step_time
from evalsuite._parts import Pending, RunHeader
from evalsuite._run import Output, Reasoning, Step, ToolCall, ToolResult, UserInput


class LightStep(msgspec.Struct, kw_only=True, eq=False, gc=False):
    """A step's fields as a reader found them, and when it happened (``ns``, set when the
    trace's steps are put in order)."""

    # A field, not a class variable: read once a step or more (by sessions, by counting),
    # and a slot is read several times faster than a class attribute (no specialisation for
    # the latter in 3.11's interpreter).
    kind: str = ""
    ns: int = 0

    @property
    def at(self) -> datetime:
        """When the step happened, as the step model holds it."""
        return step_time(self.ns)

    def model(self) -> Step:
        """The step model (validated, as a reader builds one), its time set."""
        step = self._build()
        # Made here, so valid: assigning through pydantic would validate the step again.
        step.__dict__["at"] = step_time(self.ns)
        step.__pydantic_fields_set__.add("at")
        return step

    def _build(self) -> Step:
        raise NotImplementedError


class UserInputStep(LightStep, kw_only=True):
    """A user input."""

    kind: str = "user_input"
    content: str

    def _build(self) -> Step:
        return UserInput(content=self.content)


class ReasoningStep(LightStep, kw_only=True):
    """Reasoning."""

    kind: str = "reasoning"
    content: str

    def _build(self) -> Step:
        return Reasoning(content=self.content)


class OutputStep(LightStep, kw_only=True):
    """An output."""

    kind: str = "output"
    content: str

    def _build(self) -> Step:
        return Output(content=self.content)


class ToolCallStep(LightStep, kw_only=True):
    """A tool call; ``given`` is its arguments as logged (``None`` when they were not),
    ``unwrap`` says they may be OpenLLMetry's ``{"args", "kwargs"}``."""

    kind: str = "tool_call"
    tool: str
    call_id: str | None = None
    given: Any = None
    arguments_logged: bool | None = None
    """False when the call was logged without its arguments, else unset (a field, not worked
    out when read: ingest reads it of every call it counts)."""
    unwrap: bool = False

    @property
    def logged(self) -> bool:
        """Whether the call was logged with its arguments."""
        return self.arguments_logged is None

    def _parsed(self) -> tuple[dict[str, Any], str | None]:
        return parse_arguments(unwrapped(self.given) if self.unwrap else self.given)

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments as a JSON object (parsed now)."""
        return self._parsed()[0] if self.logged else {}

    @property
    def raw_arguments(self) -> str | None:
        """The arguments as logged when they were not a JSON object."""
        return self._parsed()[1] if self.logged else None

    def _build(self) -> Step:
        if not self.logged:
            return ToolCall(tool=self.tool, call_id=self.call_id, arguments_logged=False)
        arguments, raw = self._parsed()
        return ToolCall(tool=self.tool, call_id=self.call_id, arguments=arguments,
                        raw_arguments=raw)


class ToolResultStep(LightStep, kw_only=True):
    """A tool's result (``result`` as the reader parsed it) or its error; ``blocked`` is
    unset where the reader did not say."""

    kind: str = "tool_result"
    tool: str | None = None
    call_id: str | None = None
    result: Any = None
    error: str | None = None
    blocked: bool | UnsetType | None = UNSET

    def _build(self) -> Step:
        values: dict[str, Any] = {"tool": self.tool, "call_id": self.call_id}
        if self.error is not None:
            values["error"] = self.error
        else:
            values["result"] = self.result
        if self.blocked is not UNSET:
            values["blocked"] = self.blocked
        return ToolResult(**values)


def tool_call(tool: str, call_id: Any, given: Any, *, unwrap: bool = False) -> ToolCallStep:
    """A tool call as the model asked for it (``given`` ``None``: its arguments not logged).

    An id that is not text (a number, a list) is read as its text, as a tool span's id is
    and as a result's id is matched: the model's own error here was a traceback.
    """
    if call_id is not None and type(call_id) is not str:
        call_id = str(call_id)
    return ToolCallStep(tool=tool, call_id=call_id, given=given,
                        arguments_logged=None if given is not None else False, unwrap=unwrap)


def unwrapped(raw: Any) -> Any:
    """OpenLLMetry logs a tool's input as ``{"args": […], "kwargs": {…}}``; take the kwargs."""
    value, readable = json_value(raw)
    if readable and isinstance(value, dict) and set(value) <= {"args", "kwargs"} and isinstance(
            value.get("kwargs"), dict):
        return value["kwargs"]
    return raw


class LightPending(Pending):
    """A trace's light records and its header's fields, built as models when first read;
    ``complete``, when given, completes the header's fields (in place) before its model is
    built: the fields a caller that only counts never reads are found only then."""

    __slots__ = ("complete",)
    self_building = True

    def __init__(self, header: dict[str, Any],
                 complete: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(RunHeader.model_validate)
        self.header_line = header
        self.complete = complete

    def header(self) -> RunHeader:
        """The header model, its fields completed first."""
        if self.complete is not None:
            self.complete(self.header_line)
            self.complete = None  # and what it held (a trace's spans) let go
        return super().header()

    def steps(self) -> list[Step]:
        """The step models, built from the records."""
        return [record.model() for record in self.records]

    def time_range(self) -> tuple[datetime, datetime] | None:
        """The first and last step times, from the records' nanoseconds (two times made,
        not one a step); ``None`` without steps."""
        ns = self.ns_range()
        return None if ns is None else (step_time(ns[0]), step_time(ns[1]))

    def ns_range(self) -> tuple[int, int] | None:
        """The first and last step times in nanoseconds; ``None`` without steps."""
        if not self.records:
            return None
        times = [record.ns for record in self.records]
        return min(times), max(times)
