"""Restoration: back to full operation only on a current passing verdict, every change verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite import ReinstateError
from gates._config import Workspace
from gates._errors import Refused
from gates._store.access import RESTORED, Standing, open_store, standing
from gates._store.audit import decision_reader, one_decision, recorded, verify_audit
from gates._store.backends import ModeRecord, StateStore, verdict_digest
from gates._store.shared_reads import sharing
from gates._store.verdict_signature import configured_public_key, key_id, signature_problem
from gates._verdict.coverage import coverage_gap
from gates._verdict.fingerprint import fingerprint
from regressions import (
    IncidentBook,
    Notification,
    resolution_gaps,
    review_too_early,
    utc_now,
)

# Annotations only: deciding reads the stored verdict without its whole model (see
# gates._verdict.stored); restoring and the gate build it.
if TYPE_CHECKING:
    from gates._store.audit import LatestVerdict
    from gates._verdict.stored import DecidedVerdict
    from gates._verdict.verdict import Verdict


def restore_blockers(workspace: Workspace, agent: str, store: StateStore, *,
                     public_key: Path | None = None,
                     held: Standing | None = None,
                     latest: LatestVerdict | None = None) -> list[str]:
    """Every unmet condition for restoring ``agent``, as sentences; empty means it may restore.

    With a public key (``public_key``, else ``[signing] public_key``), the latest verdict
    counts only when the gate's signed envelope of exactly that verdict verifies with it.
    ``held`` is the agent's :func:`standing` when the caller read it already; ``latest``
    reads an agent's latest verdict (default: :func:`decision_reader` of ``store``).
    """
    workspace.require_agent(agent)
    with one_decision(), sharing():
        return _blockers(workspace, agent, store, public_key, held, latest)


def _blockers(workspace: Workspace, agent: str, store: StateStore, public_key: Path | None,
              held: Standing | None, latest: LatestVerdict | None) -> list[str]:
    key = configured_public_key(workspace, public_key)
    latest = latest or decision_reader(store)
    reasons = [f"the audit log does not verify: {p}"
               for p in verify_audit(store, [agent], incremental=True, latest=latest)]
    held = held or standing(workspace, agent, store, public_key=public_key, latest=latest)
    reasons += [f"tampering: {forged}" for forged in held.forged.values()]
    reasons += list(held.unbacked.values())
    incidents = held.open
    known = {i.id for i in held.incidents}
    for entry in recorded(store, agent, ("mode",)):  # containments name their incident
        named = entry.detail.get("incident")
        if isinstance(named, str) and named not in known:
            known.add(named)  # once per incident
            reasons.append(f"{named} contained {agent} (audit entry {entry.seq}) but its "
                           f"incident file is missing: restore it from version control")
    if (unloaded := controls_gap(workspace, agent)) is not None:
        reasons.append(unloaded)
    for incident in incidents:
        reasons += resolution_gaps(incident)
        if incident.containment is not None and incident.post_incident_review is None:
            reasons.append(f"{incident.id} has no post-incident review scheduled")
        elif incident.containment is not None and (
                detected := review_too_early(incident)) is not None:
            reasons.append(f"{incident.id}'s post-incident review "
                           f"({incident.post_incident_review}) is dated before the incident "
                           f"was detected ({detected}): schedule it with `reinstate incident "
                           f"review {incident.id} --on DATE`")
    verdict = latest(agent)
    if verdict is None:
        reasons.append(f"no gate verdict for {agent}: run `reinstate gate {agent}`")
        return reasons
    stamp = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
    unsigned = signature_problem(workspace, verdict, key) if key is not None else None
    if key is not None and unsigned is not None:
        reasons.append(f"the latest verdict ({stamp}) is not signed by the configured key "
                       f"{key_id(key)}…: {unsigned}")
    reasons += verdict_gaps(workspace, agent, verdict, "the latest verdict")
    verified = {(v.incident, v.change, v.layer) for v in verdict.verifications if v.verified}
    for incident in incidents:
        # Changes are recorded after containment and verified by a later gate: a verdict
        # made before this incident was contained verified another incident of its id (one
        # whose file was deleted and whose id was opened again), never these changes. The
        # audit log dates the containment too: a file's time moved back by hand is not it.
        contained = held.contained_at(incident)
        if contained is not None and verdict.created_at < contained:
            reasons.append(f"{incident.id} was contained after the latest verdict ({stamp}) "
                           f"was made, so that verdict verified none of its changes: run "
                           f"`reinstate gate {agent}`")
            continue
        for change in incident.control_changes:
            if (incident.id, change.id, change.layer) not in verified:
                reasons.append(f"{incident.id} {change.id} ({change.layer}) is not verified by "
                               f"the latest verdict")
    # Every incident that counts as restored or closed must be covered by the verdict that
    # clears too, as `check --verdict` requires: with a public key that verdict is signed,
    # so what the store (or a file) says of an incident never clears it on its own.
    still_open = {i.id for i in incidents}
    reasons += [gap for incident in held.incidents if incident.id not in still_open
                if (gap := coverage_gap(verdict, incident, "the latest verdict")) is not None]
    return reasons


def restore_needs(workspace: Workspace, verdict: Verdict) -> list[str] | None:
    """What ``restore`` still needs after the gate computed ``verdict``: its own
    :func:`restore_blockers`, read from the workspace's store; None when the verdict did not
    pass (then it restores nothing anyway).

    A store that cannot be read is itself a need (fail closed): a pass that restore cannot
    confirm promises nothing.
    """
    if not verdict:
        return None
    try:
        return restore_blockers(workspace, verdict.agent, open_store(workspace))
    except ReinstateError as exc:
        return [f"its conditions could not be read: {exc}"]


def controls_gap(workspace: Workspace, agent: str) -> str | None:
    """Why ``agent``'s controls do not load today, as a reason; None when they do. A verdict
    on controls that no longer load vouches for nothing in force today (the runtime guard,
    loading them, denies everything), however current its fingerprint: a predicate module
    may import what this machine lacks."""
    try:
        workspace.controls(agent)
    except ReinstateError as exc:
        return f"the controls of {agent} no longer load with today's configuration: {exc}"
    return None


def verdict_gaps(workspace: Workspace, agent: str, verdict: DecidedVerdict,
                 which: str) -> list[str]:
    """Why ``verdict`` clears nothing today: it did not pass, or what it was computed on
    changed since (named file by file). ``which`` names it in the sentences."""
    stamp = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
    gaps = []
    if verdict.agent != agent:  # a store edited behind the log: it vouches for another
        gaps.append(f"{which} ({stamp}) is a verdict of {verdict.agent}, not of {agent}")
    if not verdict:
        failing = [c.name for c in verdict.checks if c.outcome != "pass"]
        gaps.append(f"{which} ({stamp}) is {verdict.outcome}: {', '.join(failing)} did not "
                    f"pass")
    changed = fingerprint(workspace, agent).changed_since(verdict.fingerprint)
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        gaps.append(f"{which} ({stamp}) is stale: changed since: {', '.join(changed[:5])}{more}")
    return gaps


@dataclass
class Restored:
    """What restoration did."""

    agent: str
    incidents: list[str]
    already_full: bool
    notifications: list[Notification] = field(default_factory=list)
    """Each delivery telling the incidents' audiences, as recorded in the incidents."""
    warnings: list[str] = field(default_factory=list)
    """Deliveries that did not go."""


