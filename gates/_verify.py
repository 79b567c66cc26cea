"""``reinstate verify INC``: prove one incident's control changes, without storing a verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from deepdiff import DeepDiff

from evalsuite import Behaviour
from gates._baseline import load_baseline
from gates._checks import Evidence
from gates._config import Workspace
from gates._controls import CONTROL_FILES, Controls
from gates._evals import run_evals
from gates._inputs import load_inputs
from gates._policy import decide_call, judge_acceptance, rejection
from gates._rca import analyse, contradictions
from gates._scope_replay import replay_scope
from gates._verdict import ChangeVerification
from gates._verification import verify_change
from regressions import Incident, resolution_gaps


@dataclass
class IncidentVerification:
    """Each change of one incident, proven or not, and what the new controls over-block."""

    incident: Incident
    verifications: list[ChangeVerification]
    gaps: list[str] = field(default_factory=list)
    overblocking: list[str] = field(default_factory=list)
    control_diffs: dict[str, str] = field(default_factory=dict)
    review_load: list[str] = field(default_factory=list)
    """What today's controls newly send to a person over the logged runs outside the scope."""

    @property
    def ok(self) -> bool:
        """Every change verified, nothing over-blocked, the RCA complete and consistent."""
        return (bool(self.verifications) and all(v.verified for v in self.verifications)
                and not self.gaps and not self.overblocking)


def overblocking(evidence: Evidence, baseline: Controls, today: Controls) -> list[str]:
    """Good behaviour the baseline let through that today's controls stop."""
    found = []
    # Today's policy was enforced while the eval suite ran; what it denied there that the
    # baseline would have let through is what the changes over-block.
    for case_id, call, _, run, index in evidence.blocked_good_calls():
        before = decide_call(baseline, call, run.steps[:index], run.context)
        after = decide_call(today, call, run.steps[:index], run.context)
        if after.effect == "deny" and before.effect != "deny":
            found.append(f"{case_id}: good call {call.describe()} is now denied by "
                         f"{after.rule}: {after.reason}")
    for case_id, run in evidence.good_runs():
        behaviour = Behaviour.of_run(run)
        before_verdict = rejection(judge_acceptance(baseline, behaviour))
        after_verdict = rejection(judge_acceptance(today, behaviour))
        if after_verdict.stopped and not before_verdict.stopped:
            found.append(f"{case_id}: a good run is now rejected by {after_verdict.rule}: "
                         f"{after_verdict.reason}")
    return sorted(set(found))


def control_diffs(baseline: Controls, today: Controls) -> dict[str, str]:
    """What changed in each control file since containment, as deepdiff reports it."""
    out = {}
    for name in CONTROL_FILES:
        before = yaml.safe_load((baseline.directory / name).read_text(encoding="utf-8"))
        after = yaml.safe_load((today.directory / name).read_text(encoding="utf-8"))
        diff = DeepDiff(before, after, verbose_level=2)
        if diff:
            out[name] = diff.pretty()
    return out


def verify_incident(workspace: Workspace, incident_id: str, *,
                    trials: int | None = None) -> IncidentVerification:
    """Replay the incident's harm through its baseline and today's controls, change by change."""
    incident = workspace.incidents().load(incident_id)
    inputs = load_inputs(workspace, incident.agent)
    baseline = load_baseline(workspace, incident)
    evidence = run_evals(inputs, trials)
    cases = [c for c in inputs.regression_cases if c.provenance.incident == incident.id]
    analysis = analyse(incident, cases, baseline,
                       workspace.config.gate.min_cases_per_input_type)
    gaps = resolution_gaps(incident) + contradictions(incident, analysis)
    if not cases:
        gaps.append(f"{incident.id} has no regression case: capture the triggering run")
    # Over-blocking is measured over the logged runs outside the scope as well.
    logged = replay_scope(workspace, incident, baseline, inputs.controls)
    return IncidentVerification(
        incident=incident,
        verifications=[verify_change(change, incident, cases, baseline, inputs, evidence)
                       for change in incident.control_changes],
        gaps=gaps,
        overblocking=overblocking(evidence, baseline, inputs.controls)
        + (logged.overblocking() if logged else []),
        control_diffs=control_diffs(baseline, inputs.controls),
        review_load=logged.review_load() if logged else [],
    )
