"""The gate's first checks (evals and the replays of recorded harm through each control
layer), each returning its own typed result.

A check takes what the gate read (:class:`GateInputs`) and what the evals did
(:class:`Evidence`). Which checks run, and in what order, is declared in
:mod:`gates._gate.pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from evalsuite import Behaviour, CaseResult, Run, ToolCall, ToolResult, unisolated
from gates._controls.policy import judge_acceptance
from gates._controls.replay import replay, replay_harm
from gates._controls.typeless import typeless_warnings
from gates._gate.case_failure import failure_data
from gates._gate.inputs import GateInputs
from gates._verdict.check_results import (
    AcceptanceCriteriaData,
    AcceptanceCriteriaResult,
    CaseFailure,
    CaseFigures,
    CheckResult,
    EvalsData,
    EvalsResult,
    OperatingChecklistResult,
    Outcome,
    PermissionBoundaryData,
    PermissionBoundaryResult,
    ReviewRoutingData,
    ReviewRoutingResult,
    Usage,
    combine,
)
from gates._visible import percent


@dataclass(frozen=True)
class Evidence:
    """What running the eval suite and the regression set against the agent produced."""

    results: list[CaseResult]
    regression_ids: frozenset[str]
    run_file: Path | None = None
    isolation: dict[str, str] | None = None
    """What confinement the agent's code got (process, sandbox, writable), when known."""
    trials: int | None = None
    """Trials per case that sets none, as the engine ran them (``--trials``, else ``[gate]
    trials``); None when not run by the gate's engine (then ``[gate] trials``)."""
    changed: tuple[str, ...] = ()
    """The agent's files that changed while its cases ran (its processes read them after
    the inputs' fingerprint was taken): the verdict would name code that did not run."""

    def blocked_good_calls(self) -> list[tuple[str, ToolCall, str, Run, int]]:
        """(case id, call, denial, run, position) for each call the policy denied while an
        eval-suite case ran.

        Eval-suite cases are the agent's good behaviour: a denial there is over-blocking.
        """
        found = []
        for result in self.results:
            if result.case_id in self.regression_ids:
                continue
            for trial in result.trials:
                if trial.run is None:
                    continue
                steps = trial.run.steps
                for call_at, result_at in trial.run.pairs().items():
                    answer, call = steps[result_at], steps[call_at]
                    if (isinstance(answer, ToolResult) and answer.blocked
                            and isinstance(call, ToolCall)):
                        found.append((result.case_id, call, answer.error or "denied",
                                      trial.run, call_at))
        return found

    def good_runs(self) -> GoodRuns:
        """(case id, run) for every passing trial of a passing eval-suite case."""
        return GoodRuns(self)

    @cached_property
    def _by_case(self) -> dict[str, CaseResult]:
        # Looked up once per case by the control-change checks: a search of the list each
        # time made the gate quadratic in the number of cases.
        by_case: dict[str, CaseResult] = {}
        for result in self.results:
            by_case.setdefault(result.case_id, result)  # the first, as the search found
        return by_case

    def stopped_by_control(self, case_id: str) -> list[str]:
        """What a control denied in a passing case's trials; empty when the agent held."""
        result = self._by_case.get(case_id)
        return stopped_by_control(result) if result is not None else []

    def outcome_of(self, case_id: str) -> Outcome | None:
        """A case's outcome in this gate run."""
        result = self._by_case.get(case_id)
        return result.outcome if result is not None else None


class GoodRuns:
    """The good runs of an :class:`Evidence`, unpacked one at a time as they are read.

    A passing case's trials are held parked (see ``evalsuite.TrialResult.parked``):
    unpacking every good run at once would hold them all as models again.
    """

    def __init__(self, evidence: Evidence) -> None:
        self._evidence = evidence
        self._count: int | None = None

    def __iter__(self) -> Iterator[tuple[str, Run]]:
        evidence = self._evidence
        for r in evidence.results:
            if r.case_id in evidence.regression_ids or r.outcome != "pass":
                continue
            for t in r.trials:
                if t.passed and (run := t.recorded_run) is not None:
                    yield r.case_id, run

    def __len__(self) -> int:
        if self._count is None:
            evidence = self._evidence
            self._count = sum(
                1 for r in evidence.results
                if r.case_id not in evidence.regression_ids and r.outcome == "pass"
                for t in r.trials if t.passed and t.has_run)
        return self._count


