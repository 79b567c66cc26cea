"""The postmortem: an incident written up for its review and for compliance.

Everything comes from records: the incident file (clock, notifications, scope, RCA,
changes, history), its investigation when there is one, the regression cases captured
for it, and the latest verdict (which changes are proven). Nothing is run. What is
missing is said, never smoothed over: an incident without an investigation reads "not
investigated", and a change the latest verdict did not prove reads as unverified.
E-mail addresses, phone and card numbers and tokens are replaced by placeholders
throughout (an investigation recorded before redaction covered it is redacted here).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

from pydantic import AwareDatetime, Field

from evalsuite import Record, Redactor, load_cases
from gates._config import Workspace
from gates._reports.incident_view import IncidentView, incident_view
from gates._reports.templating import render_markdown
from gates._store.access import open_store, standing, store_exists
from gates._store.backends import StateStore
from gates._verdict.verdict import Outcome
from regressions import (
    Incident,
    Notification,
    RegressionCase,
    scope_lines,
    trigger_marks,
    trigger_steps,
    trigger_summary,
    utc_now,
)


class ClockEntry(Record):
    """One moment of the response, timed from detection and held against its target."""

    what: str
    """detected, contained, restored, closed."""
    at: AwareDatetime | None
    """When; none when it has not happened yet."""
    elapsed: str = ""
    """Time since detection: ``2h 35m``."""
    target: str = ""
    """The target and whether it was met, in words."""
    met: bool | None = None
    """Whether the target was met; none when there is no target or it has not happened."""


class TimelineEntry(Record):
    """One line of a timeline."""

    at: AwareDatetime | None
    """When, if known."""
    what: str
    """What happened."""
    who: str = ""
    """Who did it, or where it was read."""
    trigger: str | None = None
    """The regression case whose trigger this step is (the input that caused the harm)."""


class CaseAdded(Record):
    """A regression case captured for the incident."""

    id: str
    """The case id."""
    captured_at: AwareDatetime
    """When it was captured."""
    captured_by: str
    """Who captured it."""
    source: str
    """The log it was captured from, and the run."""
    tags: list[str]
    """The input types it covers."""
    expects: list[str]
    """What it requires, in words."""
    trigger: str | None = None
    """The input that caused the harm, in a line; none in cases captured before triggers
    were recorded."""


class Postmortem(Record):
    """Everything the postmortem shows."""

    incident: IncidentView
    """The incident with its chain finding → change → verification."""
    agent: str
    """The agent involved."""
    opened_by: str
    """Who opened the incident."""
    generated_at: AwareDatetime
    """When this write-up was made."""
    clock: list[ClockEntry]
    """Detected, contained, restored, closed: each against its target."""
    mode: str | None = None
    """The mode the agent was contained in."""
    notified: list[str] = Field(default_factory=list)
    """Who was notified at containment."""
    not_notified: list[str] = Field(default_factory=list)
    """Who the workspace requires to be notified and was not."""
    scope: str | None = None
    """The scope of harm as recorded at containment."""
    notifications: list[Notification] = Field(default_factory=list)
    """Every message reinstate sent or tried to send about the incident: who was told when."""
    investigated: bool = False
    """Whether an investigation is on record."""
    timeline: list[TimelineEntry] = Field(default_factory=list)
    """The investigation's timeline of what the agent did."""
    investigation: list[str] = Field(default_factory=list)
    """Other facts the investigation recorded (scope of impact, logging gaps), as lines."""
    response: list[TimelineEntry] = Field(default_factory=list)
    """The response as the incident's history records it."""
    verdict_outcome: Outcome | None = None
    """The latest verdict's outcome; none when the agent was never gated."""
    verdict_created_at: AwareDatetime | None = None
    """When the latest verdict was computed."""
    cases: list[CaseAdded] = Field(default_factory=list)
    """The regression cases captured for the incident."""
    follow_ups: list[str] = Field(default_factory=list)
    """What remains to be done."""
    review: date | None = None
    """The post-incident review date."""


