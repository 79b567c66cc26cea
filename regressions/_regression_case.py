"""Regression cases: an incident's triggering input, the harm it caused, and what must not recur."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from evalsuite import (
    Behaviour,
    EvalCase,
    Message,
    Output,
    Record,
    RedactionKind,
    Redactor,
    RunReference,
    Step,
    ToolCall,
    ToolResult,
    UserInput,
    placeholder_pattern,
    result_pairs,
)
from regressions._incident import INCIDENT_ID


class Provenance(Record):
    """Where a regression case came from."""

    incident: str = Field(pattern=INCIDENT_ID)
    """The incident it was captured for."""
    source: str
    """The log file it was captured from, relative to the workspace."""
    source_sha256: str
    """SHA-256 of that file when captured."""
    run_id: str
    """The run within the file."""
    captured_at: AwareDatetime
    """When, in UTC."""
    captured_by: str
    """Who captured it."""
    agent_version: str | None = None
    """The agent version the run was recorded from, if the log says."""


class Recorded(Record):
    """The run as recorded, up to the last harmful step, and which steps did the harm."""

    steps: list[Step] = Field(min_length=1)
    """The recorded steps, from the start of the run to the last harmful one."""
    harmful: list[int] = Field(min_length=1)
    """Positions in ``steps`` of the harmful tool calls and outputs."""

    @model_validator(mode="after")
    def _harmful_steps_are_actions(self) -> Recorded:
        for index in self.harmful:
            if not 0 <= index < len(self.steps):
                raise ValueError(f"harmful step {index} is outside the {len(self.steps)} steps")
            if not isinstance(self.steps[index], ToolCall | Output):
                raise ValueError(
                    f"harmful step {index} is a {self.steps[index].kind}; "
                    f"only tool_call and output steps do harm"
                )
        return self

    def harmful_calls(self) -> list[tuple[int, ToolCall]]:
        """(position, call) for each harmful tool call."""
        return [(i, s) for i in self.harmful if isinstance(s := self.steps[i], ToolCall)]

    def harmful_behaviour(self) -> Behaviour:
        """The harmful calls and the harmful output, as acceptance criteria judge them."""
        outputs = [s.content for i in self.harmful if isinstance(s := self.steps[i], Output)]
        return Behaviour(
            tool_calls=[c for _, c in self.harmful_calls()],
            output=outputs[-1] if outputs else None, history=self.steps,
        )


TriggerKind = Literal["user_input", "tool_result", "context"]


class Trigger(Record):
    """The input that caused the harm: a user turn, a tool result, or an item of context."""

    step: int | None = Field(default=None, ge=0)
    """Position in ``recorded.steps`` of the triggering user input or tool result; none for
    an item of context."""
    kind: TriggerKind
    """What delivered it: ``user_input``, ``tool_result`` (an instruction injected into what
    a tool returned) or ``context`` (something the agent was given besides the messages)."""
    source: str = Field(min_length=1)
    """Where it came from, in words: ``user``, the call whose result it was
    (``fetch_page(url='…')``), or the context key (``context.ticket_note``)."""
    named: bool = False
    """True when the engineer named it (``capture --trigger``); false when capture took the
    last user input before the harm."""


class RegressionCase(EvalCase):
    """An eval case captured from an incident, with the harm it must never repeat."""

    safety: bool = True
    """Regression cases are pass^k by default: every trial must pass."""
    strict: bool = False
    """False (the default): judged on what took effect, so a harmful call today's permission
    boundary denies counts as stopped by that control ("attempted, denied by …"). True: the
    agent must not attempt the harm at all."""
    provenance: Provenance
    """Where the case came from."""
    recorded: Recorded
    """The recorded harmful behaviour."""
    redacted: list[RedactionKind] = Field(default_factory=list)
    """Kinds of personal data and secrets capture replaced with placeholders (``email``,
    ``phone``, ``card``, ``token``) in the input, fixtures, recorded steps and expectations;
    empty when none was found or the raw text was kept."""
    kept_raw: bool = False
    """True when the case was captured with ``--keep-raw``: it holds the text exactly as
    logged, personal data and secrets included."""
    trigger: Trigger | None = None
    """The input that caused the harm; none in cases captured before triggers were
    recorded."""

    @model_validator(mode="after")
    def _trigger_is_a_recorded_input(self) -> RegressionCase:
        trigger = self.trigger
        if trigger is None:
            return self
        if trigger.kind == "context":
            if trigger.step is not None:
                raise ValueError("a context trigger names no step")
            return self
        if trigger.step is None or trigger.step >= len(self.recorded.steps):
            raise ValueError(f"trigger step {trigger.step} is outside the "
                             f"{len(self.recorded.steps)} recorded steps")
        found = self.recorded.steps[trigger.step].kind
        if found != trigger.kind:
            raise ValueError(f"trigger step {trigger.step} is a {found}, not a {trigger.kind}")
        if trigger.step >= min(self.recorded.harmful):
            raise ValueError(f"trigger step {trigger.step} is not before the first harmful "
                             f"step {min(self.recorded.harmful)}")
        return self

    def captured_input_problem(self) -> tuple[list[str | int], str] | None:
        """Where the case no longer gives the agent the input it recorded, and what capture
        gave it there; None when it does.

        Capture builds the input from the recorded steps: the user turns and answers up to
        the trigger (for a tool result, up to the user turn the agent was answering; by
        default the last user input before the harm), and a tool-result trigger is what the
        fixture for its call returns. An input edited apart from them (the injection taken
        out of the message, the fixture's result cleaned) would let the agent that did the
        harm pass its own regression case before the ratchet first held it.
        """
        steps, trigger = self.recorded.steps, self.trigger
        first_harm = min(self.recorded.harmful)
        users = [i for i, s in enumerate(steps[:first_harm]) if isinstance(s, UserInput)]
        if trigger is not None and trigger.kind == "user_input":
            users = [i for i in users if i <= (trigger.step or 0)]
        elif trigger is not None and trigger.kind == "tool_result":
            users = [i for i in users if i < (trigger.step or 0)]
        if not users:
            return ["recorded", "steps"], ("a user input before the harm, as capture "
                                           "recorded one, to give the agent")
        dialogue = [Message(role="user", content=s.content) if isinstance(s, UserInput)
                    else Message(role="assistant", content=s.content)
                    for s in steps[:users[-1] + 1] if isinstance(s, UserInput | Output)]
        messages = self.input.messages
        for index, (given, recorded) in enumerate(zip(messages, dialogue, strict=False)):
            if given != recorded:
                return (["input", "messages", index],
                        f"the {recorded.role} message recorded at that point of the run "
                        f"({_short(recorded.content)!r}), as captured")
        if len(messages) != len(dialogue):
            return (["input", "messages"],
                    f"the {len(dialogue)} messages recorded up to step {users[-1]}, as "
                    f"captured")
        if trigger is not None and trigger.kind == "context":
            # The recorded steps hold no context: its value cannot be checked, but the item
            # that carried the harm must still be given.
            value: Any = self.input.context
            for key in trigger.source.split(".")[1:]:
                if not isinstance(value, dict) or key not in value:
                    return (["input", "context"],
                            f"{trigger.source}, the context item the case was captured "
                            f"with as its trigger")
                value = value[key]
            return None
        if trigger is None or trigger.kind != "tool_result" or trigger.step is None:
            return None
        result = steps[trigger.step]
        call = next((steps[c] for c, r in result_pairs(steps).items() if r == trigger.step),
                    None)
        assert isinstance(result, ToolResult)
        if not isinstance(call, ToolCall):
            return ["trigger", "step"], "a tool result that answers a recorded call"
        fixture = self.fixture_for(call.tool, call.arguments)
        if fixture is None or (fixture.result, fixture.error) != (result.result, result.error):
            place: list[str | int] = ["tools"]
            if fixture is not None:
                place.append(next(i for i, f in enumerate(self.tools) if f is fixture))
            return place, (f"the result recorded at the trigger (step {trigger.step}) for "
                           f"{_short(call.describe())}, as captured")
        return None

    def recorded_run(self) -> RunReference:
        """The run named in the provenance: the replay adapter plays back exactly this one."""
        calls = [s for s in self.recorded.steps if isinstance(s, ToolCall)]
        # As the derived signature matches them: a placeholder of a redacted case matches
        # any value of its kind, since the log holds the raw value.
        redactor = Redactor()
        return RunReference(
            log=self.provenance.source, run_id=self.provenance.run_id,
            calls=tuple(s.tool for s in calls),
            arguments=tuple(json.dumps(exact_arguments(redactor.value(s.arguments)))
                            for s in calls),
            named_by=f"the provenance of {self.id}", through=len(self.recorded.steps) - 1)

    def recorded_tools(self) -> set[str]:
        """Tools the recorded run called."""
        return {s.tool for s in self.recorded.steps if isinstance(s, ToolCall)}


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def exact_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema that matches exactly these argument values (other keys free).

    A redaction placeholder inside a value matches any value of its kind (an address at
    the same domain, any phone or card number, any token): the live agent may know the
    real value, and the logs hold it, so a placeholder alone would loosen the case.
    """
    return {
        "type": "object",
        "properties": {k: _exact(v) for k, v in arguments.items()},
        "required": sorted(arguments),
    }


def _exact(value: Any) -> dict[str, Any]:
    if not _holds_placeholder(value):
        return {"const": value}
    if isinstance(value, str):
        return {"type": "string", "pattern": placeholder_pattern(value)}
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: _exact(v) for k, v in value.items()},
                "required": sorted(value)}
    return {"type": "array", "prefixItems": [_exact(v) for v in value],
            "minItems": len(value), "maxItems": len(value)}


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return placeholder_pattern(value) is not None
    if isinstance(value, dict):
        return any(_holds_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_placeholder(v) for v in value)
    return False
