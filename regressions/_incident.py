"""The incident record, phase by phase, as kept in ``incidents/<id>.yaml``.

The phase is derived from what the record holds, so a hand-edited file and one written
by commands mean the same thing. Every change appends an entry to ``history``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from evalsuite import Record, json_path
from regressions._investigation import Investigation
from regressions._lifecycle import Phase

if TYPE_CHECKING:  # annotation only: reading an incident loads no case model
    from evalsuite import EvalCase

INCIDENT_ID = r"^INC-[1-9][0-9]*$"
Severity = Literal["sev1", "sev2", "sev3", "sev4"]
ContainmentMode = Literal["review", "suspended"]
Layer = Literal[
    "tool_permission_boundary", "eval_coverage", "acceptance_criteria", "review_gate", "logging"
]
# The control layers every RCA covers; ``logging`` is a finding layer too, required only
# when the investigation found that the logs cannot answer what happened.
LAYERS: tuple[Layer, ...] = (
    "tool_permission_boundary", "eval_coverage", "acceptance_criteria", "review_gate"
)
LOGGING: Layer = "logging"
ChangeLayer = Literal[
    "tool_permission_boundary", "eval_coverage", "acceptance_criteria", "review_gate", "prompt"
]
FixLocation = Literal[
    "prompt", "retrieval", "tool_contract", "permission_model", "eval_suite", "human_process"
]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class Event(Record):
    """One change to the incident: who did what, when and why."""

    at: AwareDatetime
    """When, in UTC."""
    actor: str
    """Who made the change."""
    action: str
    """What was done."""
    detail: str = ""
    """Why, or what it concerned."""
    case: str | None = None
    """The regression case a ``capture`` entry recorded."""
    tags: list[str] | None = None
    """The input types that case was captured with (``capture --tag``): the incident's
    input types keep them, whatever the case's tags say later; none on other entries and
    on captures recorded before they were kept."""

    _utc = field_validator("at")(_utc)

    @model_validator(mode="after")
    def _case_of_older_capture(self) -> Event:
        # Captures recorded before entries named their case said it only in words
        # ("INC-1-1 from logs/x.jsonl"); read them once, here, so no reader parses prose.
        if self.action == "capture" and self.case is None and " from " in self.detail:
            self.case = self.detail.split(" from ", 1)[0]
        return self


class Baseline(Record):
    """The controls as they were when the incident was contained: what verification replays."""

    directory: str
    """Folder, relative to the incidents folder, holding copies of the control files."""
    files: dict[str, str]
    """SHA-256 of each copied control file, so a tampered copy is caught."""
    fingerprint: dict[str, str]
    """Fingerprint of the agent's controls, eval suite, regression set and version then."""
    eval_tags: dict[str, int] = Field(default_factory=dict)
    """How many cases covered each input type then."""


class Containment(Record):
    """How the agent was contained."""

    mode: ContainmentMode
    """The mode the agent was put in."""
    contained_at: AwareDatetime
    """When the mode took effect, in UTC."""
    contained_by: str
    """Who contained it."""
    notified: list[str] = Field(min_length=1)
    """Who was told (legal, compliance, eng-lead, …)."""
    scope: str = Field(min_length=1)
    """The scope of harm as known at containment."""
    target_hours: float = Field(gt=0)
    """The time-to-contain target that applied."""
    baseline: Baseline
    """The control snapshot taken at containment."""

    _utc = field_validator("contained_at")(_utc)


NotifyEvent = Literal["contain", "gate", "restore"]
DeliveryStatus = Literal["sent", "failed", "not_configured"]


class Notification(Record):
    """One message to one audience through one service, and how its delivery went."""

    event: NotifyEvent
    """What it told of: the containment, a failed gate of the contained agent, the restore."""
    audience: str
    """Who it was for (``legal``, ``eng-lead``, …), as ``--notify`` named them."""
    service: str | None = None
    """The service's URL scheme (``mailto``, ``json``, ``slack``, …), never the URL, which
    may hold secrets; none when the audience has no service configured."""
    status: DeliveryStatus
    """sent; failed (``reason`` says why); not_configured (no URL for this audience in
    ``[notify]`` of reinstate.toml, so nobody was told through reinstate)."""
    reason: str = ""
    """Why it failed, with secrets masked."""
    at: AwareDatetime
    """When the delivery was sent or given up, in UTC."""

    _utc = field_validator("at")(_utc)