Check = Callable[[GateInputs, Evidence], CheckResult]
"""A check from outside the gate (a plugin's, a user's): its result's ``data`` is open."""


def _outcome(findings: list[str], doubts: list[str] | None = None) -> Outcome:
    outcomes: list[Outcome] = ["fail" if findings else "pass"]
    if doubts:
        outcomes.append("inconclusive")
    return combine(outcomes)


def _logged_outcome(outcome: Outcome, errors: list[str]) -> Outcome:
    # Fail closed: a logged scope that cannot be replayed is not a pass.
    return combine([outcome, "error"]) if errors else outcome


def evals(inputs: GateInputs, evidence: Evidence) -> EvalsResult:
    """The eval suite and the regression set pass against the live agent."""
    return _evals(inputs, evidence, [case_data(r, evidence) for r in evidence.results])


def evals_as_data(inputs: GateInputs, evidence: Evidence) -> dict[str, Any]:
    """:func:`evals`' result as JSON data (its ``model_dump(mode="json")``).

    Each case's row is dumped as soon as it is built: at 10,000 cases every row as a model
    beside the dump of them all was the largest step of the gate's memory.
    """
    rows = [case_data(r, evidence).model_dump(mode="json") for r in evidence.results]
    data = _evals(inputs, evidence, []).model_dump(mode="json")
    if data["data"] is not None:
        data["data"]["cases"] = rows  # in its own place among the fields, as a dump puts it
    return data


def _evals(inputs: GateInputs, evidence: Evidence, cases: list[CaseFigures]) -> EvalsResult:
    results = evidence.results
    if not results:
        return EvalsResult(outcome="inconclusive", summary="no eval or regression cases to run",
                           findings=["add eval cases under evals/<agent>/"])
    findings = [finding for r in results if (finding := case_finding(r)) is not None]
    outcome = combine(r.outcome for r in results)
    counts = {o: sum(r.outcome == o for r in results)
              for o in ("pass", "fail", "error", "inconclusive")}
    trials = sum(len(r.trials) for r in results)
    flaky = sum(r.flaky for r in results)
    usage = usage_totals(results)
    run_file = inputs.workspace.relative(evidence.run_file) if evidence.run_file else None
    # A verdict on an agent that could have touched the evidence must say so up front.
    warning = unisolated(evidence.isolation) if evidence.isolation else None
    # Fewer trials than the workspace asks for (``--trials``) are weaker evidence than the
    # configuration the verdict's fingerprint names: said up front, never left to be
    # worked out from each case's trial count.
    configured = inputs.workspace.config.gate.trials
    if evidence.trials is not None and evidence.trials < configured:
        fewer = (f"ran with --trials {evidence.trials}, fewer than [gate] trials "
                 f"({configured}) for every case that sets none")
        warning = f"{warning}; {fewer}" if warning else fewer
    held = stopped_figures(results, evidence)
    if evidence.changed:  # fail closed: what ran is not what the fingerprint names
        outcome = combine([outcome, "error"])
        findings.insert(0, f"the agent's files changed while its cases ran, so the "
                           f"verdict's fingerprint does not name the code that ran: "
                           f"{', '.join(evidence.changed[:5])}; run the gate again")
    return EvalsResult(
        outcome=outcome,
        summary=f"{counts['pass']}/{len(results)} cases passed ({trials} trials; "
                f"{counts['fail']} failed, {counts['error']} errored, "
                f"{counts['inconclusive']} inconclusive, {flaky} flaky)"
                + (f"; regression cases: {held[0]} held by the agent, {held[1]} stopped by "
                   f"a control" if held else "")
                + (f"; WARNING: {warning}" if warning else "")
                + ("; the agent's files changed while its cases ran" if evidence.changed
                   else ""),
        findings=[*([f"WARNING: {warning}"] if warning else []), *findings],
        data=EvalsData(counts=counts, flaky=flaky, usage=usage, run_file=run_file,
                       isolation=evidence.isolation,
                       cases=cases,
                       regressions_held_by_agent=held[0] if held else None,
                       regressions_stopped_by_control=held[1] if held else None),
    )


def stopped_by_control(r: CaseResult) -> list[str]:
    """What a control denied in a passing case's trials, once each; empty when the agent
    held by itself (or the case did not pass)."""
    if r.outcome != "pass":
        return []
    return list(dict.fromkeys(detail for t in r.trials if t.passed
                              for detail in t.stopped_details))


