"""Criteria: what a behaviour (tool calls and an output) must or must not do.

The same criteria serve as an eval case's expectations and as an agent's acceptance
criteria. Each kind is one model in a tagged union; each judges a :class:`Behaviour`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from evalsuite._record import Record
from evalsuite._run import Behaviour, ToolCall
from evalsuite._schemas import check_json_schema, schema_violation


class Judgement(Record):
    """The outcome of one criterion on one behaviour."""

    criterion: str
    """The criterion's id, or its kind when it has none."""
    passed: bool
    """Whether the behaviour met the criterion."""
    detail: str = ""
    """Why, in words a reviewer can check."""


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _check_regex(pattern: str) -> str:
    try:
        _regex(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


class _Criterion(Record):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """A stable name for the criterion, used in verdicts and review rules."""
    description: str = ""
    """What the criterion protects against, for the people reading a verdict."""

    @property
    def name(self) -> str:
        """The id, or the kind for an anonymous criterion."""
        return self.id or str(getattr(self, "kind"))  # noqa: B009 - every subclass declares kind

    def _verdict(self, passed: bool, detail: str) -> Judgement:
        return Judgement(criterion=self.name, passed=passed, detail=detail)


class OutputContains(_Criterion):
    """The output contains a text (case-insensitive)."""

    kind: Literal["output_contains"]
    text: str
    """The text that must appear."""

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        found = self.text.lower() in behaviour.output.lower()
        return self._verdict(found, f"output {'contains' if found else 'lacks'} {self.text!r}")


class OutputNotContains(_Criterion):
    """The output does not contain a text (case-insensitive)."""

    kind: Literal["output_not_contains"]
    text: str
    """The text that must not appear."""

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        found = self.text.lower() in behaviour.output.lower()
        return self._verdict(not found, f"output {'contains' if found else 'lacks'} {self.text!r}")


class OutputMatches(_Criterion):
    """The output matches a regular expression somewhere."""

    kind: Literal["output_matches"]
    pattern: str
    """A Python regular expression; use ``(?i)`` for case-insensitive."""

    _check = field_validator("pattern")(_check_regex)

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        found = _regex(self.pattern).search(behaviour.output) is not None
        return self._verdict(
            found, f"output {'matches' if found else 'does not match'} /{self.pattern}/"
        )


class OutputNotMatches(_Criterion):
    """The output matches a regular expression nowhere."""

    kind: Literal["output_not_matches"]
    pattern: str
    """A Python regular expression; use ``(?i)`` for case-insensitive."""

    _check = field_validator("pattern")(_check_regex)

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        match = _regex(self.pattern).search(behaviour.output)
        if match is None:
            return self._verdict(True, f"output does not match /{self.pattern}/")
        return self._verdict(False, f"output matches /{self.pattern}/ at {match.group(0)!r}")


def _matching_calls(
    calls: Sequence[ToolCall], tool: str, arguments: dict[str, Any] | None
) -> list[ToolCall]:
    return [
        c for c in calls
        if c.tool == tool
        and (arguments is None or schema_violation(arguments, c.arguments) is None)
    ]


def _describe(call: ToolCall) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in call.arguments.items())
    return f"{call.tool}({args})"


class _SchemaChecked(_Criterion):
    tool: str
    """The tool the criterion is about."""
    arguments: dict[str, Any] | None = None
    """A JSON Schema the call's arguments are matched against."""

    _check = field_validator("arguments")(
        lambda v: None if v is None else check_json_schema(v)
    )


class ToolCalled(_SchemaChecked):
    """The tool is called at least once (with arguments matching the schema, if given)."""

    kind: Literal["tool_called"]

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's tool calls."""
        hits = _matching_calls(behaviour.tool_calls, self.tool, self.arguments)
        if hits:
            return self._verdict(True, f"called {_describe(hits[0])}")
        seen = [c for c in behaviour.tool_calls if c.tool == self.tool]
        detail = f"{self.tool} was not called"
        if seen:
            detail = f"{self.tool} was called, but not as expected: {_describe(seen[0])}"
        return self._verdict(False, detail)


class ToolNotCalled(_SchemaChecked):
    """The tool is never called (with arguments matching the schema, if given)."""

    kind: Literal["tool_not_called"]

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's tool calls."""
        hits = _matching_calls(behaviour.tool_calls, self.tool, self.arguments)
        if hits:
            return self._verdict(False, f"called {_describe(hits[0])}")
        return self._verdict(True, f"no matching call to {self.tool}")


class ToolArguments(_Criterion):
    """Every call to the tool has arguments that satisfy a JSON Schema."""

    kind: Literal["tool_arguments"]
    tool: str
    """The tool whose calls are checked."""
    arguments: dict[str, Any]
    """The JSON Schema every call's arguments must satisfy."""

    _check = field_validator("arguments")(check_json_schema)

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's calls to the tool."""
        calls = [c for c in behaviour.tool_calls if c.tool == self.tool]
        for call in calls:
            problem = schema_violation(self.arguments, call.arguments)
            if problem is not None:
                return self._verdict(False, f"{_describe(call)}: {problem}")
        return self._verdict(True, f"{len(calls)} call(s) to {self.tool} within the schema")


class PassesAcceptance(_Criterion):
    """The behaviour meets every one of the agent's acceptance criteria."""

    kind: Literal["passes_acceptance"]

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour against the acceptance criteria it is given."""
        if not acceptance:
            return self._verdict(False, "the agent has no acceptance criteria to judge against")
        failed = [j for j in judge_all(acceptance, behaviour) if not j.passed]
        if failed:
            return self._verdict(False, f"fails {failed[0].criterion}: {failed[0].detail}")
        return self._verdict(True, f"meets all {len(acceptance)} acceptance criteria")


Criterion = Annotated[
    OutputContains
    | OutputNotContains
    | OutputMatches
    | OutputNotMatches
    | ToolCalled
    | ToolNotCalled
    | ToolArguments
    | PassesAcceptance,
    Field(discriminator="kind"),
]


def judge_all(
    criteria: Sequence[Criterion], behaviour: Behaviour, acceptance: Sequence[Criterion] = ()
) -> list[Judgement]:
    """Judge a behaviour on every criterion, in order."""
    return [c.judge(behaviour, acceptance) for c in criteria]


def tools_named(criteria: Sequence[Criterion]) -> list[tuple[int, str]]:
    """(position, tool) for every criterion that names a tool, to check against permissions."""
    return [
        (i, c.tool) for i, c in enumerate(criteria)
        if isinstance(c, ToolCalled | ToolNotCalled | ToolArguments)
    ]
