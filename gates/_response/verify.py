"""``reinstate verify INC``: prove one incident's control changes, without storing a verdict.

What verify cannot judge is never reported as clean: with no good behaviour to replay the
over-blocking part is inconclusive, and a case the agent could not run is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

import yaml
from pydantic import AwareDatetime, Field

from evalsuite import Behaviour, Record
from gates._config import Workspace
from gates._controls.files import CONTROL_FILES, Controls
from gates._controls.replay import replay
from gates._gate.baseline import load_baseline
from gates._gate.checks import Evidence, case_finding, typeless_in
from gates._gate.control_changes import exact_scope, verify_change
from gates._gate.evals import run_evals
from gates._gate.inputs import load_inputs
from gates._gate.rca import analyse, contradictions
from gates._gate.scope_replay import ScopeReplay, replay_scope
from gates._store.attestation import drop_signing_key, keep_key_from_agent
from gates._verdict.verdict import ChangeVerification, Outcome
from regressions import Incident, other_layer_fixes, resolution_gaps, utc_now


class OverBlocking(Record):
    """Good behaviour the baseline let through that today's controls stop, and how much good
    behaviour there was to judge that on."""

    status: Literal["pass", "fail", "inconclusive"]
    """fail: something good is now blocked; inconclusive: no good behaviour was replayed,
    so nothing can be said; pass: good behaviour was replayed and none is blocked."""
    summary: str
    """One line saying what was replayed and what was found."""
    good_runs: int = Field(ge=0)
    """Passing trials of passing eval-suite cases replayed through the baseline and today."""
    logged_steps: int = Field(default=0, ge=0)
    """Calls and outputs logged outside the incident's scope, replayed through both."""
    found: list[str] = Field(default_factory=list)
    """Each good call or run today's controls newly stop, naming the case and the rule."""
    not_replayed: list[str] = Field(default_factory=list)
    """Eval-suite cases that gave no good behaviour to replay (they did not pass)."""


class Verification(Record):
    """What ``reinstate verify`` found for one incident: the file ``verify --json`` writes."""

    schema_version: Literal[1] = 1
    """Version of this record's format."""
    incident: str
    """The incident verified."""
    agent: str
    """The agent the incident is about."""
    summary: str
    """The incident's summary."""
    verified_at: AwareDatetime
    """When verify ran, in UTC."""
    run_file: str | None = None
    """The eval run file holding every trial verify ran, relative to the workspace."""
    outcome: Outcome
    """pass only when every change is verified, the RCA is complete, good behaviour was
    replayed and none is blocked, and every case ran; fail when a change is not verified,
    the RCA has a gap or something good is blocked; else error (a case could not run) or
    inconclusive (no good behaviour to judge over-blocking on)."""
    changes: list[ChangeVerification] = Field(default_factory=list)
    """Each control change with its replays before (baseline) and after (today)."""
    gaps: list[str] = Field(default_factory=list)
    """What the incident's root-cause analysis and resolution still lack."""
    errors: list[str] = Field(default_factory=list)
    """Each eval or regression case the agent could not run while verify ran."""
    overblocking: OverBlocking
    """What today's controls newly stop of the agent's good behaviour."""
    review_load: list[str] = Field(default_factory=list)
    """What today's controls newly send to a person over the logged runs outside the
    incident's scope, in words with examples."""
    control_diffs: dict[str, str] = Field(default_factory=dict)
    """What changed in each control file since containment, by file name."""
    warnings: list[str] = Field(default_factory=list, exclude_if=lambda value: not value)
    """What the proof does not cover, said without failing it: the scope of impact left
    as the captured calls' exact arguments, a gap addressed only by a change on another
    control layer (see the gate's control_changes check), or a bound written without
    ``type`` that text passes in permissions.yaml or acceptance.yaml."""


@dataclass
class IncidentVerification:
    """Each change of one incident, proven or not, and what the new controls over-block."""

    incident: Incident
    verifications: list[ChangeVerification]
    overblocking: OverBlocking
    gaps: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    control_diffs: dict[str, str] = field(default_factory=dict)
    review_load: list[str] = field(default_factory=list)
    """What today's controls newly send to a person over the logged runs outside the scope."""
    warnings: list[str] = field(default_factory=list)
    """What the proof does not cover, said without failing it."""
    run_file: str | None = None
    verified_at: datetime = field(default_factory=utc_now)

    @property
    def outcome(self) -> Outcome:
        """fail first (a change not verified is a definite answer an error elsewhere cannot
        undo), then error, then inconclusive; pass only when all is proven."""
        if (not self.verifications or not all(v.verified for v in self.verifications)
                or self.gaps or self.overblocking.status == "fail"):
            return "fail"
        if self.errors:
            return "error"
        if self.overblocking.status == "inconclusive":
            return "inconclusive"
        return "pass"

    @property
    def ok(self) -> bool:
        """Every change verified, good behaviour replayed and none blocked, every case run,
        the RCA complete and consistent."""
        return self.outcome == "pass"

    def record(self) -> Verification:
        """The verification as the record ``verify --json`` writes."""
        return Verification(
            incident=self.incident.id, agent=self.incident.agent,
            summary=self.incident.summary, verified_at=self.verified_at,
            run_file=self.run_file, outcome=self.outcome,
            changes=self.verifications, gaps=self.gaps, errors=self.errors,
            overblocking=self.overblocking, review_load=self.review_load,
            control_diffs=self.control_diffs, warnings=self.warnings)


