"""Verdicts: what a gate run found, check by check, bound to what it was computed on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from evalsuite import Record
from gates._fingerprint import Fingerprint

Outcome = Literal["pass", "fail", "error", "inconclusive"]
# A check that could not run can make the others' findings incomplete, so error ranks first.
_PRECEDENCE: tuple[Outcome, ...] = ("error", "fail", "inconclusive", "pass")
EXIT_CODES: dict[Outcome, int] = {"pass": 0, "fail": 1, "error": 3, "inconclusive": 4}


class CheckResult(Record):
    """One named check of a gate run."""

    name: str
    """The check's registered name."""
    outcome: Outcome
    """pass, fail (a gap was found), error (could not run), inconclusive (not enough evidence)."""
    summary: str
    """One line a release manager can read."""
    findings: list[str] = Field(default_factory=list)
    """Each gap, error or doubt, as a sentence."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Counts and per-item results, for machines and reports."""


class ChangeVerification(Record):
    """Whether one control change is proven to stop the recorded harm."""

    incident: str
    """The incident the change resolves."""
    change: str
    """The control change's id."""
    layer: str
    """The layer it changed."""
    verified: bool
    """True when the harm got through the baseline and is stopped today."""
    reason: str
    """Why, in words."""
    replays: list[dict[str, Any]] = Field(default_factory=list)
    """Each replayed harmful step: its before and after decision with the deciding rule."""


class AuditHead(Record):
    """The audit log's last entry at a moment: its number and hash."""

    seq: int = Field(ge=0)
    """The entry's number (0 for an empty log)."""
    hash: str
    """The entry's hash (zeros for an empty log)."""


class Verdict(Record):
    """The outcome of a gate run. ``bool(verdict)`` means "may restore"."""

    schema_version: Literal[1] = 1
    """Version of this record's format."""
    agent: str
    """The agent gated."""
    outcome: Outcome
    """pass only when every check passed."""
    created_at: AwareDatetime
    """When the gate ran, in UTC."""
    fingerprint: Fingerprint
    """What the verdict was computed on."""
    checks: list[CheckResult]
    """Every check, in the order it ran."""
    audit_head: AuditHead | None = None
    """The audit log's last entry when the verdict was stored; the verdict's own entry
    follows it. A copy of the verdict kept elsewhere anchors the log: an entry removed
    from its end shows (``reinstate audit verify --anchor verdict.json``)."""

    @property
    def verifications(self) -> list[ChangeVerification]:
        """Each control change of each open incident, verified or not."""
        return [
            ChangeVerification.model_validate(v)
            for check in self.checks if check.name == "control_changes"
            for v in check.data.get("verifications", [])
        ]

    def __bool__(self) -> bool:
        return self.outcome == "pass"

    @property
    def exit_code(self) -> int:
        """The CLI exit code for this outcome."""
        return EXIT_CODES[self.outcome]


def combine(outcomes: Iterable[Outcome]) -> Outcome:
    """The verdict of several checks: pass only when all pass; nothing at all is inconclusive."""
    seen = set(outcomes)
    if not seen:
        return "inconclusive"
    return next(o for o in _PRECEDENCE if o in seen)

