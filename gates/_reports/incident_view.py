"""An incident's chain for people: each finding, the changes that address it, their proof.

The report and the postmortem both show it; the proof comes from a verdict's
``control_changes`` check, so a change the verdict did not cover reads as unverified.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from evalsuite import Record
from gates._verdict.check_results import (
    CasesReplay,
    CoverageReplay,
    DecisionReplay,
    ReplayRow,
)
from gates._verdict.verdict import ChangeVerification
from regressions import LAYERS, ControlChange, Incident, resolution_gaps


class ReplayView(Record):
    """One replay of the recorded harm: the decision at the baseline and today."""

    what: str
    """What was replayed: a harmful step, an input type, a regression case."""
    before: str
    """The decision or count at containment (the baseline)."""
    after: str
    """The decision or count today."""
    rule: str | None = None
    """The rule that decides today, when one does."""
    before_rule: str | None = None
    """The rule that decided at the baseline, when one did."""
    note: str = ""
    """Anything else the verification recorded (why today's rule decided so)."""


class ChangeView(Record):
    """A control change and whether the verdict proved it."""

    id: str
    """``CC-n``."""
    layer: str
    """The layer it changed."""
    description: str
    """What changed."""
    addresses: list[str] = Field(default_factory=list)
    """The findings it addresses."""
    verified: bool | None
    """True or False as the verdict found; none when the verdict did not cover it."""
    reason: str
    """Why it is or is not verified."""
    replays: list[ReplayView] = Field(default_factory=list)
    """The replays that prove it."""


class FindingView(Record):
    """A root-cause finding with the changes that address it."""

    id: str
    """``F-n``."""
    layer: str
    """The control layer examined."""
    gap: bool
    """Whether the layer failed to stop the harm."""
    description: str
    """What the layer did or failed to do."""
    evidence: list[str] = Field(default_factory=list)
    """What shows it."""
    fix_location: str | None = None
    """Where the fix belongs."""
    changes: list[ChangeView] = Field(default_factory=list)
    """The changes that address it."""


class IncidentView(Record):
    """An incident as the report and postmortem show it."""

    id: str
    """``INC-n``."""
    summary: str
    """What happened."""
    severity: str
    """sev1 to sev4."""
    phase: str
    """Where the incident stands."""
    findings: list[FindingView] = Field(default_factory=list)
    """Each finding, with its changes."""
    other_changes: list[ChangeView] = Field(default_factory=list)
    """Changes that address no finding (prompt changes)."""
    changes: list[ChangeView] = Field(default_factory=list)
    """Every change, in the order recorded."""
    missing_layers: list[str] = Field(default_factory=list)
    """Control layers with no finding yet."""
    gaps: list[str] = Field(default_factory=list)
    """What the RCA and resolution still lack, as sentences."""
    review: date | None = None
    """The post-incident review date."""


def replay_view(row: ReplayRow) -> ReplayView:
    """One row of a verification, as its layer recorded it."""
    if isinstance(row, CasesReplay):
        return ReplayView(what=row.what(), before=row.before, after=row.after,
                          rule=row.after_rule, before_rule=row.before_rule,
                          note=row.after_reason)
    if isinstance(row, DecisionReplay):
        return ReplayView(what=row.step, before=row.before, after=row.after,
                          rule=row.after_rule, before_rule=row.before_rule,
                          note=row.after_reason)
    if isinstance(row, CoverageReplay):  # counts of cases, not decisions
        note = f"not passing: {', '.join(row.not_passing)}" if row.not_passing else ""
        return ReplayView(what=row.input_type, before=f"{row.before} cases",
                          after=f"{row.after} cases (needs {row.required})", note=note)
    # A prompt change: the incident's regression case run against the changed agent today.
    return ReplayView(what=row.case, before="harm recorded", after=row.outcome or "not run")


def change_view(change: ControlChange, proof: ChangeVerification | None) -> ChangeView:
    """A change with its proof, or marked unverified when the verdict did not cover it."""
    if proof is None or proof.layer != change.layer:
        return ChangeView(id=change.id, layer=change.layer, description=change.description,
                          addresses=change.addresses, verified=None,
                          reason="not covered by the latest verdict")
    return ChangeView(id=change.id, layer=change.layer, description=change.description,
                      addresses=change.addresses, verified=proof.verified, reason=proof.reason,
                      replays=[replay_view(r) for r in proof.replays])


def incident_view(incident: Incident, proofs: dict[str, ChangeVerification]) -> IncidentView:
    """The incident's chain, with ``proofs`` (by change id) from a verdict."""
    changes = {c.id: change_view(c, proofs.get(c.id)) for c in incident.control_changes}
    findings = [
        FindingView(id=f.id, layer=f.layer, gap=f.gap, description=f.description,
                    evidence=f.evidence, fix_location=f.fix_location,
                    changes=[changes[c.id] for c in incident.control_changes
                             if f.id in c.addresses])
        for f in incident.findings
    ]
    covered = {f.layer for f in incident.findings}
    return IncidentView(
        id=incident.id, summary=incident.summary, severity=incident.severity,
        phase=incident.phase, findings=findings,
        other_changes=[changes[c.id] for c in incident.control_changes if not c.addresses],
        changes=list(changes.values()),
        missing_layers=[layer for layer in LAYERS if layer not in covered],
        gaps=resolution_gaps(incident),
        review=incident.post_incident_review,
    )