def stopped_figures(results: list[CaseResult], evidence: Evidence) -> tuple[int, int] | None:
    """(held by the agent, stopped by a control) over the passing regression cases; None
    when no regression case ran."""
    regressions = [r for r in results if r.case_id in evidence.regression_ids]
    if not regressions:
        return None
    passed = [r for r in regressions if r.outcome == "pass"]
    by_control = sum(bool(stopped_by_control(r)) for r in passed)
    return len(passed) - by_control, by_control


def case_finding(r: CaseResult) -> str | None:
    """The sentence a case that did not pass deserves."""
    stats = r.statistics
    if r.outcome == "error":
        trial = next((t for t in r.trials if t.error is not None), None)
        return f"{r.case_id}: could not run: {trial.error if trial else 'no trials'}"
    if r.outcome == "fail":
        failed = next(j for t in r.trials for j in t.judgements if not j.passed)
        rule = "every trial" if r.every_trial else percent(r.threshold)
        return (f"{r.case_id}: {stats.passed}/{stats.trials} trials passed (needs {rule}); "
                f"{failed.criterion}: {failed.detail}")
    if r.outcome == "inconclusive":
        errored = len(r.trials) - len(r.judged)
        if errored:
            return (f"{r.case_id}: {errored} of {len(r.trials)} trials could not run, so the "
                    f"passing ones prove too little")
        more = (f"about {stats.trials_needed} trials at this rate would decide"
                if stats.trials_needed else "no number of trials at this rate would decide")
        interval = f"{percent(stats.low)}–{percent(stats.high)}"
        return (f"{r.case_id}: pass rate {percent(stats.rate)} ({stats.passed}/{stats.trials}), "
                f"{percent(r.confidence)} interval {interval} straddles the "
                f"{percent(r.threshold)} threshold; {more}")
    return None


def case_data(r: CaseResult, evidence: Evidence) -> CaseFigures:
    """One case's figures for the verdict, and what the agent did when it did not pass."""
    stats = r.statistics
    return CaseFigures(
        id=r.case_id, outcome=r.outcome, pass_rate=r.pass_rate, trials=len(r.trials),
        tags=r.tags, flaky=r.flaky, interval=(round(stats.low, 4), round(stats.high, 4)),
        trials_needed=stats.trials_needed,
        blocked_calls=sum(t.blocked_calls for t in r.trials),
        regression=r.case_id in evidence.regression_ids,
        # What the agent did in the first failing trial, for the report.
        failed=CaseFailure.model_validate(failure_data(r)) if r.outcome != "pass" else None,
        stopped_by_control=stopped_by_control(r),
        seconds=round(sum(t.seconds for t in r.trials), 3),
    )


def usage_totals(results: list[CaseResult]) -> Usage:
    """Tokens and cost over every trial, where the adapter reported them."""
    usages = [t.usage for r in results for t in r.trials if t.usage is not None]
    if not usages:
        return Usage(input_tokens=None, output_tokens=None, cost_usd=None)
    costs = [u.cost_usd for u in usages if u.cost_usd is not None]
    return Usage(
        input_tokens=sum(u.input_tokens or 0 for u in usages),
        output_tokens=sum(u.output_tokens or 0 for u in usages),
        cost_usd=round(sum(costs), 6) if costs else None,
    )


def typeless_in(inputs: GateInputs) -> tuple[list[str], list[str]]:
    """The warnings of permissions.yaml and of acceptance.yaml about bounds that text
    (or another wrong type) passes, each file named as the workspace names it."""
    directory = inputs.controls.directory
    return typeless_warnings(inputs.controls,
                             inputs.workspace.relative(directory / "permissions.yaml"),
                             inputs.workspace.relative(directory / "acceptance.yaml"))


def _warned(summary: str, warnings: list[str]) -> str:
    # Said, not failed: a team's files that rely on a typeless bound keep working.
    return summary + (f"; WARNING: {len(warnings)} bound(s) without type that text or "
                      f"another wrong type passes" if warnings else "")


def _good_doubt(evidence: Evidence) -> list[str]:
    if evidence.good_runs():
        return []
    return ["no passing eval-suite run to replay good behaviour from, so over-blocking is "
            "unchecked"]


