"""The run record: what an agent did, step by step.

Every importer turns its trace format into this, and every check reads it. Steps are
numbered by their position in the run, starting at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import Field, model_validator

from evalsuite._record import Record


class UserInput(Record):
    """A message from the user (or the system acting for them) to the agent."""

    kind: Literal["user_input"] = "user_input"
    content: str
    """The text the agent received."""
    at: datetime | None = None
    """When the step happened, if the log says."""


class Reasoning(Record):
    """The agent's stated reasoning between actions."""

    kind: Literal["reasoning"] = "reasoning"
    content: str
    """The reasoning text as logged."""
    at: datetime | None = None
    """When the step happened, if the log says."""


class ToolCall(Record):
    """The agent asking for a tool to run."""

    kind: Literal["tool_call"] = "tool_call"
    tool: str
    """Name of the tool called."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Arguments as a JSON object."""
    call_id: str | None = None
    """The id that pairs this call with its result, if the log has one."""
    at: datetime | None = None
    """When the step happened, if the log says."""
    raw_arguments: str | None = None
    """The arguments exactly as logged when they were not a JSON object (a model that wrote
    broken JSON, say); ``arguments`` is then empty."""
    arguments_logged: bool | None = None
    """False when the log recorded the call but not what it was called with (OpenTelemetry
    spans without content capture); unset when the arguments were logged."""

    def describe(self) -> str:
        """``tool(arg=value, …)``, as findings, timelines and reports show a call."""
        if self.arguments_logged is False:
            return f"{self.tool}(<arguments not logged>)"
        if self.raw_arguments is not None:
            return f"{self.tool}({self.raw_arguments})"
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.tool}({args})"


class ToolResult(Record):
    """What a tool returned to the agent."""

    kind: Literal["tool_result"] = "tool_result"
    tool: str | None = None
    """Name of the tool that answered, if the log says."""
    call_id: str | None = None
    """The id of the call this answers."""
    result: Any = None
    """The result as JSON. A result logged as text that holds a JSON object or array (as
    OpenAI and Anthropic messages carry every tool result) is that object or array, so rules,
    criteria and fixtures read its fields; the text itself is kept in ``result_text``."""
    error: str | None = None
    """The error the tool raised instead of a result."""
    at: datetime | None = None
    """When the step happened, if the log says."""
    blocked: bool | None = None
    """True when a control (the permission boundary, a reviewer) stopped the call instead of
    the tool running, false when the tool ran; unset when the log does not say."""
    result_text: str | None = None
    """The result exactly as logged, when it was JSON text that ``result`` holds parsed;
    unset when the result was logged as a value or as text that is not a JSON object or
    array."""

    @model_validator(mode="after")
    def _parse_json_text(self) -> ToolResult:
        # Once, here, for every reader, fixture and rule: a string is the value it spells.
        # After validation, so a log line is validated straight from its JSON (a "before"
        # validator would have it built as a dict first); set in place, not re-validated.
        text = self.result
        if isinstance(text, str) and self.result_text is None:
            value = json_container(text)
            if value is not None:
                self.__dict__["result"] = value
                self.__dict__["result_text"] = text
                self.__pydantic_fields_set__.update(("result", "result_text"))
        return self


def json_container(text: str) -> dict[str, Any] | list[Any] | None:
    """The object or array a JSON text holds; ``None`` when it holds anything else (a bare
    string or number reads as text, as the tool meant it) or is not strict JSON."""
    start = text.lstrip()[:1]
    if start not in ("{", "["):
        return None
    try:
        value = pydantic_core.from_json(text, allow_inf_nan=False)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None


class Output(Record):
    """The agent's answer to the user."""

    kind: Literal["output"] = "output"
    content: str
    """The text the agent answered with."""
    at: datetime | None = None
    """When the step happened, if the log says."""


Step = Annotated[
    UserInput | Reasoning | ToolCall | ToolResult | Output, Field(discriminator="kind")
]
STEP_KINDS = ("user_input", "reasoning", "tool_call", "tool_result", "output")


class RunOutcome(Record):
    """How a run ended, as the application or an evaluator recorded it."""

    success: bool | None = None
    """Whether the task succeeded (tau-bench's reward 1.0, an application's own verdict)."""
    escalated: bool | None = None
    """Whether the run was handed to a human instead of being finished by the agent."""
    human_corrected: bool | None = None
    """Whether a person corrected or overrode what the agent did or said."""
    stop_reason: str | None = None
    """Why the agent stopped, as it or its model API said (end_turn, stop, tool_use, …)."""


