"""Investigating an incident in its logs: attach its runs, build the timeline, measure the
scope of impact, and find what the logs cannot answer.

Every log is read as a stream, twice at most: once to match the signature against every
step (keeping the incident's own runs whole as they pass), and once more to put together
the runs in scope that the first pass did not keep, so their logs can be checked for the
four questions. Everything is computed before the incident file is touched; it is then
changed once, under its lock, so a bad log leaves it exactly as it was.

What is written is redacted (the runs are matched and checked raw, in memory): the
timeline's steps and events and the gaps' details, one redactor for the whole
investigation, so one address is one placeholder from the first event to the last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite import (
    Behaviour,
    Criterion,
    InvalidInput,
    Redactor,
    ReinstateError,
    Run,
    Skips,
    detect_format,
    judge_all,
    load_cases,
    located_runs,
    open_regular,
    read_logs,
)
from gates._config import Workspace
from gates._response.ingest import Tally
from gates._store.access import open_store
from gates._store.backends import StateStore
from regressions import (
    LOGGING,
    QUESTIONS,
    ROOT_CAUSE,
    Finding,
    Incident,
    Investigation,
    LogFile,
    LoggingGap,
    RegressionCase,
    ScopeSearch,
    Signature,
    TimelineEvent,
    build_timeline,
    derive_signature,
    incident_events,
    logging_gaps,
    next_phase,
    short,
    trigger_steps,
    utc_now,
)

# The runs in scope whose logs are put together and checked; the count above it is exact.
GAP_CHECK_LIMIT = 1000
# The run ids read from more than one log that are named one by one; the rest are counted.
SAID_RUNS_IN_MANY_LOGS = 5


@dataclass
class Investigated:
    """What an investigation found and wrote."""

    incident: Incident
    investigation: Investigation
    skipped: Skips | None = None
    warnings: list[str] = field(default_factory=list)


def log_files(workspace: Workspace, paths: Sequence[Path], fmt: str) -> list[LogFile]:
    """Each log with its hash and format; a missing or unreadable one is an error now."""
    if not paths:
        raise InvalidInput(None, "--logs", "expected at least one log file")
    files = []
    for path in paths:
        chosen = detect_format(path) if fmt == "auto" else fmt
        digest = hashlib.sha256()
        with open_regular(path) as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        files.append(LogFile(path=workspace.relative(path), sha256=digest.hexdigest(),
                             format=chosen))
    return files


def acceptance_criteria(workspace: Workspace, agent: str) -> dict[str, Criterion]:
    """Today's acceptance criteria of the agent, by id."""
    controls = workspace.controls(agent)
    return {c.name: c for c in controls.acceptance.criteria}


def incident_cases(workspace: Workspace, incident: Incident) -> list[RegressionCase]:
    """The regression cases captured for the incident."""
    cases = load_cases(workspace.regressions_dir(incident.agent), RegressionCase, incident.agent)
    return [c for c in cases.values() if c.provenance.incident == incident.id]


def signature_for(incident: Incident, cases: list[RegressionCase],
                  criteria: dict[str, Criterion]) -> Signature:
    """The signature on record (perhaps edited by hand), else one derived from the cases."""
    if incident.investigation is not None:
        return incident.investigation.signature

    def failed(output: str) -> list[str]:
        judged = judge_all(list(criteria.values()), Behaviour(output=output))
        return [j.criterion for j in judged if not j.passed]

    derived = derive_signature(cases, failed)
    if derived is None:
        raise InvalidInput(None, incident.id, "no regression case records harm to look for: "
                                              "capture the harmful run first (reinstate "
                                              "capture)")
    return derived


def mode_events(store: StateStore, agent: str) -> list[TimelineEvent]:
    """Every mode change of the agent, from the audit log."""
    return [TimelineEvent(at=e.at, kind="mode_change", source=f"audit log #{e.seq}",
                          summary=short(f"{agent} → {e.detail.get('mode', '?')} by {e.actor}: "
                                        f"{e.reason}"))
            for e in store.audit(agent) if e.action == "mode"]


def redacted_timeline(runs: list[tuple[Run, list[str]]], events: list[TimelineEvent],
                      redactor: Redactor, cases: Sequence[RegressionCase] = (),
                      ) -> list[TimelineEvent]:
    """The timeline of ``runs`` and ``events``, redacted.

    Steps are redacted before they are summarised, so a value cut short at the end of a
    summary cannot leave its first digits behind; the other events' summaries after.
    """
    shown = [(redactor.run(run), places) for run, places in runs]
    return [event if event.run_id is not None
            else event.model_copy(update={"summary": redactor.text(event.summary)})
            for event in build_timeline(shown, events, trigger_steps(cases))]