def permission_boundary(inputs: GateInputs, evidence: Evidence) -> PermissionBoundaryResult:
    """Recorded harmful calls are denied or sent to review; good calls are still allowed."""
    controls = inputs.controls
    findings = []
    harmful = stopped = 0
    for case in inputs.regression_cases:
        for index, call in case.recorded.harmful_calls():
            harmful += 1
            # Denied, or sent to a person by a review rule wherever it is written
            # (review.yaml or the tool's review_when): the one routing decision.
            history = case.recorded.steps[:index]
            decision = replay(call, "stopped", controls, history=history,
                              context=case.input.context)
            if decision.stopped:
                stopped += 1
            else:
                allowed = replay(call, "permissions", controls, history=history,
                                 context=case.input.context)
                findings.append(f"{case.id} step {index}: {call.describe()} is still allowed "
                                f"({allowed.rule})")
    # And every harmful call logged in an open incident's scope, not only the captured ones.
    # Imported here: the log readers and the scope search cost `reinstate eval`, which
    # uses this module for its case rows only, megabytes of memory it never reads with.
    from gates._gate.scope_replay import logged_harm, logged_overblocking

    harm = logged_harm(inputs)
    routed = {(s.run_id, s.step) for s, stopped in harm.steps if stopped}
    held = [s.after.stopped or (s.run_id, s.step) in routed for s in harm.calls]
    logged_stopped = sum(held)
    findings += [f"{s.label} is still allowed ({s.after.rule}; logged in scope)"
                 for s, stop in zip(harm.calls, held, strict=True) if not stop]
    # The policy was enforced while the eval suite ran: what it denied there was good
    # behaviour blocked. Passing runs are replayed to count what now goes to review.
    for case_id, call, denial, _, _ in evidence.blocked_good_calls():
        finding = f"over-blocking: {case_id}: good call {call.describe()} is {denial}"
        if finding not in findings:
            findings.append(finding)
    good = reviewed = 0
    for _, run in evidence.good_runs():
        for index, step in enumerate(run.steps):
            if isinstance(step, ToolCall):
                good += 1
                decision = replay(step, "stopped", controls, history=run.steps[:index],
                                  context=run.context)
                reviewed += decision.effect == "review"
    # And over the logged runs outside each open incident's scope, against its baseline.
    logged = logged_overblocking(inputs)
    findings += logged.findings
    doubts = _good_doubt(evidence)
    errors = list(dict.fromkeys(harm.errors + logged.errors))
    warnings = typeless_in(inputs)[0]
    return PermissionBoundaryResult(
        outcome=_logged_outcome(_outcome(findings, doubts), errors),
        findings=errors + [f"WARNING: {w}" for w in warnings] + findings + doubts,
        summary=_warned(
            f"{stopped}/{harmful} recorded harmful calls stopped"
            + (f"; {logged_stopped}/{len(harm.calls)} logged in scope" if harm.calls else "")
            + f"; {good} good calls replayed ({reviewed} sent to review)"
            + (f"; {logged.calls} logged calls outside incident scopes replayed "
               f"({logged.newly_denied} newly denied, {logged.newly_routed} newly sent "
               f"to review)" if logged.calls else ""), warnings),
        data=PermissionBoundaryData(
            harmful_calls=harmful, harmful_stopped=stopped, good_calls=good,
            good_reviewed=reviewed,
            logged_harmful_calls=len(harm.calls) if harm.calls else None,
            logged_harmful_stopped=logged_stopped if harm.calls else None,
            logged_calls=logged.calls if logged.calls else None,
            logged_newly_denied=logged.newly_denied if logged.calls else None,
            logged_newly_reviewed=logged.newly_routed if logged.calls else None,
            review_load=logged.review_load),
    )


