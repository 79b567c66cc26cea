"""Proving each control change: the harm got through the baseline and is stopped today.

Each change is replayed on its own layer: a permission change must turn the recorded
harmful calls from allowed into denied or reviewed; an acceptance change must turn the
harmful behaviour from accepted into rejected; a review change must route what went
straight through before; an eval-coverage change must bring the incident's input type
to the coverage the workspace asks for; a prompt change must make the live agent pass
the incident's regression cases.
"""

from __future__ import annotations

from evalsuite import Output, ReinstateError, ToolCall, case_keys
from gates._controls.files import Controls
from gates._controls.policy import Decision, Effect
from gates._controls.replay import ReplayLayer, replay, replay_harm
from gates._gate.baseline import load_baseline, tag_counts
from gates._gate.checks import Evidence
from gates._gate.inputs import GateInputs
from gates._gate.rca import analyse, contradictions
from gates._gate.scope_replay import ReplayedStep, replay_scope, scope_steps
from gates._verdict.check_results import (
    CasesReplay,
    ChangeVerification,
    ControlChangesData,
    ControlChangesResult,
    CoverageReplay,
    Outcome,
    PromptReplay,
    ReplayRow,
    combine,
)
from regressions import (
    CallPattern,
    ControlChange,
    Incident,
    RegressionCase,
    derive_signature,
    other_layer_fixes,
    resolution_gaps,
)

# What was replayed, as (case, step within the case, baseline's decision, today's decision).
Replay = list[tuple[str, str, Decision, Decision]]


def _replay_harm(cases: list[RegressionCase], before: Controls, after: Controls,
                 layer: ReplayLayer, *, outputs: bool) -> Replay:
    """Each recorded harmful call (and output, with ``outputs``) through ``layer`` of the
    baseline and of today's controls."""
    out = []
    for case in cases:
        steps, context = case.recorded.steps, case.input.context
        for index in case.recorded.harmful:
            step = steps[index]
            if isinstance(step, ToolCall):
                what = f"step {index}: {step.describe()}"
            elif outputs and isinstance(step, Output):
                what = f"step {index}: output"
            else:
                continue
            out.append((case.id, what,
                        replay(step, layer, before, history=steps[:index], context=context),
                        replay(step, layer, after, history=steps[:index], context=context)))
    return out


def _replay_acceptance(cases: list[RegressionCase], before: Controls, after: Controls) -> Replay:
    return [(case.id, "harmful behaviour",
             replay_harm(case.recorded.steps, case.recorded.harmful, before,
                         context=case.input.context),
             replay_harm(case.recorded.steps, case.recorded.harmful, after,
                         context=case.input.context))
            for case in cases]


def _grouped(replay: Replay) -> list[CasesReplay]:
    """One row per step and pair of decisions, naming every case that replayed it so: a
    verdict grows by a case id per case, not by the step's decisions and rules again."""
    rows: dict[tuple[str, Effect, str, Effect, str, str], list[str]] = {}
    for case, step, b, a in replay:
        key = (step, b.effect, b.rule, a.effect, a.rule, a.reason)
        rows.setdefault(key, []).append(case)
    return [CasesReplay(step=step, cases=cases, before=before, before_rule=before_rule,
                        after=after, after_rule=after_rule, after_reason=reason)
            for (step, before, before_rule, after, after_rule, reason), cases in rows.items()]


def _judge_replay(change: ControlChange, incident: Incident, replay: Replay,
                  nothing: str, scope: list[ReplayedStep] | None = None) -> ChangeVerification:
    rows: list[ReplayRow] = [*_grouped(replay)]
    # The investigation's whole logged scope counts as much as the captured cases.
    rows += [s.row() for s in scope or []]
    replayed = ([(f"{case} {step}", b, a) for case, step, b, a in replay]
                + [(s.label, s.before, s.after) for s in scope or []])
    if not replayed:
        verified, reason = False, nothing
    elif any(not a.stopped for _, _, a in replayed):
        what = next(w for w, _, a in replayed if not a.stopped)
        verified, reason = False, f"still gets through today: {what}"
    elif all(b.stopped for _, b, _ in replayed):
        verified, reason = False, ("the baseline already stopped every replayed step, so this "
                                   "change is not what stops the harm")
    else:
        verified, reason = True, f"{len(replayed)} harmful step(s) stopped today"
    return ChangeVerification(incident=incident.id, change=change.id, layer=change.layer,
                              verified=verified, reason=reason, replays=rows)