def investigate(workspace: Workspace, incident_id: str, logs: Sequence[Path], *, actor: str,
                fmt: str = "auto", skip_invalid: bool = False, strict: bool = False,
                tally: Tally | None = None,
                store: StateStore | None = None) -> Investigated:
    """Investigate an incident in ``logs`` and record what was found in the incident.

    With ``tally``, what each log holds is counted in the same pass; a log read as
    nothing, runs with no steps, or records not understood is a warning, or with
    ``strict`` an :class:`InvalidInput` raised before anything is written.
    """
    book = workspace.incidents()
    incident = book.load(incident_id)
    next_phase(incident.id, "investigate", incident.phase)
    files = log_files(workspace, logs, fmt)
    criteria = acceptance_criteria(workspace, incident.agent)
    cases = incident_cases(workspace, incident)
    signature = signature_for(incident, cases, criteria)
    own = list(dict.fromkeys(c.provenance.run_id for c in cases))
    skips = Skips() if skip_invalid else None
    search = ScopeSearch(signature, criteria, keep=own, show=workspace.relative)
    for part in read_logs(logs, fmt, agent=incident.agent, skips=skips):
        if tally is not None:
            tally.count(part)
        search.feed(part)
    warnings = tally.finish(incident.agent, strict=strict) if tally is not None else []
    warnings += _runs_in_many_logs(search.runs_in_many_logs)
    warnings += search.starts.lines("in the timeline and the scope", workspace.relative,
                                    SAID_RUNS_IN_MANY_LOGS)
    attached = located_runs(search.kept, workspace.relative)
    missing = [r for r in own if r not in {run.run_id for run, _ in attached}]
    if missing:
        warnings.append(f"the logs do not hold {', '.join(missing)}, the run(s) the "
                        f"incident's cases were captured from")
    matched = search.matched_runs
    found = set(matched)
    outside = [run.run_id for run, _ in attached if run.run_id not in found]
    if outside:  # the gate fails such a scope: said now, where the signature is edited
        warnings.append(f"the signature matches no step of {', '.join(outside)}, the run(s) "
                        f"the incident's cases were captured from: the scope leaves out the "
                        f"harm it comes from, and the gate fails it; fix the signature")
    checked = matched[:GAP_CHECK_LIMIT]
    whole = {run.run_id: (run, places) for run, places in attached}
    wanted = set(checked) - set(whole)
    if not attached and matched:  # nothing captured to attach: show the first matches
        wanted |= set(matched[:3])
    if wanted:
        again = [p for p in read_logs(logs, fmt, agent=incident.agent,
                                      skips=Skips() if skip_invalid else None)
                 if p.run_id in wanted]
        for run, places in located_runs(again, workspace.relative):
            whole[run.run_id] = (run, places)
        if not attached:
            attached = [whole[r] for r in matched[:3] if r in whole]
    if len(matched) > GAP_CHECK_LIMIT:
        warnings.append(f"checked the logs of the first {GAP_CHECK_LIMIT} of {len(matched)} "
                        f"runs in scope for the four questions")
    in_scope = list(dict.fromkeys([*[run.run_id for run, _ in attached], *checked]))
    gaps: list[LoggingGap] = []
    for run_id in in_scope:
        if run_id in whole:
            run, places = whole[run_id]
            gaps += logging_gaps(run, places[0] if places else files[0].path)
    events = incident_events(incident, workspace.relative(book.path(incident.id)))
    try:
        events += mode_events(store or open_store(workspace), incident.agent)
    except ReinstateError as exc:
        warnings.append(f"mode changes left out of the timeline: {exc}")
    redactor = Redactor()  # one for the whole investigation: one value, one placeholder
    timeline = redacted_timeline(attached, events, redactor, cases)
    record = Investigation(
        investigated_at=utc_now(), investigated_by=actor, logs=files,
        runs=[run.run_id for run, _ in attached], signature=signature, scope=search.scope(),
        timeline=timeline, runs_checked=len(in_scope),
        logging_gaps=[g.model_copy(update={"detail": redactor.text(g.detail)}) for g in gaps],
        skipped_records=skips.total if skips else 0,
    )
    detail = (f"{record.scope.runs_matched} of {record.scope.runs_searched} runs matched; "
              f"{len(record.gap_runs)} run(s) with logging gaps")
    with book.change(incident.id, action="investigate", actor=actor, detail=detail) as changed:
        changed.investigation = record
        finding = _logging_finding(changed, record)
        if finding is not None:
            changed.findings = [f for f in changed.findings if f.layer != LOGGING] + [finding]
    return Investigated(incident=book.load(incident.id), investigation=record, skipped=skips,
                        warnings=warnings)


def _runs_in_many_logs(runs: dict[str, list[str]]) -> list[str]:
    """A warning for each run id read from more than one log (the first
    :data:`SAID_RUNS_IN_MANY_LOGS`, then how many more): runs are joined by id, so another
    run that reused the id in another log is in the timeline and the scope as part of it."""
    said = [f"run {run_id} was read from more than one log ({', '.join(logs)}): its parts are "
            f"joined as one run in the timeline and the scope; if another run reused the id "
            f"there, investigate with the logs apart"
            for run_id, logs in list(runs.items())[:SAID_RUNS_IN_MANY_LOGS]]
    if len(runs) > SAID_RUNS_IN_MANY_LOGS:
        said.append(f"… and {len(runs) - SAID_RUNS_IN_MANY_LOGS} more run ids read from more "
                    f"than one log")
    return said


def _logging_finding(incident: Incident, record: Investigation) -> Finding | None:
    """The logging finding the gaps produce; None when there are none and none was recorded."""
    existing = next((f for f in incident.findings if f.layer == LOGGING), None)
    if not record.logging_gaps and (existing is None or not record.runs_checked):
        # No run checked says nothing of the logs: a gap on record is not cleared by it
        # ("every one of the 0 runs in scope answers the four questions").
        return existing
    finding_id = existing.id if existing is not None else incident.next_id("F")
    if not record.logging_gaps:
        return Finding(id=finding_id, layer=LOGGING, gap=False,
                       description=f"every one of the {record.runs_checked} runs in scope "
                                   f"answers the four questions")
    questions = sorted({g.question for g in record.logging_gaps},
                       key=list(QUESTIONS).index)
    unanswered = "; ".join(QUESTIONS[q] for q in questions)
    return Finding(
        id=finding_id, layer=LOGGING, gap=True,
        description=f"{ROOT_CAUSE}: {len(record.gap_runs)} of {record.runs_checked} runs in "
                    f"scope cannot answer {unanswered}",
        evidence=[f"{g.run_id}: {g.question}: {g.detail}" for g in record.logging_gaps[:10]],
    )
