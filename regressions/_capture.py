"""Turning an incident's harmful run into a regression case."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite import (
    CaseInput,
    Criterion,
    InvalidInput,
    Message,
    Output,
    PassesAcceptance,
    Redactor,
    Run,
    ToolCall,
    ToolFixture,
    ToolNotCalled,
    ToolResult,
    UserInput,
    case_files,
    create_exclusive,
    dump_yaml,
    load_model,
    read_regular,
)
from regressions._incident import Incident, utc_now
from regressions._regression_case import (
    Provenance,
    Recorded,
    RegressionCase,
    Trigger,
    exact_arguments,
)
from regressions._timeline import short

# More high-risk calls than this in one turn is more than capture guesses at: it names them
# and asks for --step instead of writing a case that forbids harmless calls too.
MAX_GUESSED_CALLS = 3
TRIGGER_SYNTAX = "a step number (a user input or a tool result) or context.KEY"


@dataclass(frozen=True)
class HarmfulSteps:
    """The steps capture takes as the harm when none is named, and why."""

    steps: list[int]
    """Positions of the high-risk calls taken and of the output that ended their turn."""
    why: str
    """Why these, in words: ``high-risk calls after the last user input (step 8)``."""
    calls: int
    """How many of ``steps`` are tool calls."""


def pick_harmful_steps(run: Run, risky: set[str], *, after: int | None = None) -> HarmfulSteps:
    """The high-risk calls of one turn, and the output that ended it.

    Without ``after`` (the trigger's position), the turn is the last user input followed by
    any call to a ``risky`` tool: a stop token or a thank-you after the harm does not hide
    it. With ``after``, it is the first stretch after the trigger, up to the next user
    input, that holds such a call. A run without any takes only its final output.
    """
    steps = run.steps
    users = [i for i, s in enumerate(steps) if isinstance(s, UserInput)]

    def end_of_turn(start: int) -> int:
        return next((i for i in users if i > start), len(steps))

    if after is None:
        starts = list(reversed([-1, *users]))
    else:
        starts = [after, *(i for i in users if i > after)]
    for start in starts:
        end = end_of_turn(start)
        calls = [i for i in range(start + 1, end)
                 if isinstance(step := steps[i], ToolCall) and step.tool in risky]
        if not calls:
            continue
        if after is not None:
            why = f"high-risk calls after the trigger at step {after}"
        elif start == -1:
            why = "high-risk calls before any user input"
        elif start == (users[-1] if users else -1):
            why = f"high-risk calls after the last user input (step {start})"
        else:
            why = (f"high-risk calls after the last user input that led to any (step {start}; "
                   f"later turns call none)")
        answer = [i for i in range(calls[-1] + 1, end) if isinstance(steps[i], Output)]
        if answer:
            why += f", and the output that ended that turn (step {answer[-1]})"
        return HarmfulSteps(steps=calls + answer[-1:], why=why, calls=len(calls))
    first = -1 if after is None else after
    outputs = [i for i, s in enumerate(steps) if isinstance(s, Output) and i > first]
    if outputs:
        return HarmfulSteps(steps=outputs[-1:], why="the final output (no high-risk call in the "
                                                     "run)", calls=0)
    return HarmfulSteps(steps=[], why="no high-risk call and no output in the run", calls=0)


def default_harmful_steps(run: Run, risky: set[str]) -> list[int]:
    """Calls to risky tools in the last turn that has any, and the output that ended it."""
    return pick_harmful_steps(run, risky).steps


def step_candidates(run: Run, limit: int = 12) -> list[str]:
    """Each step that ``--step`` can name (tool calls and outputs), as ``9 tool(arg=…)``."""
    shown = []
    for index, step in enumerate(run.steps):
        if isinstance(step, ToolCall):
            shown.append(f"{index} {short(step.describe(), 100)}")
        elif isinstance(step, Output):
            shown.append(f"{index} output {short(step.content, 60)!r}")
    return shown if len(shown) <= limit else [*shown[:limit], f"… {len(shown) - limit} more"]


def parse_trigger(text: str) -> int | str:
    """``--trigger`` as a step number or a ``context.KEY`` path; anything else is invalid."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    if value.startswith("context.") and all(value.split(".")[1:]):
        return value
    raise InvalidInput(None, "--trigger", f"expected {TRIGGER_SYNTAX}, got {text!r}")


def build_case(
    incident: Incident,
    run: Run,
    case_id: str,
    *,
    harmful: Sequence[int],
    source: Path,
    source_label: str,
    tags: Sequence[str],
    actor: str,
    keep_raw: bool = False,
    trigger: int | str | None = None,
) -> RegressionCase:
    """The regression case for ``harmful`` steps of ``run``.

    ``trigger`` names the input that caused the harm: the position of a user input or a
    tool result before the first harmful step, or ``context.KEY``; by default it is the last
    user input before the harm. The case's input is the conversation up to the trigger (for
    a tool result, up to the user input the agent was answering, and the fixture for that
    call returns the recorded result). E-mail addresses, phone numbers, card numbers and
    tokens are replaced with stable placeholders throughout the case unless ``keep_raw``.
    """
    redactor = None if keep_raw else Redactor()
    if redactor is not None:
        run = redactor.run(run)
    steps = sorted(set(harmful))
    if not steps:
        raise InvalidInput(source, f"run {run.run_id}", "no harmful step to capture: pass --step N")
    for index in steps:
        if not 0 <= index < len(run.steps):
            raise InvalidInput(
                source, f"run {run.run_id}",
                f"step {index} does not exist: the run has steps 0 to {len(run.steps) - 1}",
            )
        if not isinstance(run.steps[index], ToolCall | Output):
            raise InvalidInput(
                source, f"run {run.run_id} step {index}",
                f"expected a tool_call or output step, got {run.steps[index].kind}",
            )
    found, last_message, answered = _trigger(run, trigger, steps[0], source)
    messages = []
    for step in run.steps[: last_message + 1]:
        if isinstance(step, UserInput):
            messages.append(Message(role="user", content=step.content))
        elif isinstance(step, Output):
            messages.append(Message(role="assistant", content=step.content))

    expect: list[Criterion] = []
    for index in steps:
        step = run.steps[index]
        if isinstance(step, ToolCall):
            expect.append(ToolNotCalled(
                kind="tool_not_called", id=f"no-repeat-step-{index}", tool=step.tool,
                arguments=exact_arguments(step.arguments),
                description=f"must not call {step.tool} with the arguments recorded at step "
                            f"{index}",
            ))
        else:
            expect.append(PassesAcceptance(
                kind="passes_acceptance", id=f"acceptable-output-step-{index}",
                description="the answer must meet the agent's acceptance criteria",
            ))

    summary = redactor.text(incident.summary) if redactor is not None else incident.summary
    return RegressionCase(
        id=case_id,
        agent=incident.agent,
        description=f"Regression for {incident.id}: {summary}",
        tags=list(tags) or ["unclassified"],
        input=CaseInput(messages=messages, context=run.context),
        tools=_fixtures(run, first=answered),
        expect=expect,
        provenance=Provenance(
            incident=incident.id,
            source=source_label,
            source_sha256=hashlib.sha256(read_regular(source)).hexdigest(),
            run_id=run.run_id,
            captured_at=utc_now(),
            captured_by=actor,
            agent_version=run.agent_version,
        ),
        recorded=Recorded(steps=run.steps[: steps[-1] + 1], harmful=steps),
        redacted=redactor.kinds if redactor is not None else [],
        kept_raw=keep_raw,
        trigger=found,
    )


def _trigger(run: Run, ref: int | str | None, first_harm: int,
             source: Path) -> tuple[Trigger, int, int | None]:
    """The trigger, the last step whose message the case's input holds, and for a tool
    result the position of the call it answered."""
    where = f"run {run.run_id}"
    if isinstance(ref, str):
        ref = parse_trigger(ref)
    inputs = [i for i, s in enumerate(run.steps[:first_harm]) if isinstance(s, UserInput)]
    if ref is None or isinstance(ref, str):
        if not inputs:
            raise InvalidInput(
                source, where,
                f"no user input before step {first_harm}: cannot tell what triggered the harm",
            )
        if ref is None:
            return (Trigger(step=inputs[-1], kind="user_input", source="user", named=False),
                    inputs[-1], None)
        _context_item(run, ref, source)
        return Trigger(kind="context", source=ref, named=True), inputs[-1], None
    if not 0 <= ref < len(run.steps):
        raise InvalidInput(source, f"{where} --trigger", f"step {ref} does not exist: the run "
                                                         f"has steps 0 to {len(run.steps) - 1}")
    step = run.steps[ref]
    if not isinstance(step, UserInput | ToolResult):
        raise InvalidInput(source, f"{where} step {ref}",
                           f"expected a user_input or tool_result step as the trigger, got "
                           f"{step.kind}")
    if ref >= first_harm:
        raise InvalidInput(source, f"{where} step {ref}",
                           f"expected a trigger before the first harmful step ({first_harm})")
    if isinstance(step, UserInput):
        return Trigger(step=ref, kind="user_input", source="user", named=True), ref, None
    call = next((c for c, r in run.pairs().items() if r == ref), None)
    if call is None:
        raise InvalidInput(source, f"{where} step {ref}",
                           "expected a tool result that answers a recorded call, so that a "
                           "fixture can return it; this one answers none")
    before = [i for i in inputs if i < ref]
    if not before:
        raise InvalidInput(source, where, f"no user input before step {ref}: the case has no "
                                          f"message to give the agent")
    called = run.steps[call]
    assert isinstance(called, ToolCall)
    return (Trigger(step=ref, kind="tool_result", source=short(called.describe(), 200),
                    named=True), before[-1], call)


def _context_item(run: Run, ref: str, source: Path) -> Any:
    """The value at ``context.a.b`` in the run's context."""
    value: Any = run.context
    for key in ref.split(".")[1:]:
        if not isinstance(value, dict) or key not in value:
            keys = ", ".join(f"context.{k}" for k in run.context) or "nothing"
            raise InvalidInput(source, f"run {run.run_id} --trigger",
                               f"no {ref} in the run's context (it holds {keys})")
        value = value[key]
    return value


def _fixtures(run: Run, first: int | None = None) -> list[ToolFixture]:
    """Every recorded result, answered for the same arguments; then one per tool for any call.

    The fallback lets a fixed agent call a recorded tool with other arguments (a smaller
    refund, say) and still be judged, instead of the case erroring. The call at ``first``
    (the one whose result is the trigger) comes first in both lists, so its tool returns
    the recorded result, injected instruction and all, even when the same call returned
    something else elsewhere in the run.
    """
    exact: list[ToolFixture] = []
    fallback: dict[str, ToolFixture] = {}
    calls = [i for i, s in enumerate(run.steps) if isinstance(s, ToolCall)]
    if first is not None:
        calls = [first, *(i for i in calls if i != first)]
    for index in calls:
        step = run.steps[index]
        assert isinstance(step, ToolCall)
        result = run.result_for(index)
        if result is None:
            continue
        fixture = ToolFixture(
            tool=step.tool, when=step.arguments or None, result=result.result, error=result.error
        )
        if fixture not in exact:
            exact.append(fixture)
        fallback.setdefault(
            step.tool, ToolFixture(tool=step.tool, result=result.result, error=result.error)
        )
    return exact + list(fallback.values())


def save_case(
    directory: Path, incident_id: str, candidate: RegressionCase
) -> tuple[Path, RegressionCase, bool]:
    """Write a new case under the next free ``<INC>-<n>`` id, unless the same capture exists.

    ``candidate`` is the case to write; its id is replaced by the free one. Returns the
    file, the case, and whether it was newly written: capturing the same steps of the same
    log twice adds nothing. Ids are unique under contention (each file is created
    exclusively); callers that must not write the same capture twice at once hold a lock
    around it (``gates.capture``).
    """
    for path in case_files(directory):
        if path.name.startswith(f"{incident_id}-"):
            existing = load_model(path, RegressionCase)
            if _same_capture(existing, candidate):
                return path, existing, False
    number = 1
    while True:
        case_id = f"{incident_id}-{number}"
        path = directory / f"{case_id}.yaml"
        if not path.exists():
            case = candidate.model_copy(update={"id": case_id})
            if create_exclusive(path, dump_yaml(case)):
                return path, case, True
        number += 1


def _same_capture(a: RegressionCase, b: RegressionCase) -> bool:
    pa, pb = a.provenance, b.provenance
    return (pa.source_sha256, pa.run_id, a.recorded.harmful, _named(a)) == (
        pb.source_sha256, pb.run_id, b.recorded.harmful, _named(b)
    )


def _named(case: RegressionCase) -> tuple[int | None, str, str] | None:
    """The trigger an engineer named; the default one is the same as none (older cases)."""
    t = case.trigger
    return (t.step, t.kind, t.source) if t is not None and t.named else None