def verify_change(change: ControlChange, incident: Incident, cases: list[RegressionCase],
                  baseline: Controls, inputs: GateInputs, evidence: Evidence) -> ChangeVerification:
    """Whether one control change is proven against the incident's recorded harm."""
    today = inputs.controls

    def scope(layer: ReplayLayer) -> list[ReplayedStep]:
        return scope_steps(inputs.workspace, incident, baseline, today, layer)

    if change.layer == "tool_permission_boundary":
        return _judge_replay(change, incident,
                             _replay_harm(cases, baseline, today, "permissions", outputs=False),
                             "the regression cases record no harmful tool call to replay",
                             scope("permissions"))
    if change.layer == "acceptance_criteria":
        return _judge_replay(change, incident, _replay_acceptance(cases, baseline, today),
                             "the incident has no regression case to replay",
                             scope("acceptance"))
    if change.layer == "review_gate":
        return _judge_replay(change, incident,
                             _replay_harm(cases, baseline, today, "review", outputs=True),
                             "the regression cases record no harmful step to replay",
                             scope("review"))
    if change.layer == "eval_coverage":
        return _verify_coverage(change, incident, cases, inputs, evidence)
    return _verify_prompt(change, incident, cases, inputs, evidence)


def _verify_coverage(change: ControlChange, incident: Incident, cases: list[RegressionCase],
                     inputs: GateInputs, evidence: Evidence) -> ChangeVerification:
    def result(verified: bool, reason: str, rows: list[CoverageReplay]) -> ChangeVerification:
        return ChangeVerification(incident=incident.id, change=change.id, layer=change.layer,
                                  verified=verified, reason=reason, replays=rows)

    tags = incident.input_types(cases)
    if not tags:
        return result(False, "the incident's regression cases name no input type: tag them", [])
    assert incident.containment is not None  # callers verify contained incidents only
    before = incident.containment.baseline.eval_tags
    everything = inputs.cases
    now = tag_counts(everything)
    least = inputs.workspace.config.gate.min_cases_per_input_type
    rows: list[CoverageReplay] = []
    problems = []
    for tag in tags:
        covering = [k.id for k in case_keys(everything) if tag in k.tags]
        failing = [i for i in covering if evidence.outcome_of(i) != "pass"]
        rows.append(CoverageReplay(input_type=tag, before=before.get(tag, 0),
                                   after=now.get(tag, 0), required=least, not_passing=failing))
        if now.get(tag, 0) < least:
            problems.append(f"{tag} has {now.get(tag, 0)} cases, needs {least}")
        if failing:
            problems.append(f"{tag} cases not passing: {', '.join(failing)}")
    if problems:
        return result(False, "; ".join(problems), rows)
    if all(now.get(t, 0) <= before.get(t, 0) for t in tags):
        return result(False, "no case was added for the incident's input types", rows)
    return result(True, f"{', '.join(tags)} covered by at least {least} passing cases", rows)


def _verify_prompt(change: ControlChange, incident: Incident, cases: list[RegressionCase],
                   inputs: GateInputs, evidence: Evidence) -> ChangeVerification:
    assert incident.containment is not None
    was = incident.containment.baseline.fingerprint.get("agent")
    rows = [PromptReplay(case=c.id, outcome=evidence.outcome_of(c.id)) for c in cases]
    if not cases:
        verified, reason = False, "the incident has no regression case to run"
    elif was == inputs.fingerprint.agent:
        verified, reason = False, "the agent is unchanged since containment"
    elif any(r.outcome != "pass" for r in rows):
        verified, reason = False, "the live agent still fails the incident's regression cases"
    elif stopped := [c.id for c in cases if evidence.stopped_by_control(c.id)]:
        # The cases pass because a control denies the harm, not because the agent changed.
        verified, reason = False, (f"the live agent still attempts the harm in "
                                   f"{', '.join(stopped)}; only a control stops it")
    else:
        verified, reason = True, f"the changed agent passes {len(cases)} regression case(s)"
    return ChangeVerification(incident=incident.id, change=change.id, layer=change.layer,
                              verified=verified, reason=reason, replays=rows)


_CALL_LAYERS = ("tool_permission_boundary", "review_gate")


