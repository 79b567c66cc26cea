"""Restoration: back to full operation only on a current passing verdict, every change verified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gates._attestation import configured_public_key, key_id, signature_problem
from gates._audit import verify_audit
from gates._config import Workspace
from gates._errors import Refused
from gates._fingerprint import fingerprint
from gates._state import open_store
from gates._store import ModeRecord, StateStore
from regressions import Incident, resolution_gaps, utc_now


def unresolved(workspace: Workspace, agent: str) -> list[Incident]:
    """The agent's incidents that are not yet restored or closed."""
    return [i for i in workspace.incidents().all(agent) if i.phase not in ("restored", "closed")]


def restore_blockers(workspace: Workspace, agent: str, store: StateStore, *,
                     public_key: Path | None = None) -> list[str]:
    """Every unmet condition for restoring ``agent``, as sentences; empty means it may restore.

    With a public key (``public_key``, else ``[signing] public_key``), the latest verdict
    counts only when the gate's signed envelope of exactly that verdict verifies with it.
    """
    workspace.require_agent(agent)
    key = configured_public_key(workspace, public_key)
    reasons = [f"the audit log does not verify: {p}" for p in verify_audit(store, [agent])]
    incidents = unresolved(workspace, agent)
    known = {i.id for i in workspace.incidents().all(agent)}
    for entry in store.audit(agent):
        named = entry.detail.get("incident")
        if isinstance(named, str) and named not in known:
            known.add(named)  # once per incident
            reasons.append(f"{named} contained {agent} (audit entry {entry.seq}) but its "
                           f"incident file is missing: restore it from version control")
    for incident in incidents:
        reasons += resolution_gaps(incident)
        if incident.containment is not None and incident.post_incident_review is None:
            reasons.append(f"{incident.id} has no post-incident review scheduled")
    verdict = store.latest_verdict(agent)
    if verdict is None:
        reasons.append(f"no gate verdict for {agent}: run `reinstate gate {agent}`")
        return reasons
    stamp = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
    unsigned = signature_problem(workspace, verdict, key) if key is not None else None
    if key is not None and unsigned is not None:
        reasons.append(f"the latest verdict ({stamp}) is not signed by the configured key "
                       f"{key_id(key)}…: {unsigned}")
    if not verdict:
        failing = [c.name for c in verdict.checks if c.outcome != "pass"]
        reasons.append(f"the latest verdict ({stamp}) is {verdict.outcome}: "
                       f"{', '.join(failing)} did not pass")
    changed = fingerprint(workspace, agent).changed_since(verdict.fingerprint)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                          else "")
        reasons.append(f"the latest verdict ({stamp}) is stale: changed since: {shown}")
    verified = {(v.incident, v.change, v.layer) for v in verdict.verifications if v.verified}
    for incident in incidents:
        for change in incident.control_changes:
            if (incident.id, change.id, change.layer) not in verified:
                reasons.append(f"{incident.id} {change.id} ({change.layer}) is not verified by "
                               f"the latest verdict")
    return reasons


@dataclass
class Restored:
    """What restoration did."""

    agent: str
    incidents: list[str]
    already_full: bool


def restore(workspace: Workspace, agent: str, *, actor: str,
            store: StateStore | None = None) -> Restored:
    """Put ``agent`` back in full operation, or raise :class:`Refused` listing every reason."""
    store = store or open_store(workspace)
    reasons = restore_blockers(workspace, agent, store)
    if reasons:
        raise Refused(f"Can't restore '{agent}'", reasons)
    incidents = unresolved(workspace, agent)
    current = store.mode(agent)
    if (current is None or current.mode == "full") and not incidents:
        return Restored(agent=agent, incidents=[], already_full=True)
    verdict = store.latest_verdict(agent)
    assert verdict is not None  # restore_blockers refuses without one
    store.set_mode(
        ModeRecord(agent=agent, mode="full", since=utc_now(), actor=actor,
                   reason=f"restore after {', '.join(i.id for i in incidents) or 'review'}"),
        detail={"verdict_created_at": verdict.created_at.isoformat(),
                "incidents": [i.id for i in incidents]},
    )
    book = workspace.incidents()
    for incident in incidents:
        with book.change(incident.id, action="restore", actor=actor,
                         detail=f"verdict of {verdict.created_at.isoformat()}") as record:
            record.restored_at = utc_now()
    return Restored(agent=agent, incidents=[i.id for i in incidents], already_full=False)
