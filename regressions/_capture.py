"""Turning an incident's harmful run into a regression case."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

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
    UserInput,
    case_files,
    create_exclusive,
    dump_yaml,
    load_model,
)
from regressions._incident import Incident, utc_now
from regressions._regression_case import Provenance, Recorded, RegressionCase, exact_arguments


def default_harmful_steps(run: Run, risky: set[str]) -> list[int]:
    """Calls to risky tools after the last user input, and the final output."""
    last_input = max((i for i, s in enumerate(run.steps) if isinstance(s, UserInput)), default=-1)
    picked = [
        i for i, s in enumerate(run.steps)
        if i > last_input and isinstance(s, ToolCall) and s.tool in risky
    ]
    outputs = [i for i, s in enumerate(run.steps) if isinstance(s, Output)]
    if outputs:
        picked.append(outputs[-1])
    return picked


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
) -> RegressionCase:
    """The regression case for ``harmful`` steps of ``run``.

    E-mail addresses, phone numbers, card numbers and tokens are replaced with stable
    placeholders throughout the case unless ``keep_raw`` is set.
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
    first = steps[0]
    inputs = [i for i, s in enumerate(run.steps[:first]) if isinstance(s, UserInput)]
    if not inputs:
        raise InvalidInput(
            source, f"run {run.run_id}",
            f"no user input before step {first}: cannot tell what triggered the harm",
        )
    messages = []
    for step in run.steps[: inputs[-1] + 1]:
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
        tools=_fixtures(run),
        expect=expect,
        provenance=Provenance(
            incident=incident.id,
            source=source_label,
            source_sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
            run_id=run.run_id,
            captured_at=utc_now(),
            captured_by=actor,
            agent_version=run.agent_version,
        ),
        recorded=Recorded(steps=run.steps[: steps[-1] + 1], harmful=steps),
        redacted=redactor.kinds if redactor is not None else [],
        kept_raw=keep_raw,
    )


def _fixtures(run: Run) -> list[ToolFixture]:
    """Every recorded result, answered for the same arguments; then one per tool for any call.

    The fallback lets a fixed agent call a recorded tool with other arguments (a smaller
    refund, say) and still be judged, instead of the case erroring.
    """
    exact: list[ToolFixture] = []
    fallback: dict[str, ToolFixture] = {}
    for index, step in enumerate(run.steps):
        if not isinstance(step, ToolCall):
            continue
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
    return (pa.source_sha256, pa.run_id, a.recorded.harmful) == (
        pb.source_sha256, pb.run_id, b.recorded.harmful
    )