def overblocking(evidence: Evidence, baseline: Controls, today: Controls,
                 logged: ScopeReplay | None = None) -> OverBlocking:
    """Good behaviour the baseline let through that today's controls stop: in the eval
    suite, and in the logged runs outside the incident's scope when it was investigated.

    With no good behaviour to replay the answer is inconclusive, never "nothing
    over-blocked".
    """
    found = []
    # Today's policy was enforced while the eval suite ran; what it denied there that the
    # baseline would have let through is what the changes over-block.
    for case_id, call, _, run, index in evidence.blocked_good_calls():
        history = run.steps[:index]
        before = replay(call, "permissions", baseline, history=history, context=run.context)
        after = replay(call, "permissions", today, history=history, context=run.context)
        if after.effect == "deny" and before.effect != "deny":
            found.append(f"{case_id}: good call {call.describe()} is now denied by "
                         f"{after.rule}: {after.reason}")
    good = evidence.good_runs()
    for case_id, run in good:
        behaviour = Behaviour.of_run(run)
        before_verdict = replay(behaviour, "acceptance", baseline)
        after_verdict = replay(behaviour, "acceptance", today)
        if after_verdict.stopped and not before_verdict.stopped:
            found.append(f"{case_id}: a good run is now rejected by {after_verdict.rule}: "
                         f"{after_verdict.reason}")
    logged_steps = logged.outside.calls + logged.outside.outputs if logged else 0
    if logged is not None:
        found += logged.overblocking()
    suite = [r for r in evidence.results if r.case_id not in evidence.regression_ids]
    not_replayed = [r.case_id for r in suite if r.outcome != "pass"]
    replayed = f"{len(good)} good run(s)" + (
        f" and {logged_steps} logged step(s) outside the scope" if logged_steps else "")
    if found:
        return OverBlocking(status="fail", good_runs=len(good), found=sorted(set(found)),
                            not_replayed=not_replayed, logged_steps=logged_steps,
                            summary=f"{len(set(found))} good behaviour(s) over-blocked "
                                    f"({replayed} replayed)")
    if not good and not logged_steps:
        why = ("the agent has no eval-suite case" if not suite
               else f"none of its {len(suite)} eval-suite case(s) passed")
        if logged is not None:
            why += " and no run was logged outside the incident's scope"
        return OverBlocking(status="inconclusive", good_runs=0, not_replayed=not_replayed,
                            summary=f"over-blocking inconclusive: {why}, so no good behaviour "
                                    f"was replayed")
    left = f"; {len(not_replayed)} case(s) gave none" if not_replayed else ""
    return OverBlocking(status="pass", good_runs=len(good), not_replayed=not_replayed,
                        logged_steps=logged_steps,
                        summary=f"0 good behaviours over-blocked ({replayed} replayed{left})")


def control_diffs(baseline: Controls, today: Controls) -> dict[str, str]:
    """What changed in each control file since containment, as deepdiff reports it."""
    out = {}
    for name in CONTROL_FILES:
        before = yaml.safe_load((baseline.directory / name).read_text(encoding="utf-8"))
        after = yaml.safe_load((today.directory / name).read_text(encoding="utf-8"))
        # Imported on use: deepdiff imports pandas (and numpy, pyarrow) whenever it is
        # installed, which would weigh on every eval and gate that never compares.
        from deepdiff import DeepDiff

        diff = DeepDiff(before, after, verbose_level=2)
        if diff:
            out[name] = diff.pretty()
    return out


def verify_incident(workspace: Workspace, incident_id: str, *,
                    trials: int | None = None) -> IncidentVerification:
    """Replay the incident's harm through its baseline and today's controls, change by change.

    ``$REINSTATE_SIGNING_KEY`` leaves the environment first (nothing here signs); when it
    was set, an agent that could still read it where it came from is refused (exit 2).
    """
    key_was_set = drop_signing_key()
    incident = workspace.incidents().load(incident_id)
    inputs = load_inputs(workspace, incident.agent)
    if key_was_set:  # before any agent runs
        inputs = replace(inputs, workspace=keep_key_from_agent(
            inputs.workspace, inputs.agent, inputs.agent_file, signing=False))
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
        errors=[finding for r in evidence.results if r.outcome == "error"
                if (finding := case_finding(r)) is not None],
        overblocking=overblocking(evidence, baseline, inputs.controls, logged),
        control_diffs=control_diffs(baseline, inputs.controls),
        run_file=workspace.relative(evidence.run_file) if evidence.run_file else None,
        review_load=logged.review_load() if logged else [],
        warnings=[w for w in [exact_scope(incident, cases)] if w is not None]
        + other_layer_fixes(incident) + [w for file in typeless_in(inputs) for w in file],
    )