def restore(workspace: Workspace, agent: str, *, actor: str,
            store: StateStore | None = None) -> Restored:
    """Put ``agent`` back in full operation, or raise :class:`Refused` listing every reason.

    Once the mode is back to full, the audiences told at each incident's containment are
    told of the restore (``[notify]``); a failed delivery is a warning, never an error.
    """
    workspace.require_agent(agent)  # a misspelt name touches nothing
    workspace.require_notify()  # clearing takes the configuration whole, [notify] included
    store = store or open_store(workspace)
    book = workspace.incidents()
    # The agent's incidents are held against every other writer from before the decision
    # until it is written: a finding or a control change recorded while restore checks
    # would be marked restored with nothing verifying it. Those whose file says restored
    # or closed take neither (nor does restore write them), so they are left unlocked. A
    # new incident holds the agent only once contained, and a containment changes the
    # mode first, which the compare and set below catches.
    with book.holding(i.id for i in book.all(agent) if i.phase not in ("restored", "closed")):
        ids, verdict = _restore(workspace, agent, actor, store, book)
    if verdict is None:
        return Restored(agent=agent, incidents=ids, already_full=not ids)
    # Imported here: `check` shares this module and sends nothing, so it need not load
    # the notification senders.
    from gates._response.notify import notify_restore

    told = notify_restore(workspace, ids, actor=actor, store=store)
    return Restored(agent=agent, incidents=ids, already_full=False,
                    notifications=told.notifications, warnings=told.warnings)


def _restore(workspace: Workspace, agent: str, actor: str, store: StateStore,
             book: IncidentBook) -> tuple[list[str], DecidedVerdict | None]:
    """Decide and write a restore under the incidents' locks: the incidents it restored
    and the verdict it restored on (None: the agent was already in full, and ``ids`` are
    the incidents whose interrupted restore it finished writing)."""
    # Read before deciding: the mode is set back to full only if nobody changed it since
    # (compare and set), so a containment that comes in meanwhile is never overwritten.
    current = store.mode(agent)
    # The verdict the decision is made on is the one the restore entry names, even when a
    # gate stores another before the mode is written.
    latest = decision_reader(store)
    with one_decision(), sharing():
        held = standing(workspace, agent, store)
        reasons = restore_blockers(workspace, agent, store, held=held, latest=latest)
    if reasons:
        raise Refused(f"Can't restore '{agent}'", reasons)
    incidents = held.open
    for unwritten in held.unwritten:  # finish a restore that stopped after its mode write
        with book.change(unwritten, action="restore", actor=actor,
                         detail="restored in the audit log; recording it here") as record:
            record.restored_at = utc_now()
    if (current is None or current.mode == "full") and not incidents:
        return held.unwritten, None
    verdict = latest(agent)
    assert verdict is not None  # restore_blockers refuses without one
    store.replace_mode(
        ModeRecord(agent=agent, mode="full", since=utc_now(), actor=actor,
                   reason=f"restore after {', '.join(i.id for i in incidents) or 'review'}"),
        expected=current,
        detail={"verdict_created_at": verdict.created_at.isoformat(),
                "verdict": verdict_digest(verdict), RESTORED: [i.id for i in incidents]},
    )
    for incident in incidents:
        if book.load(incident.id).restored_at is not None:
            continue  # restored before, through another store: the log now vouches for it
        with book.change(incident.id, action="restore", actor=actor,
                         detail=f"verdict of {verdict.created_at.isoformat()}") as record:
            record.restored_at = utc_now()
    return [i.id for i in incidents], verdict
