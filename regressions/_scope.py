"""The scope of impact: which runs in the logs did the same harmful thing.

A :class:`Signature` is derived from the incident's regression cases (each harmful call:
its tool and its recorded arguments; each harmful output: the acceptance criteria it
fails) and matched against every step of every run, as the logs stream. Memory follows
the matches, not the logs: a run is remembered only once it matches.

A derived signature is written into the incident file, so it is built from redacted
arguments even when a case kept the raw text (``--keep-raw``); each placeholder in it
matches any value of its kind, so the raw values in the logs still match it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from jsonschema import Draft202012Validator

from evalsuite import (
    Behaviour,
    Criterion,
    InvalidInput,
    Output,
    Redactor,
    RunPart,
    RunStarts,
    Step,
    ToolCall,
    as_utc,
    did_you_mean,
    display_path,
    judge_all,
    schema_validator,
)
from regressions._investigation import (
    LISTED_RUNS,
    CallPattern,
    MatchedRun,
    OutputPattern,
    Scope,
    Signature,
)
from regressions._regression_case import RegressionCase, exact_arguments


def derive_signature(cases: Iterable[RegressionCase],
                     failed: Callable[[str], list[str]]) -> Signature | None:
    """Patterns for the harm recorded in ``cases``; ``failed`` names the acceptance criteria
    an output fails. None when the cases record nothing to look for."""
    patterns: list[CallPattern | OutputPattern] = []
    sources = []
    redactor = Redactor()
    for case in cases:
        sources.append(case.id)
        for index, call in case.recorded.harmful_calls():
            arguments = exact_arguments(redactor.value(call.arguments))
            pattern = CallPattern(
                kind="tool_call", tool=call.tool, arguments=arguments,
                description=f"{call.tool} called as at {case.id} step {index}")
            if pattern not in patterns:
                patterns.append(pattern)
        output = case.recorded.harmful_behaviour().output
        for criterion in failed(output) if output is not None else []:
            found = OutputPattern(kind="output", fails=criterion,
                                  description=f"an output failing {criterion}, as at {case.id}")
            if found not in patterns:
                patterns.append(found)
    return Signature(derived_from=sources, match=patterns) if patterns else None


class ScopeSearch:
    """Matches a signature against parts of runs as they stream, keeping only matches.

    ``keep`` names runs whose parts are kept whole as they pass (the incident's own runs),
    so the timeline needs no second pass over the logs.
    """

    def __init__(self, signature: Signature, criteria: Mapping[str, Criterion],
                 keep: Iterable[str] = (), show: Callable[[Path], str] = display_path) -> None:
        self._show = show
        self._calls: dict[str, list[Draft202012Validator | None]] = {}
        self._outputs: list[Criterion] = []
        for i, pattern in enumerate(signature.match):
            if isinstance(pattern, CallPattern):
                validator = (schema_validator(pattern.arguments)
                             if pattern.arguments is not None else None)
                self._calls.setdefault(pattern.tool, []).append(validator)
            else:
                if pattern.fails not in criteria:
                    raise InvalidInput(None, f"investigation.signature.match[{i}].fails",
                                       f"no acceptance criterion '{pattern.fails}'"
                                       + did_you_mean(pattern.fails, criteria))
                self._outputs.append(criteria[pattern.fails])
        self.keep = set(keep)
        self.kept: list[RunPart] = []
        self._runs: dict[str, MatchedRun] = {}
        # Every run id read, with the log it was first read from (a run in many parts, or
        # traced as many traces, counts once; a log without run headers still has runs).
        self._seen: dict[str, Path] = {}
        # The run ids read from more than one log, with those logs: their parts are joined
        # as one run, which is wrong when another run reused the id (another service, a
        # rotated log of last month), so the investigator is told.
        self._in_many_logs: dict[str, list[Path]] = {}
        # The run ids one log starts again at another time: a run id reused inside one log
        # (another run logged later under it) is joined into one run and counted as one in
        # "N of M runs", so the investigator is told.
        self.starts = RunStarts()
        self._steps = 0
        self._calls_matched = 0
        self._outputs_matched = 0
        self._first: datetime | None = None
        self._last: datetime | None = None

    def feed(self, part: RunPart) -> None:
        """Look at one part of a run."""
        if part.run_id in self.keep:
            self.kept.append(part)
        first = self._seen.setdefault(part.run_id, part.source)
        if part.source != first:
            logs = self._in_many_logs.setdefault(part.run_id, [first])
            if part.source not in logs:
                logs.append(part.source)
        self.starts.note(part)
        self._steps += len(part.steps)
        for index, step in enumerate(part.steps):
            if not self.matches(step):
                continue
            if isinstance(step, ToolCall):
                self._calls_matched += 1
            else:
                self._outputs_matched += 1
            self._matched(part, index, as_utc(step.at))

    def matches(self, step: Step) -> bool:
        """Whether one step matches the signature: a call one of its call patterns accepts,
        or an output failing one of its criteria."""
        if isinstance(step, ToolCall):
            validators = self._calls.get(step.tool)
            return validators is not None and any(
                v is None or v.is_valid(step.arguments) for v in validators)
        if isinstance(step, Output) and self._outputs:
            return not all(j.passed for j in judge_all(self._outputs,
                                                       Behaviour(output=step.content)))
        return False

    def _matched(self, part: RunPart, index: int, at: datetime | None) -> None:
        run = self._runs.get(part.run_id)
        if run is None:
            self._runs[part.run_id] = MatchedRun(
                run_id=part.run_id, first_match=part.where(index, self._show), at=at, matches=1)
        else:
            run.matches += 1
        if at is not None:
            self._first = at if self._first is None else min(self._first, at)
            self._last = at if self._last is None else max(self._last, at)

    @property
    def matched_runs(self) -> list[str]:
        """Every matched run id, in the order found."""
        return list(self._runs)

    @property
    def runs_in_many_logs(self) -> dict[str, list[str]]:
        """Each run id read from more than one log, with those logs as shown, in the order
        read: its parts were joined as one run whether or not they are one."""
        return {run_id: [self._show(log) for log in logs]
                for run_id, logs in self._in_many_logs.items()}

    def scope(self) -> Scope:
        """The scope found so far; runs searched are the run ids read."""
        listed = list(self._runs.values())[:LISTED_RUNS]
        return Scope(
            runs_searched=len(self._seen), steps_searched=self._steps,
            runs_matched=len(self._runs), calls_matched=self._calls_matched,
            outputs_matched=self._outputs_matched, first_at=self._first, last_at=self._last,
            runs=listed, runs_not_listed=len(self._runs) - len(listed),
        )


def scope_lines(scope: Scope) -> list[str]:
    """The scope in sentences, as the CLI prints it."""
    span = ""
    if scope.first_at is not None and scope.last_at is not None:
        span = (f", from {scope.first_at:%Y-%m-%d %H:%M:%S} to "
                f"{scope.last_at:%Y-%m-%d %H:%M:%S} UTC")
    lines = [f"{scope.runs_matched} of {scope.runs_searched} runs matched "
             f"({scope.calls_matched} calls, {scope.outputs_matched} outputs; "
             f"{scope.steps_searched} steps searched){span}"]
    lines += [f"  {r.run_id}: {r.matches} matching step(s), first at {r.first_match}"
              for r in scope.runs]
    if scope.runs_not_listed:
        lines.append(f"  … and {scope.runs_not_listed} more runs")
    return lines