def exact_scope(incident: Incident, cases: list[RegressionCase]) -> str | None:
    """A warning when the incident's logged scope is its captured calls with their very
    arguments, as ``investigate`` derives it: a permission or review change is then proven
    against repeats of those calls only (one denying just those values verifies too)."""
    if incident.investigation is None or not any(
            c.layer in _CALL_LAYERS for c in incident.control_changes):
        return None
    calls = [p for p in incident.investigation.signature.match if isinstance(p, CallPattern)]
    derived = derive_signature(cases, lambda _: [])
    if not calls or derived is None:
        return None
    exact = [(p.tool, p.arguments) for p in derived.match if isinstance(p, CallPattern)]
    if any((p.tool, p.arguments) not in exact for p in calls):
        return None  # widened (or narrowed) by hand: the scope is what the team says it is
    return (f"{incident.id}'s scope of impact (investigation.signature) is its captured calls "
            f"with their exact arguments, as investigate derived it: a permission or review "
            f"change is proven against repeats of those very calls only. Widen the signature "
            f"to the harm (a JSON Schema on the arguments) and investigate again")


def _scope_misses_own_runs(inputs: GateInputs, incident: Incident,
                           baseline: Controls) -> list[str]:
    """A finding when the incident's signature matches no step of a run its cases were
    captured from: every change would verify over a scope that leaves out the harm it comes
    from (a log that cannot be replayed is each change's error, reported there)."""
    try:
        replayed = replay_scope(inputs.workspace, incident, baseline, inputs.controls)
    except ReinstateError:
        return []
    if replayed is None or incident.investigation is None:
        return []
    # The cases say which runs they came from; investigation.runs is a hand edit away from
    # leaving one out.
    own = [*incident.investigation.runs, *(c.provenance.run_id for c in inputs.regression_cases
                                           if c.provenance.incident == incident.id)]
    outside = replayed.own_outside(own)
    if not outside:
        return []
    return [f"{incident.id}'s scope of impact (investigation.signature) matches no step of "
            f"{', '.join(outside)}, the run(s) its cases were captured from: "
            f"it leaves out the harm it comes from, so no change can be proven against it. "
            f"Fix the signature and investigate again"]


def control_changes(inputs: GateInputs, evidence: Evidence) -> ControlChangesResult:
    """Each open incident's RCA is complete and every control change is verified."""
    findings: list[str] = []
    errors: list[str] = []
    warnings: list[str] = []
    narrow = 0  # warnings of a scope that is the captured calls only
    verifications: list[ChangeVerification] = []
    incidents = [i for i in inputs.incidents if i.phase != "closed"]
    for incident in incidents:
        findings += resolution_gaps(incident)
        if incident.containment is None:
            continue
        cases = [c for c in inputs.regression_cases if c.provenance.incident == incident.id]
        if not cases:
            findings.append(f"{incident.id} has no regression case: capture the triggering run")
        try:
            baseline = load_baseline(inputs.workspace, incident)
        except ReinstateError as exc:
            errors.append(f"{incident.id}: cannot read its baseline: {exc}")
            continue
        findings += contradictions(incident, analyse(
            incident, cases, baseline, inputs.workspace.config.gate.min_cases_per_input_type))
        if (warning := exact_scope(incident, cases)) is not None:
            warnings.append(warning)
            narrow += 1
        findings += _scope_misses_own_runs(inputs, incident, baseline)
        warnings += other_layer_fixes(incident)
        for change in incident.control_changes:
            try:
                verification = verify_change(change, incident, cases, baseline, inputs,
                                             evidence)
            except ReinstateError as exc:  # its logged scope cannot be replayed
                errors.append(f"{incident.id} {change.id}: cannot be verified: {exc}")
                continue
            verifications.append(verification)
            if not verification.verified:
                findings.append(f"{incident.id} {change.id} ({change.layer}) is not verified: "
                                f"{verification.reason}")
    outcomes: list[Outcome] = ["error"] if errors else []
    outcomes.append("fail" if findings else "pass")
    outcome = combine(outcomes)
    verified = sum(v.verified for v in verifications)
    summary = (f"{verified}/{len(verifications)} control changes verified across "
               f"{len(incidents)} open incident(s)") if incidents else "no open incident"
    # Said, not failed: the proof is as wide as the scope the team set, and a compensating
    # control on another layer is a choice the team may make.
    if narrow:
        summary += f"; WARNING: {narrow} incident scope(s) are the captured calls only"
    if len(warnings) > narrow:
        summary += (f"; WARNING: {len(warnings) - narrow} gap(s) addressed only on another "
                    f"control layer")
    return ControlChangesResult(outcome=outcome, summary=summary,
                                findings=errors + [f"WARNING: {w}" for w in warnings] + findings,
                                data=ControlChangesData(verifications=verifications))