class Usage(Record):
    """What a run consumed, as the log recorded it."""

    input_tokens: int | None = Field(default=None, ge=0)
    """Tokens sent to the model, summed over the run's model calls."""
    output_tokens: int | None = Field(default=None, ge=0)
    """Tokens the model produced, summed over the run's model calls."""
    model_calls: int | None = Field(default=None, ge=0)
    """How many times the agent called its model during the run."""
    cost_usd: float | None = Field(default=None, ge=0)
    """What the run cost the team, in US dollars."""


class Run(Record):
    """One run of an agent on one task, as the logs recorded it."""

    schema_version: Literal[1] = 1
    """Version of this record's format."""
    run_id: str
    """Identifier of the run, unique within its log."""
    agent: str | None = None
    """Name of the agent that ran."""
    agent_version: str | None = None
    """Version of the agent that ran."""
    started_at: datetime | None = None
    """When the run started."""
    context: dict[str, Any] = Field(default_factory=dict)
    """What the agent was given besides the messages (customer id, channel, …)."""
    steps: list[Step] = Field(default_factory=list)
    """The steps in the order they happened."""
    outcome: RunOutcome | None = None
    """How the run ended, when the log says (success, escalation, correction, stop reason)."""
    usage: Usage | None = None
    """Tokens, model calls and cost, when the log says."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """What the source log says about the run that has no field here (trace id,
    conversation id, model, a benchmark's task id and reward, …)."""

    def tool_calls(self) -> list[ToolCall]:
        """Every tool call of the run, in order."""
        return [s for s in self.steps if isinstance(s, ToolCall)]

    def final_output(self) -> str | None:
        """The last output of the run, if it has one."""
        for step in reversed(self.steps):
            if isinstance(step, Output):
                return step.content
        return None

    def result_for(self, index: int) -> ToolResult | None:
        """The result that answers the tool call at ``index``, if the run has one."""
        found = self.pairs().get(index)
        result = self.steps[found] if found is not None else None
        return result if isinstance(result, ToolResult) else None

    def pairs(self) -> dict[int, int]:
        """Map each answered tool call's position to its result's position (see
        :func:`result_pairs`)."""
        return result_pairs(self.steps)


def result_pairs(steps: Sequence[Step]) -> dict[int, int]:
    """Map each answered tool call's position in ``steps`` to its result's position.

    A result answers the earliest waiting call with its id; a result without an id
    (or with an id no waiting call has) answers the earliest waiting call of its tool
    without an id. Real logs repeat ids within a run, so ids alone cannot pair them.
    """
    waiting: list[int] = []
    paired: dict[int, int] = {}
    for position, step in enumerate(steps):
        if isinstance(step, ToolCall):
            waiting.append(position)
        elif isinstance(step, ToolResult):
            match = _waiting_call(steps, waiting, step)
            if match is not None:
                waiting.remove(match)
                paired[match] = position
    return paired


def _waiting_call(steps: Sequence[Step], waiting: list[int], result: ToolResult) -> int | None:
    calls = [(p, steps[p]) for p in waiting]
    if result.call_id is not None:
        for position, call in calls:
            if isinstance(call, ToolCall) and call.call_id == result.call_id:
                return position
    for position, call in calls:
        if (isinstance(call, ToolCall) and call.call_id is None
                and result.tool in (None, call.tool)):
            return position
    return None


class Behaviour(Record):
    """A slice of a run to be judged: some tool calls, perhaps an output, and what came before."""

    tool_calls: list[ToolCall] = Field(default_factory=list)
    """The tool calls being judged."""
    output: str | None = None
    """The output being judged, if any."""
    history: Sequence[Step] = Field(default_factory=list)
    """The run's steps as criteria see them in ``history``: the whole run for a run's
    behaviour, the steps before it for one replayed step; a judged call's result is read
    from here."""
    context: dict[str, Any] = Field(default_factory=dict)
    """The run's context (customer id, channel, …), as criteria see it in ``context``."""

    @classmethod
    def of_run(cls, run: Run) -> Behaviour:
        """All the tool calls of a run and its final output, with the run as history."""
        # The steps are already validated models: no need to check them again.
        return cls.model_construct(tool_calls=run.tool_calls(), output=run.final_output(),
                                   history=run.steps, context=run.context)
