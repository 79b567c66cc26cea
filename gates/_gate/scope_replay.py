"""The incident's whole scope of impact, replayed through the baseline and today's controls.

A control change is proven on more than the runs someone captured by hand: the
investigation's logs are read again as a stream, every step its signature matches (the
scope of impact) is decided by the controls as they were at containment and by today's,
and so is every tool call and output of the runs the signature does not reach, to count
what today's controls newly deny (over-blocking) and newly send to a person (review load).

A log must be the very file the investigation read: one that is missing or whose SHA-256
changed is an error naming it, because the scope can then no longer be checked.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite import (
    LOG_FORMATS,
    History,
    InvalidInput,
    Output,
    ReinstateError,
    Skips,
    ToolCall,
    is_log_format,
    open_regular,
    read_logs,
)
from gates._config import Workspace
from gates._controls.files import Controls
from gates._controls.policy import Decision
from gates._controls.replay import JoinedRun, ReplayLayer, replay
from gates._gate.baseline import load_baseline
from gates._gate.inputs import GateInputs
from gates._verdict.check_results import DecisionReplay
from regressions import Incident, ScopeSearch

EXAMPLES = 10
"""Steps listed per kind of change of decision; the counts are exact."""


@dataclass(frozen=True)
class ReplayedStep:
    """One logged step (or an in-scope run's harmful behaviour) decided twice."""

    run_id: str
    step: int
    """The step's position in its run (the first harmful step, for a behaviour)."""
    source: str
    """Where the log holds it: ``logs/x.jsonl:17``."""
    what: str
    """The step in words: ``issue_refund(order_id='A-1001', …)``, ``output``."""
    before: Decision
    """The baseline's decision (the controls at containment)."""
    after: Decision
    """Today's decision."""

    @property
    def label(self) -> str:
        """``run-123 step 4 (logs/x.jsonl:17): issue_refund(…)``, as findings name it."""
        return f"{self.run_id} step {self.step} ({self.source}): {self.what}"

    def row(self) -> DecisionReplay:
        """The replay row a verification stores, with where the step was logged."""
        return DecisionReplay(step=self.label, before=self.before.effect,
                              before_rule=self.before.rule, after=self.after.effect,
                              after_rule=self.after.rule, after_reason=self.after.reason,
                              source=self.source)


@dataclass
class Changed:
    """How many logged steps one kind of change of decision hit, and the first of them."""

    count: int = 0
    examples: list[ReplayedStep] = field(default_factory=list)

    def add(self, step: ReplayedStep) -> None:
        """Count one step, keeping it as an example while there are few."""
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(step)

    def merge(self, other: Changed) -> None:
        """Add another tally to this one."""
        self.count += other.count
        self.examples += other.examples[:EXAMPLES - len(self.examples)]


@dataclass
class OutsideScope:
    """The logged runs the signature does not reach, decided by the baseline and today."""

    runs: int = 0
    calls: int = 0
    outputs: int = 0
    newly_denied: Changed = field(default_factory=Changed)
    """Calls today's permissions deny that the baseline did not."""
    newly_routed: Changed = field(default_factory=Changed)
    """Calls and outputs today sends to a person that the baseline let act alone."""
    newly_rejected: Changed = field(default_factory=Changed)
    """Calls and outputs failing an acceptance criterion today, not at the baseline."""

    def merge(self, other: OutsideScope) -> None:
        """Add one run's tally to this one."""
        self.runs += other.runs
        self.calls += other.calls
        self.outputs += other.outputs
        self.newly_denied.merge(other.newly_denied)
        self.newly_routed.merge(other.newly_routed)
        self.newly_rejected.merge(other.newly_rejected)


@dataclass
class ScopeReplay:
    """The incident's logged scope of impact and the runs outside it, decided twice."""

    incident: str
    harmful: dict[ReplayLayer, list[ReplayedStep]]
    """Per layer, every in-scope harmful step (``acceptance``: each run's harmful behaviour)."""
    runs_in_scope: int
    outside: OutsideScope
    unharmed: frozenset[str] = frozenset()
    """The runs read in the logs with no step in scope."""

    def own_outside(self, own: Iterable[str]) -> list[str]:
        """Of ``own``, the incident's own runs (those its cases were captured from), the ones
        read in the logs with no step in scope: a signature that leaves out the very harm
        it comes from."""
        return [run_id for run_id in dict.fromkeys(own) if run_id in self.unharmed]

    def overblocking(self, *, acceptance: bool = True) -> list[str]:
        """Logged behaviour outside the scope that today's controls newly deny (and, with
        ``acceptance``, newly reject), the first few of each with a count of the rest."""
        out = self.outside
        found = []
        kinds = [("denied", out.newly_denied)]
        if acceptance:
            kinds.append(("rejected", out.newly_rejected))
        for kind, tally in kinds:
            found += [f"{s.label} is now {kind} by {s.after.rule}: {s.after.reason} (logged "
                      f"outside {self.incident}'s scope; the baseline let it through)"
                      for s in tally.examples]
            if tally.count > len(tally.examples):
                found.append(f"… and {tally.count - len(tally.examples)} more logged steps "
                             f"outside {self.incident}'s scope newly {kind}")
        return found

    def review_load(self) -> list[str]:
        """What today's controls newly send to a person, over the logged runs outside scope."""
        out = self.outside
        if not out.newly_routed.count:
            return []
        return [f"review load: {out.newly_routed.count} of {out.calls} logged calls and "
                f"{out.outputs} "
                f"outputs in {out.runs} runs outside {self.incident}'s scope now go to a "
                f"person first", *[f"  e.g. {s.label} by {s.after.rule}"
                                   for s in out.newly_routed.examples[:3]]]


@dataclass
class _Run:
    """One run as the stream has shown it so far."""

    history: History = field(default_factory=History)
    context: dict[str, Any] = field(default_factory=dict)
    # The harm through the acceptance criteria as the runtime meets it (each harmful step
    # with the run before it): the first decision that stops one, at the baseline and today.
    accepted: tuple[Decision, Decision] | None = None
    first_harm: tuple[int, str] | None = None
    outside: OutsideScope = field(default_factory=lambda: OutsideScope(runs=1))
    joined: JoinedRun = field(default_factory=JoinedRun)


def replay_scope(workspace: Workspace, incident: Incident, baseline: Controls,
                 today: Controls) -> ScopeReplay | None:
    """The incident's logged scope of impact and the runs outside it, decided twice.

    Args:
        workspace: the workspace the investigation's log paths are relative to.
        incident: the incident; without an investigation there is nothing to replay.
        baseline: the controls at containment.
        today: today's controls.

    Returns:
        The replay, or None when the incident was not investigated.

    Raises:
        InvalidInput: a log the investigation read is missing or has changed since, or
            cannot be read as it was then.
    """
    investigation = incident.investigation
    if investigation is None:
        return None
    for (seen, controls, baseline_dir), cached in _CACHE:
        if seen is incident and controls is today and baseline_dir == baseline.directory:
            return cached
    logs = _checked_logs(workspace, incident)
    criteria = {c.name: c for c in (*baseline.acceptance.criteria, *today.acceptance.criteria)}
    search = ScopeSearch(investigation.signature, criteria)
    harmful: dict[ReplayLayer, list[ReplayedStep]] = {"permissions": [], "review": [],
                                                      "acceptance": []}
    runs: dict[str, _Run] = {}
    shown: dict[Path, str] = {}

    def show(source: Path) -> str:
        if source not in shown:  # once a file, not once a step
            shown[source] = workspace.relative(source)
        return shown[source]

    # OTLP/JSON files are read together, as the investigation read them: a trace's spans
    # and its log events (content in event mode) may be in two files.
    otel = [path for path, fmt in logs if fmt == "otel"]
    groups = [([path], fmt) for path, fmt in logs if fmt != "otel"]
    groups += [(otel, "otel")] if otel else []
    matched = Counter[str]()  # steps in scope, by kind: held to what the record says
    for paths, fmt in groups:
        skips = Skips() if investigation.skipped_records else None
        for part in read_logs(paths, fmt, agent=incident.agent, skips=skips):
            run = runs.setdefault(part.run_id, _Run())
            if part.header is not None:
                run.joined.header(part, show)
                run.context = {**run.context, **part.header.context}
            for i, step in enumerate(part.steps):
                run.joined.step(part, i, show)
                # History grows as the run streams: each step sees the steps before it.
                index = len(run.history)
                if isinstance(step, ToolCall | Output):
                    source = part.where(i, show)
                    if search.matches(step):
                        matched[step.kind] += 1
                        _harm(harmful, run, part.run_id, index, source, step, baseline, today)
                    elif run.first_harm is None:
                        _outside(run, part.run_id, index, source, step, baseline, today)
                run.history.append(step)
    outside = OutsideScope()
    for run_id, run in runs.items():
        if run.first_harm is None:
            outside.merge(run.outside)
            continue
        at, source = run.first_harm
        assert run.accepted is not None  # with the first harm
        harmful["acceptance"].append(ReplayedStep(run_id, at, source, "harmful behaviour",
                                                  *run.accepted))
    _check_recorded_scope(workspace, incident, runs, matched)
    result = ScopeReplay(incident=incident.id, harmful=harmful,
                         runs_in_scope=len(runs) - outside.runs, outside=outside,
                         unharmed=frozenset(r for r, run in runs.items() if run.first_harm is None))
    _CACHE[:] = [*_CACHE[-3:], ((incident, today, baseline.directory), result)]
    return result


# The last few replays, by the incident and today's controls (the same objects through one
# gate run) and the baseline's folder: every check and each control change ask for the
# same scope, and the logs are read once.
_CACHE: list[tuple[tuple[Incident, Controls, Path], ScopeReplay]] = []


def scope_steps(workspace: Workspace, incident: Incident, baseline: Controls, today: Controls,
                layer: ReplayLayer) -> list[ReplayedStep]:
    """The in-scope harmful steps ``layer`` decides; none when the incident has no
    investigation."""
    scope = replay_scope(workspace, incident, baseline, today)
    return scope.harmful[layer] if scope is not None else []


@dataclass
class LoggedOverblocking:
    """Over every open, contained, investigated incident: what today newly stops outside
    its logged scope."""

    findings: list[str] = field(default_factory=list)
    review_load: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: int = 0
    newly_denied: int = 0
    newly_routed: int = 0


def _open_scopes(inputs: GateInputs) -> Iterator[tuple[Incident, ScopeReplay | str]]:
    """Each open, contained, investigated incident with its logged scope replayed against
    its baseline, or the reason it cannot be (fail closed: the caller reports an error)."""
    for incident in inputs.incidents:
        if (incident.phase == "closed" or incident.containment is None
                or incident.investigation is None):
            continue
        try:
            baseline = load_baseline(inputs.workspace, incident)
            scope = replay_scope(inputs.workspace, incident, baseline, inputs.controls)
        except ReinstateError as exc:
            yield incident, f"{incident.id}: cannot replay its logged scope: {exc}"
            continue
        assert scope is not None  # the incident has an investigation
        yield incident, scope


def logged_overblocking(inputs: GateInputs) -> LoggedOverblocking:
    """Tool calls logged outside each open incident's scope that today's permissions newly
    deny (findings) or newly send to a person (review load), against its baseline."""
    found = LoggedOverblocking()
    for _, scope in _open_scopes(inputs):
        if isinstance(scope, str):
            found.errors.append(scope)
            continue
        out = scope.outside
        found.calls += out.calls
        found.newly_denied += out.newly_denied.count
        found.newly_routed += out.newly_routed.count
        found.findings += [f"over-blocking: {line}"
                           for line in scope.overblocking(acceptance=False)]
        found.review_load += scope.review_load()
    return found


@dataclass
class LoggedHarm:
    """Over every open, contained, investigated incident: its logged harmful steps and
    behaviours as today's controls decide them."""

    steps: list[tuple[ReplayedStep, bool]] = field(default_factory=list)
    """Each in-scope harmful call or output (its review-layer replay), and whether today's
    controls stop it: a call denied by the permissions or routed to a person, an output
    routed to a person."""
    calls: list[ReplayedStep] = field(default_factory=list)
    """Each in-scope harmful call through the permissions."""
    behaviours: list[ReplayedStep] = field(default_factory=list)
    """Each in-scope run's harmful behaviour through the acceptance criteria."""
    errors: list[str] = field(default_factory=list)


def logged_harm(inputs: GateInputs) -> LoggedHarm:
    """The harm logged in each open incident's scope, decided by today's controls, for the
    gate's permission, acceptance and review checks."""
    found = LoggedHarm()
    for _, scope in _open_scopes(inputs):
        if isinstance(scope, str):
            found.errors.append(scope)
            continue
        denied = {(s.run_id, s.step) for s in scope.harmful["permissions"] if s.after.stopped}
        found.steps += [(s, s.after.stopped or (s.run_id, s.step) in denied)
                        for s in scope.harmful["review"]]
        found.calls += scope.harmful["permissions"]
        found.behaviours += scope.harmful["acceptance"]
    return found


def _harm(harmful: dict[ReplayLayer, list[ReplayedStep]], run: _Run, run_id: str, index: int,
          source: str, step: ToolCall | Output, baseline: Controls, today: Controls) -> None:
    """Decide one in-scope harmful step on each layer that decides it."""
    if run.first_harm is None:
        run.first_harm = (index, source)
    layers: Sequence[ReplayLayer]
    if isinstance(step, ToolCall):
        what, layers = step.describe(), ("permissions", "review")
    else:
        what, layers = "output", ("review",)
    # As replay_harm judges a captured harm: each step when it happens, the first stop kept.
    before, after = (replay(step, "acceptance", controls, history=run.history,
                            context=run.context) for controls in (baseline, today))
    kept = run.accepted
    run.accepted = (before, after) if kept is None else (
        kept[0] if kept[0].stopped else before, kept[1] if kept[1].stopped else after)
    for layer in layers:
        harmful[layer].append(ReplayedStep(
            run_id, index, source, what,
            replay(step, layer, baseline, history=run.history, context=run.context),
            replay(step, layer, today, history=run.history, context=run.context)))


def _outside(run: _Run, run_id: str, index: int, source: str, step: ToolCall | Output,
             baseline: Controls, today: Controls) -> None:
    """Decide one step of a run the signature has not reached (yet)."""
    tally = run.outside
    if isinstance(step, ToolCall):
        tally.calls += 1
        what = step.describe()
    else:
        tally.outputs += 1
        what = "output"

    def decided(layer: ReplayLayer) -> ReplayedStep:
        return ReplayedStep(
            run_id, index, source, what,
            replay(step, layer, baseline, history=run.history, context=run.context),
            replay(step, layer, today, history=run.history, context=run.context))

    stopped = decided("stopped")
    if stopped.after.effect == "deny" and stopped.before.effect != "deny":
        tally.newly_denied.add(stopped)
    elif stopped.after.effect == "review" and stopped.before.effect == "allow":
        tally.newly_routed.add(stopped)
    accepted = decided("acceptance")
    if accepted.after.stopped and not accepted.before.stopped:
        tally.newly_rejected.add(accepted)


def _check_recorded_scope(workspace: Workspace, incident: Incident, runs: dict[str, _Run],
                          matched: Counter[str]) -> None:
    """The scope replayed is no narrower than the scope of impact on record.

    The logs are the very files investigated, so the signature finds what it found then;
    less means the signature (or a criterion an output pattern names) changed since, and
    the controls would be proven over less harm than the incident records. More is a
    wider proof, never a narrower one: a criterion made stricter, say.
    """
    assert incident.investigation is not None
    recorded = incident.investigation.scope
    in_scope = {run_id for run_id, run in runs.items() if run.first_harm is not None}
    steps = sum(len(run.history) for run in runs.values())
    found = (f"{matched['tool_call']} call(s) and {matched['output']} output(s) in "
             f"{len(in_scope)} of {len(runs)} runs ({steps} steps)")
    on_record = (f"{recorded.calls_matched} call(s) and {recorded.outputs_matched} output(s) "
                 f"in {recorded.runs_matched} of {recorded.runs_searched} runs "
                 f"({recorded.steps_searched} steps)")
    missing = [r.run_id for r in recorded.runs if r.run_id not in in_scope]
    if ((len(runs), steps) != (recorded.runs_searched, recorded.steps_searched)
            or matched["tool_call"] < recorded.calls_matched
            or matched["output"] < recorded.outputs_matched
            or len(in_scope) < recorded.runs_matched or missing):
        left_out = f" (not {', '.join(missing[:3])})" if missing else ""
        raise InvalidInput(
            workspace.relative(workspace.incidents().path(incident.id)), "investigation.scope",
            f"its logs hold {found} matching investigation.signature{left_out}, not the "
            f"{on_record} on record: the signature or the scope was edited since "
            f"{incident.id} was investigated, and the controls would be proven over other "
            f"harm than the incident records; investigate {incident.id} again")


def _checked_logs(workspace: Workspace, incident: Incident) -> list[tuple[Path, str]]:
    """The investigation's logs, each still the file it read."""
    assert incident.investigation is not None
    record = workspace.relative(workspace.incidents().path(incident.id))
    out = []
    for i, log in enumerate(incident.investigation.logs):
        path = Path(log.path) if Path(log.path).is_absolute() else workspace.root / log.path
        if not is_log_format(log.format):  # a bundled format or a reader plugin's name
            raise InvalidInput(record, f"investigation.logs[{i}].format",
                               f"expected one of {', '.join(LOG_FORMATS)} or a reader plugin, "
                               f"got {log.format!r}")
        if not path.is_file():
            raise InvalidInput(path, "", f"missing: {incident.id}'s investigation read this "
                                         f"log, so its scope of impact cannot be checked")
        with open_regular(path) as handle:
            now = hashlib.file_digest(handle, "sha256").hexdigest()
        if now != log.sha256:
            raise InvalidInput(path, "", f"changed since {incident.id} was investigated "
                                         f"(sha256 {log.sha256[:12]}…, now {now[:12]}…), so its "
                                         f"scope of impact cannot be checked: investigate "
                                         f"{incident.id} again over this log")
        out.append((path, log.format))
    return out