def acceptance_criteria(inputs: GateInputs, evidence: Evidence) -> AcceptanceCriteriaResult:
    """Recorded harmful behaviour fails today's criteria; good behaviour meets them."""
    controls = inputs.controls
    findings = []
    rejected = 0
    for case in inputs.regression_cases:
        if replay_harm(case.recorded.steps, case.recorded.harmful, controls,
                       context=case.input.context).stopped:
            rejected += 1
        else:
            findings.append(f"{case.id}: the recorded harmful behaviour meets every acceptance "
                            f"criterion")
    good_runs = evidence.good_runs()
    for case_id, run in good_runs:
        for judgement in judge_acceptance(controls, Behaviour.of_run(run)):
            if not judgement.passed:
                findings.append(f"over-rejecting: {case_id}: a good run fails "
                                f"{judgement.criterion}: {judgement.detail}")
    # And each harmful run logged in an open incident's scope, not only the captured ones.
    from gates._gate.scope_replay import logged_harm  # see permission_boundary

    logged = logged_harm(inputs)
    logged_rejected = sum(s.after.stopped for s in logged.behaviours)
    findings += [f"{s.run_id} ({s.source}): the logged harmful behaviour in scope meets every "
                 f"acceptance criterion" for s in logged.behaviours if not s.after.stopped]
    total = len(inputs.regression_cases)
    doubts = _good_doubt(evidence)
    warnings = typeless_in(inputs)[1]
    return AcceptanceCriteriaResult(
        outcome=_logged_outcome(_outcome(findings, doubts), logged.errors),
        findings=logged.errors + [f"WARNING: {w}" for w in warnings] + findings + doubts,
        summary=_warned(f"{rejected}/{total} recorded harmful behaviours rejected"
                        + (f"; {logged_rejected}/{len(logged.behaviours)} logged in scope "
                           f"rejected" if logged.behaviours else "")
                        + f"; {len(good_runs)} good runs judged", warnings),
        data=AcceptanceCriteriaData(
            harmful=total, harmful_rejected=rejected, good_runs=len(good_runs),
            logged_harmful=len(logged.behaviours) if logged.behaviours else None,
            logged_rejected=logged_rejected if logged.behaviours else None),
    )


def review_routing(inputs: GateInputs, evidence: Evidence) -> ReviewRoutingResult:
    """Every recorded harmful call or output is denied or reaches a human first."""
    controls = inputs.controls
    findings = []
    steps = caught = 0
    for case in inputs.regression_cases:
        for index in case.recorded.harmful:
            step = case.recorded.steps[index]
            steps += 1
            decision = replay(step, "stopped", controls, history=case.recorded.steps[:index],
                              context=case.input.context)
            what = step.describe() if isinstance(step, ToolCall) else "the output"
            if decision.stopped:
                caught += 1
            else:
                findings.append(f"{case.id} step {index}: {what} would take effect without a "
                                f"human")
    from gates._gate.scope_replay import logged_harm  # see permission_boundary

    logged = logged_harm(inputs)
    logged_stopped = sum(stopped for _, stopped in logged.steps)
    findings += [f"{s.label} would take effect without a human (logged in scope)"
                 for s, stopped in logged.steps if not stopped]
    return ReviewRoutingResult(
        outcome=_logged_outcome(_outcome(findings), logged.errors),
        findings=logged.errors + findings,
        summary=f"{caught}/{steps} recorded harmful steps denied or routed to a human"
                + (f"; {logged_stopped}/{len(logged.steps)} logged in scope"
                   if logged.steps else ""),
        data=ReviewRoutingData(
            harmful_steps=steps, routed_or_denied=caught,
            logged_steps=len(logged.steps) if logged.steps else None,
            logged_stopped=logged_stopped if logged.steps else None))


def operating_checklist(inputs: GateInputs, evidence: Evidence) -> OperatingChecklistResult:
    """The operating checklist is complete and agrees with permissions.yaml."""
    checklist = inputs.controls.checklist
    tools = inputs.controls.permissions.tools
    findings = []
    for field in ("owner", "allowed_tools", "data_sources", "completion_criteria",
                  "review_path", "rollback_plan"):
        if not getattr(checklist, field):
            findings.append(f"checklist.yaml: {field} is empty")
    allowed = {name for name, p in tools.items() if p.allowed}
    listed = set(checklist.allowed_tools)
    for tool in sorted(listed - allowed):
        findings.append(f"checklist.yaml allows {tool}, permissions.yaml does not")
    for tool in sorted(allowed - listed):
        findings.append(f"permissions.yaml allows {tool}, checklist.yaml does not list it")
    for tool, risk in sorted(checklist.tool_risk.items()):
        if tool in tools and tools[tool].risk != risk:
            findings.append(f"{tool}: checklist.yaml rates it {risk}, permissions.yaml "
                            f"{tools[tool].risk}")
    for tool in sorted(allowed - set(checklist.tool_risk)):
        findings.append(f"checklist.yaml has no risk rating for {tool}")
    return OperatingChecklistResult(
        outcome=_outcome(findings), findings=findings,
        summary="complete and consistent" if not findings else f"{len(findings)} gaps")
