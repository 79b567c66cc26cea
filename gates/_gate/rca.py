"""Root cause through the control layers, computed from the recorded harm, not claimed.

For each layer the harm is replayed through the controls as they were at containment:
did the permission boundary allow the harmful calls, did the acceptance criteria accept
the harmful behaviour, did anything route it to a person, and how many eval cases covered
the incident's input type. A finding that says "no gap" where the replay shows one is a
contradiction, and the gate will not pass while it stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evalsuite import InvalidInput, ToolCall, load_cases
from gates._config import Workspace
from gates._controls.files import Controls
from gates._controls.replay import replay, replay_harm
from gates._gate.baseline import load_baseline
from regressions import LAYERS, FixLocation, Incident, Layer, RegressionCase

SUGGESTED_FIX: dict[Layer, FixLocation] = {
    "tool_permission_boundary": "permission_model",
    "eval_coverage": "eval_suite",
    "acceptance_criteria": "tool_contract",
    "review_gate": "human_process",
}


@dataclass
class LayerAnalysis:
    """What the replay says about one layer at containment."""

    layer: Layer
    gap: bool | None
    """True when the layer let the harm through; None when there is nothing to replay."""
    facts: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """The facts in one sentence."""
        return "; ".join(self.facts) if self.facts else "nothing recorded to replay"


def analyse(incident: Incident, cases: list[RegressionCase], baseline: Controls,
            min_cases: int) -> dict[Layer, LayerAnalysis]:
    """Each layer's part in the incident, replayed through the baseline controls."""
    out = {layer: LayerAnalysis(layer, None) for layer in LAYERS}
    if not cases:
        for analysis in out.values():
            analysis.facts.append(f"{incident.id} has no regression case: capture the run first")
        return out
    permission, acceptance, review = (out["tool_permission_boundary"],
                                      out["acceptance_criteria"], out["review_gate"])
    for case in cases:
        steps, context = case.recorded.steps, case.input.context
        for index, call in case.recorded.harmful_calls():
            decision = replay(call, "permissions", baseline, history=steps[:index],
                              context=context)
            let_through = not decision.stopped
            permission.gap = bool(permission.gap) or let_through
            permission.facts.append(f"{call.describe()} was {decision.effect} "
                                    f"({decision.rule})")
            permission.evidence.append(f"{case.id} step {index}")
        verdict = replay_harm(steps, case.recorded.harmful, baseline, context=context)
        acceptance.gap = bool(acceptance.gap) or not verdict.stopped
        acceptance.facts.append(
            f"{case.id}: the harmful behaviour was "
            + ("accepted by every criterion" if not verdict.stopped
               else f"rejected by {verdict.rule}"))
        acceptance.evidence.append(case.id)
        for index in case.recorded.harmful:
            step = steps[index]
            routed = replay(step, "stopped", baseline, history=steps[:index], context=context)
            what = step.describe() if isinstance(step, ToolCall) else "the answer"
            review.gap = bool(review.gap) or not routed.stopped
            review.facts.append(f"{what} " + ("went straight through" if not routed.stopped
                                              else f"was stopped ({routed.rule})"))
            review.evidence.append(f"{case.id} step {index}")
    coverage = out["eval_coverage"]
    tags = incident.input_types(cases)
    assert incident.containment is not None
    before = incident.containment.baseline.eval_tags
    for tag in tags:
        count = before.get(tag, 0)
        coverage.gap = bool(coverage.gap) or count < min_cases
        coverage.facts.append(f"{tag}: {count} case(s) at containment, {min_cases} required")
        coverage.evidence.append(f"input type {tag}")
    if not tags:
        coverage.facts.append("the regression cases name no input type: tag them")
    return out


def contradictions(incident: Incident, analysis: dict[Layer, LayerAnalysis]) -> list[str]:
    """Findings that claim no gap where the replay shows the layer let the harm through."""
    out = []
    for finding in incident.findings:
        computed = analysis.get(finding.layer)
        if computed is not None and computed.gap and not finding.gap:
            out.append(f"{incident.id} {finding.id} says {finding.layer} had no gap, but "
                       f"{computed.summary}")
    return out


def analyse_incident(workspace: Workspace, incident_id: str) -> dict[Layer, LayerAnalysis]:
    """The computed analysis of an incident's layers, for `reinstate rca`."""
    incident = workspace.incidents().load(incident_id)
    if incident.containment is None:
        raise InvalidInput(workspace.incidents().path(incident_id), "$.containment",
                           "the incident has no baseline yet: contain it first")
    cases = [c for c in load_cases(workspace.regressions_dir(incident.agent), RegressionCase,
                                   incident.agent).values()
             if c.provenance.incident == incident.id]
    return analyse(incident, cases, load_baseline(workspace, incident),
                   workspace.config.gate.min_cases_per_input_type)
