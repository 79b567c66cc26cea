"""Running cases against an agent, trial by trial, and judging each trial."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from evalsuite._agent import Adapter
from evalsuite._case import EvalCase
from evalsuite._criteria import Criterion, Judgement, judge_all
from evalsuite._record import Record
from evalsuite._run import Behaviour, Run

CaseOutcome = Literal["pass", "fail", "error"]


class TrialResult(Record):
    """One run of one case."""

    trial: int
    """Number of the trial, from 1."""
    passed: bool
    """Whether every expectation was met."""
    error: str | None = None
    """Why the trial could not be judged (the agent raised, a fixture was missing)."""
    run: Run | None = None
    """What the agent did."""
    judgements: list[Judgement] = Field(default_factory=list)
    """Each expectation's outcome."""


class CaseResult(Record):
    """A case's trials and what they add up to."""

    case_id: str
    """The case."""
    tags: list[str]
    """The case's input types."""
    threshold: float
    """Share of trials that had to pass."""
    trials: list[TrialResult]
    """Every trial, in order."""

    @property
    def pass_rate(self) -> float:
        """Share of trials that passed."""
        return sum(t.passed for t in self.trials) / len(self.trials) if self.trials else 0.0

    @property
    def outcome(self) -> CaseOutcome:
        """``error`` if any trial could not be judged (fail closed), else pass rate vs threshold."""
        if not self.trials or any(t.error is not None for t in self.trials):
            return "error"
        # Compared to four decimals, so 2 of 3 trials meets a threshold written as 0.6667.
        return "pass" if round(self.pass_rate, 4) >= self.threshold else "fail"


def run_trial(
    adapter: Adapter, case: EvalCase, trial: int, acceptance: Sequence[Criterion] = ()
) -> TrialResult:
    """Run one trial and judge it against the case's expectations."""
    try:
        run = adapter.run(case, trial)
    except Exception as exc:  # the agent's failure is the trial's result, not ours
        frame = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
        return TrialResult(trial=trial, passed=False, error=f"{exc!r}{where}")
    judgements = judge_all(case.expect, Behaviour.of_run(run), acceptance)
    return TrialResult(
        trial=trial, passed=all(j.passed for j in judgements), run=run, judgements=judgements
    )


def run_case(
    adapter: Adapter, case: EvalCase, trials: int, acceptance: Sequence[Criterion] = ()
) -> CaseResult:
    """Run ``case`` for its own number of trials, or ``trials`` when it sets none."""
    count = case.trials or trials
    return CaseResult(
        case_id=case.id,
        tags=case.tags,
        threshold=case.threshold,
        trials=[run_trial(adapter, case, n, acceptance) for n in range(1, count + 1)],
    )