class Finding(Record):
    """What root-cause analysis found at one control layer."""

    id: str = Field(pattern=r"^F-[1-9][0-9]*$")
    """``F-1``, ``F-2``, …"""
    layer: Layer
    """The control layer examined."""
    gap: bool
    """Whether this layer failed to stop the harm."""
    description: str = Field(min_length=1)
    """What the layer did or failed to do."""
    evidence: list[str] = Field(default_factory=list)
    """Run steps, case ids or rule ids that show it."""
    fix_location: FixLocation | None = None
    """Where the fix belongs."""


class ControlChange(Record):
    """A specific, testable change to a control layer, tied to the findings it addresses."""

    id: str = Field(pattern=r"^CC-[1-9][0-9]*$")
    """``CC-1``, ``CC-2``, …"""
    layer: ChangeLayer
    """The layer changed; ``prompt`` for a change to the agent itself."""
    addresses: list[str] = Field(default_factory=list)
    """Ids of the findings this change addresses; only a prompt change may address none."""
    description: str = Field(min_length=1)
    """What changed."""


class Incident(Record):
    """One incident of one agent."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    id: str = Field(pattern=INCIDENT_ID)
    """``INC-1``, ``INC-2``, …; the file is ``incidents/<id>.yaml``."""
    agent: str
    """The agent involved."""
    summary: str = Field(min_length=1)
    """What happened, in a sentence."""
    severity: Severity
    """sev1 (worst) to sev4."""
    detected_at: AwareDatetime
    """When the harm was detected, in UTC; the containment clock starts here."""
    opened_by: str
    """Who opened the incident."""
    containment: Containment | None = None
    """How and when the agent was contained."""
    investigation: Investigation | None = None
    """The timeline, scope of impact and logging gaps found in the logs."""
    findings: list[Finding] = Field(default_factory=list)
    """Root-cause findings, one per control layer."""
    no_control_gap_reason: str | None = None
    """Why no control layer failed, when the only fix is to the prompt."""
    control_changes: list[ControlChange] = Field(default_factory=list)
    """The changes that resolve the findings."""
    post_incident_review: date | None = None
    """When the post-incident review is scheduled."""
    restored_at: AwareDatetime | None = None
    """When the agent went back to full operation."""
    closed_at: AwareDatetime | None = None
    """When the incident was closed after its review."""
    notifications: list[Notification] = Field(default_factory=list)
    """Every message reinstate sent (or could not) about this incident, oldest first."""
    history: list[Event] = Field(default_factory=list)
    """Every change to this record, oldest first; entries are only ever appended."""

    _utc = field_validator("detected_at", "restored_at", "closed_at")(
        lambda v: None if v is None else _utc(v)
    )

    @property
    def last_recorded_at(self) -> datetime:
        """The latest time the record holds of its own course: detection, containment,
        restore, closing, each notification and each history entry (not the times of the
        logged runs its investigation quotes)."""
        times = [self.detected_at, *(e.at for e in self.history),
                 *(n.at for n in self.notifications)]
        times += [t for t in (self.restored_at, self.closed_at) if t is not None]
        if self.containment is not None:
            times.append(self.containment.contained_at)
        return max(times)

    @property
    def phase(self) -> Phase:
        """Where the incident stands, derived from what it records."""
        if self.closed_at is not None:
            return "closed"
        if self.restored_at is not None:
            return "restored"
        if self.control_changes:
            return "resolving"
        # The logging finding comes out of the investigation itself, so only a finding on
        # a control layer starts the root-cause analysis of an investigated incident.
        if any(f.layer in LAYERS for f in self.findings):
            return "analysing"
        if self.investigation is not None:
            return "investigating"
        if self.findings:
            return "analysing"
        if self.containment is not None:
            return "contained"
        return "detected"

    @property
    def time_to_contain(self) -> timedelta | None:
        """Detection to containment."""
        if self.containment is None:
            return None
        return self.containment.contained_at - self.detected_at

    @property
    def containment_target_met(self) -> bool | None:
        """Whether containment came within its target."""
        taken = self.time_to_contain
        if taken is None or self.containment is None:
            return None
        # In seconds: a timedelta of the target overflows at a few billion hours (and at
        # `inf`), and a report must not crash on a target the file allows.
        return taken.total_seconds() <= self.containment.target_hours * 3600

    def reference_problems(self) -> list[tuple[list[str | int], str]]:
        """Cross-field mistakes a schema cannot see: (location, what was expected)."""
        problems: list[tuple[list[str | int], str]] = []
        seen: set[str] = set()
        for i, finding in enumerate(self.findings):
            if finding.id in seen:
                problems.append((["findings", i, "id"], f"duplicate finding id '{finding.id}'"))
            seen.add(finding.id)
        changes: set[str] = set()
        for i, change in enumerate(self.control_changes):
            if change.id in changes:
                problems.append(
                    (["control_changes", i, "id"], f"duplicate control change id '{change.id}'")
                )
            changes.add(change.id)
            if not change.addresses and change.layer != "prompt":
                problems.append((
                    ["control_changes", i, "addresses"],
                    "a control-layer change must address at least one finding",
                ))
            for j, ref in enumerate(change.addresses):
                if ref not in seen:
                    known = ", ".join(sorted(seen)) or "none recorded"
                    problems.append((
                        ["control_changes", i, "addresses", j],
                        f"no finding '{ref}' (findings: {known})",
                    ))
        if self.restored_at is not None and self.containment is None:
            problems.append((["restored_at"], "an incident is restored only after containment"))
        if self.closed_at is not None and self.restored_at is None:
            problems.append((["closed_at"], "an incident is closed only after restoration"))
        if self.investigation is not None:
            problems += [(["investigation", "scope", *loc], message)
                         for loc, message in self.investigation.scope.problems()]
        return problems + self._clock_problems()

    def _clock_problems(self) -> list[tuple[list[str | int], str]]:
        """Times out of the order they happen in: detection comes before the incident is
        opened and before containment, containment before the restore, the restore before
        the closing. A detection moved past containment makes the clock run backwards, and
        a negative time to contain reads as within any target."""
        problems: list[tuple[list[str | int], str]] = []
        opened = next((e.at for e in self.history if e.action == "open"), None)
        if opened is not None and self.detected_at > opened:
            problems.append((["detected_at"], f"expected a detection no later than the "
                             f"incident's opening ({opened.isoformat()}), got "
                             f"{self.detected_at.isoformat()}"))
        order: list[tuple[list[str | int], datetime | None]] = [
            (["detected_at"], self.detected_at),
            (["containment", "contained_at"],
             self.containment.contained_at if self.containment else None),
            (["restored_at"], self.restored_at),
            (["closed_at"], self.closed_at),
        ]
        known = [(loc, at) for loc, at in order if at is not None]
        for (before, earlier), (loc, at) in pairwise(known):
            if at < earlier:
                problems.append((loc, f"expected a time no earlier than {json_path(before)} "
                                      f"({earlier.isoformat()}), got {at.isoformat()}"))
        return problems

    def input_types(self, cases: Iterable[EvalCase]) -> list[str]:
        """The incident's input types: the tags of its regression ``cases`` today and those
        its history records them captured with, ``unclassified`` left out. A case retagged
        since its capture still holds the incident to the type it was captured as, so
        eval coverage is never verified for another type than the harm's."""
        captured = {t for e in self.history if e.action == "capture" for t in e.tags or ()}
        return sorted(({t for c in cases for t in c.tags} | captured) - {"unclassified"})

    def next_id(self, prefix: str) -> str:
        """The next free ``F-n`` or ``CC-n``."""
        used = [f.id for f in self.findings] + [c.id for c in self.control_changes]
        numbers = [int(u.split("-")[1]) for u in used if u.startswith(prefix + "-")]
        return f"{prefix}-{max(numbers, default=0) + 1}"


def utc_now() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)
