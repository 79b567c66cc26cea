"""The regression ratchet: an agent's regression set only ever tightens.

Removing a regression case, or loosening one (a lower threshold, fewer trials, an
expectation dropped or changed, its input, fixtures or recorded harm edited), fails the
gate unless an approval (who, why) is on record for exactly that change.

Where the ratchet remembers: every verdict's ``regression_ratchet`` check keeps the terms
(threshold, trials, a digest of each expectation and of the rest of the case) of every
case it held the set to, and the next gate compares today's set with the latest
verdict's. An unapproved loosening keeps the old terms, so it fails every gate until it
is undone or approved. The incident files (in git) add what survives a fresh state store:
every case an incident's history says was captured must still exist. Approvals are
``ratchet-approval`` entries of the audit log: appended, hash-chained, never edited, each
bound to the case's terms as approved, so a later loosening needs its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from evalsuite import InvalidInput, Record, load_cases
from gates._checks import Evidence, register
from gates._config import Workspace
from gates._inputs import GateInputs
from gates._state import open_store
from gates._store import AuditEntry, StateStore
from gates._verdict import CheckResult
from regressions import RegressionCase

NAME = "regression_ratchet"
APPROVAL = "ratchet-approval"
REMOVED = "removed"


class RatchetTerms(Record):
    """What one regression case holds the agent to, as the ratchet remembers it."""

    threshold: float
    """Share of trials that must pass."""
    trials: int
    """Trials run (the case's own, else the workspace default then)."""
    expect: dict[str, str]
    """Digest of each expectation (its description aside) → its name."""
    content: str
    """Digest of the input, fixtures, recorded harm and provenance."""

    @property
    def digest(self) -> str:
        """Digest of these terms, which an approval is bound to."""
        return _digest(self.model_dump(mode="json"))


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def terms_of(case: RegressionCase, default_trials: int) -> RatchetTerms:
    """The terms ``case`` sets today."""
    rest = case.model_dump(mode="json", exclude={"description", "tags", "expect", "threshold",
                                                 "trials"})
    return RatchetTerms(
        threshold=case.threshold,
        trials=case.trials or default_trials,
        expect={_digest(c.model_dump(mode="json", exclude={"description"})): c.name
                for c in case.expect},
        content=_digest(rest),
    )


@dataclass(frozen=True)
class Loosening:
    """A regression case removed or loosened since the ratchet last held it."""

    case: str
    """The case id."""
    what: str
    """What changed, in words."""
    key: str
    """``removed``, or the digest of the case's terms today: what an approval names."""
    approval: AuditEntry | None = None
    """The approval on record for exactly this change, if any."""


def compare(remembered: dict[str, RatchetTerms], captured: set[str],
            today: dict[str, RatchetTerms]) -> list[Loosening]:
    """Every case in ``remembered`` or ``captured`` that is gone or looser ``today``."""
    found = []
    for case_id in sorted(set(remembered) | captured):
        now = today.get(case_id)
        if now is None:
            found.append(Loosening(case_id, "removed from the regression set", REMOVED))
            continue
        then = remembered.get(case_id)
        if then is None:
            continue
        what = []
        if now.threshold < then.threshold:
            what.append(f"threshold lowered from {then.threshold:g} to {now.threshold:g}")
        if now.trials < then.trials:
            what.append(f"trials lowered from {then.trials} to {now.trials}")
        what += [f"expectation {name} removed or changed"
                 for digest, name in sorted(then.expect.items(), key=lambda i: i[1])
                 if digest not in now.expect]
        if now.content != then.content:
            what.append("input, tool fixtures or recorded harm changed")
        if what:
            found.append(Loosening(case_id, "; ".join(what), now.digest))
    return found


def approvals(store: StateStore, agent: str) -> dict[tuple[str, str], AuditEntry]:
    """The latest approval for each (case, key) of ``agent``, from the audit log."""
    return {(e.detail.get("case", ""), e.detail.get("terms", "")): e
            for e in store.audit(agent) if e.action == APPROVAL}


def _remembered(store: StateStore | None, agent: str) -> dict[str, RatchetTerms]:
    verdict = store.latest_verdict(agent) if store is not None else None
    # Not ``if verdict``: a verdict is truthy only when it passed.
    check = (next((c for c in verdict.checks if c.name == NAME), None)
             if verdict is not None else None)
    if check is None:
        return {}
    return {case_id: RatchetTerms.model_validate(t) for case_id, t in check.data["terms"].items()}


def _captured(workspace: Workspace, agent: str) -> set[str]:
    """Case ids the agent's incident histories record as captured."""
    return {event.detail.split(" from ", 1)[0]
            for incident in workspace.incidents().all(agent)
            for event in incident.history if event.action == "capture" and " from " in event.detail}


def _store(workspace: Workspace, store: StateStore | None) -> StateStore | None:
    """The given store, else the workspace's; None while it was never written (no memory)."""
    if store is not None:
        return store
    return open_store(workspace) if workspace.state_path.exists() else None


def ratchet_status(workspace: Workspace, agent: str, cases: list[RegressionCase] | None = None,
                   store: StateStore | None = None,
                   ) -> tuple[list[Loosening], dict[str, RatchetTerms]]:
    """Every removal and loosening since the ratchet last held ``agent``'s set, each with
    its approval if one is recorded; and the terms the next verdict should remember."""
    workspace.require_agent(agent)
    if cases is None:
        cases = list(load_cases(workspace.regressions_dir(agent), RegressionCase, agent).values())
    default = workspace.config.gate.trials
    today = {case.id: terms_of(case, default) for case in cases}
    held = _store(workspace, store)
    remembered = _remembered(held, agent)
    approved = approvals(held, agent) if held is not None else {}
    found = [Loosening(f.case, f.what, f.key, approved.get((f.case, f.key)))
             for f in compare(remembered, _captured(workspace, agent), today)]
    memory = dict(today)
    for loosening in found:
        if loosening.approval is None and loosening.case in remembered:
            memory[loosening.case] = remembered[loosening.case]  # hold the old terms
        elif loosening.key == REMOVED:
            memory.pop(loosening.case, None)
    return found, memory


@register(NAME)
def regression_ratchet(inputs: GateInputs, evidence: Evidence) -> CheckResult:
    """No regression case was removed or loosened without a recorded approval."""
    found, memory = ratchet_status(inputs.workspace, inputs.agent.name, inputs.regression_cases,
                                   inputs.store)
    open_ = [f for f in found if f.approval is None]
    findings = [f"{f.case}: {f.what}; undo it, or approve it with `reinstate ratchet approve "
                f"{inputs.agent.name} {f.case} --reason …`" for f in open_]
    done = [f for f in found if f.approval is not None]
    summary = (f"regression cases held: {len(memory)}; {len(open_)} removed or loosened "
               f"without approval" + (f", {len(done)} approved" if done else ""))
    return CheckResult(
        name=NAME, outcome="fail" if open_ else "pass", summary=summary, findings=findings,
        data={
            "terms": {k: v.model_dump(mode="json") for k, v in sorted(memory.items())},
            "loosened": [{"case": f.case, "what": f.what} for f in open_],
            "approved": [{"case": f.case, "what": f.what, "by": f.approval.actor,
                          "why": f.approval.reason, "at": f.approval.at.isoformat()}
                         for f in done if f.approval is not None],
        },
    )


def approve_loosening(workspace: Workspace, agent: str, case_id: str, *, reason: str,
                      actor: str, store: StateStore | None = None) -> AuditEntry:
    """Record who approves removing or loosening ``case_id`` today, and why.

    The approval is bound to the case as it is now: loosening it further needs another.
    """
    if not reason.strip():
        raise InvalidInput(None, "--reason", "expected why the regression set may loosen")
    store = store or open_store(workspace)
    found, _ = ratchet_status(workspace, agent, store=store)
    pending = {f.case: f for f in found}
    loosening = pending.get(case_id)
    if loosening is None:
        listed = ", ".join(sorted(pending)) or "none"
        raise InvalidInput(None, "CASE_ID", f"{case_id} was not removed or loosened since the "
                                            f"last gate of {agent}: nothing to approve "
                                            f"(removed or loosened: {listed})")
    return store.append(actor=actor, action=APPROVAL, agent=agent, reason=reason.strip(),
                        detail={"case": case_id, "terms": loosening.key,
                                "change": loosening.what})