def _elapsed(delta: timedelta) -> str:
    # A started minute counts whole, as in ``incident show``: floored, a containment 30
    # seconds past its 4h target read "4h 00m" next to "MISSED the 4h target".
    minutes = math.ceil(delta.total_seconds() / 60)
    days, hours = divmod(minutes // 60, 24)
    return (f"{days}d " if days else "") + f"{hours}h {minutes % 60:02d}m"


def _clock(incident: Incident, contained_at: datetime | None) -> list[ClockEntry]:
    entries = [ClockEntry(what="detected", at=incident.detected_at, elapsed="0h 00m",
                          target="the clock starts here")]
    containment = incident.containment
    if containment is None or contained_at is None:
        entries.append(ClockEntry(what="contained", at=None, target="not contained", met=False))
    else:
        taken = contained_at - incident.detected_at
        # In seconds, as Incident.containment_target_met: a timedelta of the target
        # overflows at a few billion hours.
        met = taken.total_seconds() <= containment.target_hours * 3600
        entries.append(ClockEntry(
            what="contained", at=contained_at, elapsed=_elapsed(taken), met=met,
            target=f"{'within' if met else 'MISSED'} the {containment.target_hours:g}h target"))
    restored = incident.restored_at
    entries.append(ClockEntry(
        what="restored", at=restored,
        elapsed=_elapsed(restored - incident.detected_at) if restored else "",
        target="no restore target is set" if restored else "not restored yet"))
    if incident.closed_at is not None:
        early = _closed_early(incident)
        entries.append(ClockEntry(what="closed", at=incident.closed_at,
                                  elapsed=_elapsed(incident.closed_at - incident.detected_at),
                                  target=early or "after the post-incident review",
                                  met=False if early else None))
    return entries


def _closed_early(incident: Incident) -> str | None:
    """Why the incident's closing came before its post-incident review, in words; None when
    it came on or after the review's date. Closing is typed into the file by hand: the record
    must not say a review was held that is still to come (or was never scheduled)."""
    review, closed = incident.post_incident_review, incident.closed_at
    if closed is None:
        return None
    if review is None:
        return "with no post-incident review scheduled"
    if closed.date() < review:
        return f"BEFORE the post-incident review of {review.isoformat()}"
    return None


def _investigation(incident: Incident, cases: list[RegressionCase],
                   ) -> tuple[bool, list[TimelineEntry], list[str]]:
    """The investigation's timeline, each case's trigger step marked (also for cases
    captured after the investigation), and its other findings as lines of facts."""
    found = incident.investigation
    if found is None:
        return False, [], []
    marks = trigger_marks(found.timeline, trigger_steps(cases))
    timeline = [TimelineEntry(at=e.at, what=f"{e.kind.replace('_', ' ')}: {e.summary}",
                              who=e.source, trigger=e.trigger or mark)
                for e, mark in zip(found.timeline, marks, strict=True)]
    facts = [f"investigated {found.investigated_at:%Y-%m-%d %H:%M} UTC by "
             f"{found.investigated_by}, in {', '.join(log.path for log in found.logs)}"]
    facts += [f"scope of impact: {line.strip()}" for line in scope_lines(found.scope)]
    if found.logging_gaps:
        facts += [f"logging gap in {g.run_id} ({g.question}): {g.detail}"
                  for g in found.logging_gaps]
    elif not found.runs_checked:  # no run checked: the logs' answers are unknown
        facts.append("logging: unknown: no run in scope was found in the logs, so none was "
                     "checked for what goal, context, tools and completion it had")
    else:
        facts.append(f"logging: the logs of the {found.runs_checked} run(s) in scope answer "
                     f"what goal, context, tools and completion each had")
    return True, timeline, facts


def _follow_ups(pm: Postmortem, incident: Incident) -> list[str]:
    actions = []
    if not pm.investigated:
        actions.append("investigate: reconstruct the timeline and the scope of impact from the "
                       "logs (a missing log is itself a root cause)")
    for name in pm.not_notified:
        actions.append(f"notify {name}: reinstate.toml requires it at containment")
    reached = {n.audience for n in pm.notifications if n.event == "contain" and n.status == "sent"}
    for name in dict.fromkeys(n.audience for n in pm.notifications
                              if n.event == "contain" and n.audience not in reached):
        actions.append(f"make sure {name} knows of the containment: reinstate's message did "
                       f"not reach them")
    contained = next((c for c in pm.clock if c.what == "contained"), None)
    if contained is not None and contained.met is False and contained.at is not None:
        actions.append(f"review why containment took {contained.elapsed} ({contained.target})")
    actions += pm.incident.gaps
    changes = [*(c for f in pm.incident.findings for c in f.changes), *pm.incident.other_changes]
    seen = set()
    for change in changes:
        if change.id not in seen and not change.verified:
            seen.add(change.id)
            actions.append(f"verify {change.id} ({change.layer}): {change.reason}")
    if incident.phase not in ("restored", "closed"):
        actions.append(f"restore {incident.agent} once every change is verified by a current "
                       f"passing verdict (reinstate restore {incident.agent})")
    if incident.post_incident_review is None:
        actions.append(f"schedule the post-incident review (reinstate incident review "
                       f"{incident.id} --on DATE)")
    elif incident.closed_at is None:
        actions.append(f"hold the post-incident review on "
                       f"{incident.post_incident_review.isoformat()}, then close {incident.id}")
    elif _closed_early(incident):
        actions.append(f"hold the post-incident review on "
                       f"{incident.post_incident_review.isoformat()}: {incident.id} was closed "
                       f"before it")
    return actions


def postmortem(workspace: Workspace, incident_id: str,
               store: StateStore | None = None) -> Postmortem:
    """Write up ``incident_id`` from its records and the agent's latest verdict.

    Where there is a state store, the incident is written up as its audit log vouches for
    it, as every decision reads it: a restore (or closing) its file records but the log
    does not is no restore, and it was contained no earlier than its containment entry.
    What the file says otherwise is a follow-up."""
    incident = workspace.incidents().load(incident_id)
    contained_at = incident.containment.contained_at if incident.containment else None
    tampered: list[str] = []
    if store is None and not store_exists(open_store(workspace)):
        verdict = None  # nothing was ever contained or gated here: a write-up, not a decision
    else:
        store = store or open_store(workspace)
        verdict = store.latest_verdict(incident.agent)
        held = standing(workspace, incident.agent, store)
        incident = next(i for i in held.incidents if i.id == incident.id)
        contained_at = held.contained_at(incident)
        tampered = [why for found in (held.forged, held.unknown, held.unbacked)
                    if (why := found.get(incident.id)) is not None]
    proofs = {v.change: v for v in (verdict.verifications if verdict is not None else [])
              if v.incident == incident.id}
    cases = [c for c in load_cases(workspace.regressions_dir(incident.agent), RegressionCase,
                                   incident.agent).values()
             if c.provenance.incident == incident.id]
    investigated, timeline, facts = _investigation(incident, cases)
    containment = incident.containment
    required = workspace.config.containment.notify
    pm = Postmortem(
        incident=incident_view(incident, proofs), agent=incident.agent,
        opened_by=incident.opened_by, generated_at=utc_now(),
        clock=_clock(incident, contained_at),
        mode=containment.mode if containment else None,
        notified=containment.notified if containment else [],
        not_notified=[n for n in required if containment and n not in containment.notified],
        scope=containment.scope if containment else None,
        notifications=incident.notifications,
        investigated=investigated, timeline=timeline, investigation=facts,
        response=[TimelineEntry(at=e.at, what=f"{e.action}: {e.detail}" if e.detail
                                else e.action, who=e.actor) for e in incident.history],
        verdict_outcome=verdict.outcome if verdict is not None else None,
        verdict_created_at=verdict.created_at if verdict is not None else None,
        cases=[CaseAdded(id=c.id, captured_at=c.provenance.captured_at,
                         captured_by=c.provenance.captured_by,
                         source=f"{c.provenance.source} (run {c.provenance.run_id})",
                         tags=c.tags, expects=[e.description or e.name for e in c.expect],
                         trigger=trigger_summary(c))
               for c in cases],
        review=incident.post_incident_review,
    )
    pm.follow_ups = tampered + _follow_ups(pm, incident)
    return Redactor().record(pm)


def postmortem_markdown(pm: Postmortem) -> str:
    """The postmortem as Markdown."""
    return render_markdown("postmortem.md.j2", p=pm)
