"""What the agent did in a case that did not pass, set against what the case expected.

The pytest plugin shows it under a failing item, the gate keeps it in the verdict's
``evals`` data, and the report shows it to the release manager: one account, three places.
"""

from __future__ import annotations

from typing import Any

from evalsuite import Behaviour, CaseResult, EvalCase, Output, Run, ToolCall, TrialResult
from gates._verdict.diff import differences, short
from gates._visible import percent
from regressions import RegressionCase


def behaviour_view(behaviour: Behaviour) -> dict[str, Any]:
    """The calls and the answer, as plain data to compare."""
    return {"tool_calls": [{"tool": c.tool, "arguments": c.arguments}
                           for c in behaviour.tool_calls],
            "output": behaviour.output}


def did(run: Run) -> list[str]:
    """What the agent did, step by step: each tool call, then its answer."""
    lines = []
    for step in run.steps:
        if isinstance(step, ToolCall):
            lines.append(f"called {step.describe()}")
        elif isinstance(step, Output):
            lines.append(f"answered {short(step.content, 400)}")
    return lines or ["nothing: no tool call and no answer"]


def first_failure(result: CaseResult) -> TrialResult | None:
    """The first trial that errored or failed."""
    return next((t for t in result.trials if t.error is not None or not t.passed), None)


def failure_data(result: CaseResult) -> dict[str, Any]:
    """The first failing trial as JSON: what the agent did and which expectations it missed."""
    trial = first_failure(result)
    if trial is None:
        return {"trial": None, "error": "no trial ran", "did": [], "unmet": []}
    return {
        "trial": trial.trial,
        "error": trial.error,
        "did": did(trial.run) if trial.run is not None else [],
        "unmet": [{"criterion": j.criterion, "detail": j.detail}
                  for j in trial.judgements if not j.passed],
    }


def failure_text(result: CaseResult, case: EvalCase) -> str:
    """The account a failing test item shows: no traceback, the behaviour against the case."""
    passed = sum(t.passed for t in result.trials)
    lines = [f"{case.id}: {passed} of {len(result.trials)} trials passed, needs "
             f"{percent(case.threshold)}"]
    if isinstance(case, RegressionCase):
        lines[0] += f" (regression case of {case.provenance.incident})"
    if case.description:
        lines.append(f"case: {case.description}")
    trial = first_failure(result)
    if trial is None:
        return "\n".join([*lines, "no trial ran"])
    if trial.error is not None or trial.run is None:
        return "\n".join([*lines, f"trial {trial.trial} could not run: {trial.error}"])
    lines.append(f"trial {trial.trial}, what the agent did:")
    lines += [f"  {n}. {line}" for n, line in enumerate(did(trial.run), start=1)]
    lines.append("expected → what happened (deepdiff):")
    expected = {_label(i, j.criterion): "met" for i, j in enumerate(trial.judgements)}
    actual = {_label(i, j.criterion): "met" if j.passed else f"not met: {j.detail}"
              for i, j in enumerate(trial.judgements)}
    lines += [f"  {c.line()}" for c in differences(expected, actual)]
    behaviour = behaviour_view(Behaviour.of_run(trial.run))
    if isinstance(case, RegressionCase):
        recorded = case.recorded.steps
        harm = Behaviour(tool_calls=[s for s in recorded if isinstance(s, ToolCall)],
                         output=next((s.content for s in reversed(recorded)
                                      if isinstance(s, Output)), None))
        lines.append(f"against the run recorded in {case.provenance.incident} "
                     f"(recorded → this trial, deepdiff):")
        changes = differences(behaviour_view(harm), behaviour)
        lines += [f"  {c.line()}" for c in changes] or [
            "  no difference: the agent repeated the recorded harm exactly"]
    good = next((t for t in result.trials if t.passed and t.run is not None), None)
    if good is not None and good.run is not None:
        lines.append(f"against passing trial {good.trial} (deepdiff):")
        lines += [f"  {c.line()}" for c in differences(
            behaviour_view(Behaviour.of_run(good.run)), behaviour)]
    return "\n".join(lines)


def _label(index: int, criterion: str) -> str:
    return f"expect[{index}] {criterion}"
