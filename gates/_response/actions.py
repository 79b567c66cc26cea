"""The on-call engineer's actions: open, contain, capture, record the RCA and the resolution."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Literal

from evalsuite import (
    InvalidInput,
    LogFormat,
    Run,
    RunPart,
    display_path,
    merge_parts,
    read_log,
)
from gates._config import Workspace
from gates._errors import StoreUnavailable
from gates._gate.baseline import snapshot
from gates._gate.inputs import regression_set_lock
from gates._response.notify import notify_containment
from gates._store.access import RESTORED, open_store, store_exists
from gates._store.backends import ModeRecord, StateStore
from regressions import (
    MAX_GUESSED_CALLS,
    ChangeLayer,
    Containment,
    ContainmentMode,
    ControlChange,
    Finding,
    FixLocation,
    Incident,
    Layer,
    Notification,
    RegressionCase,
    Severity,
    build_case,
    next_phase,
    parse_trigger,
    pick_harmful_steps,
    review_too_early,
    save_case,
    step_candidates,
    utc_now,
)


def open_incident(workspace: Workspace, agent: str, *, summary: str, severity: Severity,
                  actor: str, detected_at: datetime | None = None) -> Incident:
    """Open an incident for ``agent``; it gets the next ``INC-<n>`` id."""
    workspace.require_agent(agent)
    now = utc_now()
    detected = detected_at or now
    if detected.tzinfo is None:
        raise InvalidInput(None, "--detected-at",
                           "expected a time with a timezone, e.g. 2026-11-26T02:10:00Z")
    if detected > now:
        raise InvalidInput(None, "--detected-at",
                           f"expected a time in the past, got {detected.isoformat()}")
    return workspace.incidents().open(agent=agent, summary=summary, severity=severity,
                                      detected_at=detected, actor=actor,
                                      past=max(_numbers_named(workspace), default=0))


# A regression case's file is named ``INC-<n>-<m>.yaml`` after the incident it was captured for.
_CASE_OF = re.compile(r"^INC-([1-9][0-9]*)-[1-9][0-9]*$")
_INCIDENT = re.compile(r"^INC-([1-9][0-9]*)$")


def _numbers_named(workspace: Workspace) -> list[int]:
    """Every incident number the workspace's regression cases and the audit log name,
    whether or not its incident file is still there: a new incident is numbered past them.

    An unreadable store raises :class:`StoreUnavailable`: the ids it names cannot be
    known, and guessing could give a new incident an old one's id.
    """
    found = [int(m.group(1)) for agent in workspace.agents()
             for path in workspace.regressions_dir(agent).glob("INC-*.yaml")
             if (m := _CASE_OF.match(path.stem))]
    store = open_store(workspace)
    try:
        entries = store.audit(actions=("mode", "notify")) if store_exists(store) else []
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"no incident opened: the incident ids the audit log names "
                               f"cannot be read ({exc}), so a new id could repeat an old "
                               f"one's; repair the store, and meanwhile stop the agent by "
                               f"its rollback plan") from None
    for entry in entries:
        named = entry.detail.get("incident")
        restored = entry.detail.get(RESTORED)
        for name in [named, *(restored if isinstance(restored, list) else [])]:
            if isinstance(name, str) and (m := _INCIDENT.match(name)):
                found.append(int(m.group(1)))
    return found


@dataclass
class Contained:
    """What containment did."""

    incident: Incident
    mode: str
    warnings: list[str] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    """Each delivery to the audiences named, as recorded in the incident."""
    notify_configured: bool = True
    """False when ``[notify]`` names no audience, so reinstate told nobody."""
    notify_problem: str | None = None
    """Why reinstate told nobody although the agent is contained: ``[notify]`` is invalid
    (the workspace was found ``containing``); the audiences must be told by hand."""


def contain(workspace: Workspace, incident_id: str, *, mode: ContainmentMode,
            notify: Sequence[str], scope: str, actor: str,
            store: StateStore | None = None) -> Contained:
    """Put the incident's agent in ``mode`` at once, then record containment and the baseline.

    The mode is set first, because containment must take effect before anything else can
    fail. A mode already more restrictive than ``mode`` is kept. Then the audiences in
    ``notify`` are told through the services ``[notify]`` configures for them, within
    its time bounds; a delivery that fails is recorded and returned as a warning, never
    an error. An invalid ``[notify]`` (a workspace found ``containing``) stops nothing:
    the agent is contained, every audience is recorded as not told, and
    :attr:`Contained.notify_problem` says why.
    """
    book = workspace.incidents()
    incident = book.load(incident_id)
    next_phase(incident.id, "contain", incident.phase)
    if not notify:
        raise InvalidInput(None, "--notify", "expected who was notified, e.g. legal,compliance")
    if not scope.strip():
        raise InvalidInput(None, "--scope", "expected the scope of harm as known now")
    warnings = []
    store = store or open_store(workspace)
    now = utc_now()
    try:
        # Read and written in one transaction: a stricter mode already in force (another
        # containment, even one racing this) is kept, never loosened.
        _, effective = store.tighten_mode(
            ModeRecord(agent=incident.agent, mode=mode, since=now, actor=actor,
                       reason=f"contain {incident.id}: {scope}"),
            detail={"incident": incident.id},
        )
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"{incident.agent} is NOT contained: {exc}; stop it by its "
                               f"rollback plan now") from None
    if effective != mode:
        warnings.append(f"{incident.agent} is already {effective}; kept that, the more "
                        f"restrictive mode")
    missing = [n for n in workspace.config.containment.notify if n not in notify]
    if missing:
        warnings.append(f"not notified: {', '.join(missing)} (required by reinstate.toml)")
    baseline = snapshot(workspace, incident)
    with book.change(incident.id, action="contain", actor=actor,
                     detail=f"mode {effective}; notified {', '.join(notify)}") as record:
        record.containment = Containment(
            mode=effective, contained_at=now, contained_by=actor, notified=list(notify),
            scope=scope, target_hours=workspace.config.containment.target_hours,
            baseline=baseline,
        )
    # After the mode and the record are committed: a slow or failing service delays
    # nothing that contains the agent.
    told = notify_containment(workspace, incident.id, actor=actor, store=store)
    return Contained(incident=book.load(incident.id), mode=effective,
                     warnings=warnings + told.warnings, notifications=told.notifications,
                     notify_configured=told.configured, notify_problem=told.problem)


@dataclass
class Captured:
    """What capture wrote, and how it chose the harm when no step was named."""

    path: Path
    case: RegressionCase
    created: bool
    warnings: list[str] = field(default_factory=list)
    took: str | None = None
    """Which steps capture took as the harm and why, when none was named."""


def capture(workspace: Workspace, incident_id: str, run_file: Path, *, actor: str,
            steps: Sequence[int] = (), run_id: str | None = None,
            tags: Sequence[str] = (), keep_raw: bool = False,
            trigger: int | str | None = None,
            fmt: LogFormat | Literal["auto"] = "auto") -> Captured:
    """Capture an incident's harmful run as a regression case under ``regressions/<agent>/``.

    The log may be in any format ``ingest`` reads (``fmt``, detected by default).
    ``trigger`` names the input that caused the harm: a user input's or a tool result's
    step, or ``context.KEY`` (the last user input before the harm by default). Without
    ``steps``, the harm is taken to be the calls to high- and critical-risk (or unknown)
    tools in the last turn that has any (after the trigger when one is named), and the
    output that ended that turn; nothing, or more than :data:`MAX_GUESSED_CALLS` calls, is
    refused with the steps ``--step`` can name. E-mail addresses, phone and card numbers
    and tokens are replaced with placeholders unless ``keep_raw``.
    """
    if isinstance(trigger, str):
        trigger = parse_trigger(trigger)
    book = workspace.incidents()
    incident = book.load(incident_id)
    next_phase(incident.id, "capture", incident.phase)
    run = _read_run(run_file, fmt, run_id, incident.agent)
    warnings = []
    harmful = list(steps)
    took = None
    if not harmful:
        controls = workspace.controls(incident.agent)
        risky = {s.tool for s in run.tool_calls()
                 if controls.risk_of(s.tool) in (None, "high", "critical")}
        picked = pick_harmful_steps(run, risky,
                                    after=trigger if isinstance(trigger, int) else None)
        if not picked.steps or picked.calls > MAX_GUESSED_CALLS:
            problem = (f"found no harmful step ({picked.why})" if not picked.steps else
                       f"found {picked.calls} {picked.why.split(',')[0]}, more than the "
                       f"{MAX_GUESSED_CALLS} capture takes on a guess")
            raise InvalidInput(run_file, f"run {run.run_id}",
                               f"no --step given and capture {problem}: pass the harmful ones "
                               f"with --step N, from: {'; '.join(step_candidates(run))}")
        harmful = picked.steps
        took = f"took step{'s' if len(harmful) > 1 else ''} " \
               f"{', '.join(map(str, harmful))}: {picked.why}"
    if not tags:
        warnings.append("no --tag given: the case is 'unclassified', so eval coverage for "
                        "its input type cannot be verified")
    # Built before the lock, so bad input stops here, before anything is written; the
    # case gets its number when it is saved.
    candidate = build_case(incident, run, f"{incident.id}-0", harmful=harmful,
                           source=run_file, source_label=workspace.relative(run_file),
                           tags=list(tags), actor=actor, keep_raw=keep_raw, trigger=trigger)
    # One writer of the agent's regression set at a time, from writing the case to recording
    # it: two processes capturing the same steps at once write one case and one history
    # entry, and a gate never reads the set half-changed.
    with regression_set_lock(workspace, incident.agent):
        path, case, created = save_case(workspace.regressions_dir(incident.agent),
                                        incident.id, candidate)
        # A capture killed between writing the case and recording it is recorded on retry.
        recorded = any(e.action == "capture" and e.case == case.id
                       for e in book.load(incident.id).history)
        if created or not recorded:
            with book.change(incident.id, action="capture", actor=actor, case=case.id,
                             tags=case.tags,
                             detail=f"{case.id} from {workspace.relative(run_file)}"):
                pass
    if not created:
        warnings.append(f"this capture already exists as {case.id}; nothing written"
                        + ("" if recorded else " (its capture is now in the incident history)"))
    if keep_raw:
        warnings.append(f"{case.id} keeps the raw text: it may hold personal data and secrets")
    return Captured(path=path, case=case, created=created, warnings=warnings, took=took)


def _read_run(path: Path, fmt: LogFormat | Literal["auto"], run_id: str | None,
              agent: str) -> Run:
    """The one run of ``agent`` in the log to capture, put together from its parts as the
    log streams.

    Only the chosen run's parts are kept; with no ``run_id``, a log of several runs is
    refused with their ids. A part of the run that names another agent is refused: the
    parts are numbered and replayed as one run, so a step of another agent's run that
    shares the id (or a conversation handed over between agents) would be captured, and
    replayed, as this agent's harm. The merged run names only its last header's agent, so
    each part is checked as it is read.
    """
    kept: list[RunPart] = []
    seen: dict[str, None] = {}
    other: tuple[str, str] | None = None  # the first part naming another agent, and where
    for part in read_log(path, fmt):
        seen.setdefault(part.run_id)
        if run_id is None:
            if len(seen) > 1:
                continue
        elif part.run_id != run_id:
            continue
        named = part.header.agent if part.header is not None else None
        if named is not None and named != agent and other is None:
            other = (named, part.where())
        kept.append(part)
    ids = list(seen)
    if not ids:
        raise InvalidInput(path, "", "expected a run to capture; the log holds none")
    if run_id is None and len(ids) > 1:
        shown = ", ".join(ids[:10])
        raise InvalidInput(path, "", f"the log holds {len(ids)} runs; choose one with "
                                     f"--run-id ({shown}{', …' if len(ids) > 10 else ''})")
    if run_id is not None and not kept:
        shown = ", ".join(ids[:10])
        raise InvalidInput(path, "", f"no run '{run_id}' in {display_path(path)} (it holds "
                                     f"{shown}{', …' if len(ids) > 10 else ''})")
    if other is not None:
        raise InvalidInput(path, f"run {kept[0].run_id}",
                           f"expected a run of {agent}, got a part of one of {other[0]} "
                           f"(at {other[1]}); capture takes a run none of whose parts names "
                           f"another agent")
    (run,) = merge_parts(kept)
    return run


def record_finding(workspace: Workspace, incident_id: str, *, layer: Layer, gap: bool,
                   description: str, actor: str, evidence: Sequence[str] = (),
                   fix_location: FixLocation | None = None) -> Finding:
    """Record the root-cause finding for one control layer (replacing an earlier one)."""
    book = workspace.incidents()
    with book.change(incident_id, action="finding", actor=actor,
                     detail=f"{layer}: {'gap' if gap else 'no gap'}") as incident:
        existing = next((f for f in incident.findings if f.layer == layer), None)
        finding = Finding(
            id=existing.id if existing else incident.next_id("F"), layer=layer, gap=gap,
            description=description, evidence=list(evidence), fix_location=fix_location,
        )
        incident.findings = [f for f in incident.findings if f.layer != layer] + [finding]
    return finding


def record_change(workspace: Workspace, incident_id: str, *, layer: ChangeLayer,
                  addresses: Sequence[str], description: str, actor: str) -> ControlChange:
    """Record a control change and the findings it addresses."""
    book = workspace.incidents()
    with book.change(incident_id, action="change", actor=actor,
                     detail=f"{layer}: {description}") as incident:
        change = ControlChange(id=incident.next_id("CC"), layer=layer,
                               addresses=list(addresses), description=description)
        incident.control_changes = [*incident.control_changes, change]
    return change


def schedule_review(workspace: Workspace, incident_id: str, *, on: date, actor: str) -> Incident:
    """Schedule the post-incident review; a date before the incident was detected (in any
    time zone, :func:`review_too_early`) is refused."""
    book = workspace.incidents()
    detected = review_too_early(book.load(incident_id), on)
    if detected is not None:
        raise InvalidInput(None, "--on", f"expected a date no earlier than the day "
                                         f"{incident_id} was detected ({detected}), got "
                                         f"{on.isoformat()}")
    with book.change(incident_id, action="review", actor=actor,
                     detail=f"post-incident review on {on.isoformat()}") as incident:
        incident.post_incident_review = on
    return book.load(incident_id)
