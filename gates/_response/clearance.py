"""Clearance for deploy jobs: may the agent run in full operation at today's fingerprint?

It only reads state (the incident files, the latest verdict, the mode) and loads the
controls (importing the predicate modules the workspace allows), and runs no agent, so a
deploy job can ask it in a second. The conditions are restore's own
(:func:`restore_blockers`), so ``check`` and ``restore`` never disagree; on top of them the
agent must actually be in full operation.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AwareDatetime, Field

from evalsuite import InvalidInput, Record
from gates._config import Workspace
from gates._response.restore import controls_gap, restore_blockers, verdict_gaps
from gates._store.access import held_to_proof, open_store, read_mode, standing
from gates._store.audit import decision_reader, one_decision
from gates._store.backends import Mode, StateStore
from gates._store.shared_reads import sharing
from gates._store.verdict_signature import (
    SignatureInvalid,
    configured_public_key,
    key_id,
    signature_line,
)
from gates._verdict.coverage import coverage_gap
from gates._verdict.outcome import Outcome


class Clearance(Record):
    """Whether an agent is cleared for full operation, and every reason it is not."""

    agent: str
    """The agent asked about."""
    cleared: bool
    """True only when nothing blocks restoration and the agent is in full operation."""
    mode: Mode
    """The mode the agent operates in: the strictest of the store's and every unrestored
    containment; ``full`` for an agent never contained."""
    blockers: list[str]
    """Restore's unmet conditions: open incidents, controls that no longer load, a
    missing, failing or stale verdict."""
    reasons: list[str]
    """Everything that keeps the agent from being cleared: the blockers, then the mode."""
    notes: list[str] = Field(default_factory=list)
    """What a reader should know that does not block: incidents restored through another
    store, which this one never saw."""
    verdict_outcome: Outcome | None = None
    """The latest verdict's outcome; none when the agent was never gated."""
    verdict_created_at: AwareDatetime | None = None
    """When the latest verdict was computed."""
    signed: bool = False
    """True only when the latest verdict's envelope verified against the public key."""
    signature: str = ""
    """The latest verdict's signature in a line: signed by which key, unsigned (no public
    key configured), or why it does not verify."""

    @property
    def restorable(self) -> bool:
        """Whether ``reinstate restore`` would be allowed now."""
        return not self.blockers

    def __bool__(self) -> bool:
        return self.cleared


def check(workspace: Workspace, agent: str, store: StateStore | None = None, *,
          public_key: Path | None = None) -> Clearance:
    """Whether ``agent`` is cleared for full operation; reads state, runs nothing.

    An unreadable state store raises :class:`StoreUnavailable` (exit 3): no answer is
    ever a clearance. With a public key (``public_key``, else ``[signing] public_key``)
    the latest verdict must be signed with it.
    """
    workspace.require_agent(agent)  # a misspelt name touches nothing
    workspace.require_notify()  # a clearance takes the configuration whole
    store = store or open_store(workspace)
    with one_decision(), sharing():
        return _check(workspace, agent, store, public_key)


def _check(workspace: Workspace, agent: str, store: StateStore,
           public_key: Path | None) -> Clearance:
    latest = decision_reader(store)  # the verdict is read once, for restore's and check's own
    # Read once, for all three questions.
    held = standing(workspace, agent, store, public_key=public_key, latest=latest)
    blockers = restore_blockers(workspace, agent, store, public_key=public_key, held=held,
                                latest=latest)
    stored = read_mode(workspace, agent, store, held)
    # As `reinstate mode` answers: full on controls no passing gate verified reads review.
    reading = held_to_proof(workspace, agent, stored, store, latest, held)
    reasons = list(blockers)
    notes = list(held.unknown.values())
    # Incidents a new store (a CI job's) never saw hold the agent at run time, but a deploy
    # is cleared when the verdict meets their restore conditions (the blockers above); an
    # incident this store saw contained stands until it is restored here.
    new_store = (store.mode(agent) is None
                 and {i.id for i in held.holding} <= set(held.unknown))
    if reading is not stored:
        reasons.append(f"`reinstate mode {agent}` reads review: "
                       f"{reading.reason.removeprefix('controls unproven: ')}: run "
                       f"`reinstate gate {agent}` on today's controls")
    elif reading.mode != "full" and not new_store:
        then = reading.since.strftime("%Y-%m-%d %H:%M UTC") if reading.since else "unknown"
        reasons.append(f"{agent} is in {reading.mode} mode (since {then}, by "
                       f"{reading.actor or 'containment'}: {reading.reason})"
                       + ("" if blockers else f": run `reinstate restore {agent}`"))
    verdict = latest(agent)
    key = configured_public_key(workspace, public_key)
    signed, signature = signature_line(workspace, verdict, key)
    return Clearance(
        agent=agent, cleared=not reasons, mode=reading.mode, blockers=blockers,
        reasons=reasons, notes=notes,
        verdict_outcome=verdict.outcome if verdict is not None else None,
        verdict_created_at=verdict.created_at if verdict is not None else None,
        signed=signed, signature=signature,
    )


class AttestedClearance(Record):
    """Whether a signed verdict file clears an agent for full operation, without the store."""

    agent: str
    """The agent asked about."""
    cleared: bool
    """True only when the signature verifies, the verdict is this agent's, it passed, it
    was computed on today's files, the controls load, and no incident in the workspace
    awaits restoration."""
    reasons: list[str]
    """Everything that keeps the agent from being cleared."""
    envelope: str
    """The verdict file checked (a DSSE envelope)."""
    keyid: str
    """The id of the public key it was checked against."""
    signed: bool
    """Whether the envelope's signature verified against that key."""
    verdict_outcome: Outcome | None = None
    """The signed verdict's outcome; none when the signature did not verify."""
    verdict_created_at: AwareDatetime | None = None
    """When the signed verdict was computed."""
    verdict_sha256: str | None = None
    """The signed verdict's digest, as the gate's audit entry names it."""

    def __bool__(self) -> bool:
        return self.cleared


def check_attested(workspace: Workspace, agent: str, envelope: Path,
                   public_key: Path | None = None) -> AttestedClearance:
    """Whether the signed verdict in ``envelope`` clears ``agent``; the state store is not read.

    For a deploy job that has the workspace's files and the gate job's
    ``--attestation`` file but not its store. The key is ``public_key``, else
    ``[signing] public_key``; there must be one, since an unsigned file proves nothing.

    Raises:
        InvalidInput: No public key, a bad key, or a file that is not an envelope (exit 2).
    """
    # The signed file's verdict is read whole: it has no audit entry to vouch for its text.
    from gates._store.attestation import read_envelope, verify_attestation

    workspace.require_agent(agent)
    key = configured_public_key(workspace, public_key)
    if key is None:
        raise InvalidInput(envelope, "", "expected a public key to check it against "
                                         "(--public-key FILE, or [signing] public_key): an "
                                         "unsigned verdict file proves nothing")
    shown = workspace.relative(envelope)
    read = read_envelope(envelope)
    try:
        attestation = verify_attestation(read, key)
    except SignatureInvalid as exc:
        return AttestedClearance(
            agent=agent, cleared=False, envelope=shown, keyid=key.keyid, signed=False,
            reasons=[f"{shown} is not signed by the key {key_id(key)}…: {exc}"])
    verdict = attestation.verdict
    stamp = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
    reasons = []
    if attestation.agent != agent:
        reasons.append(f"the signed verdict ({stamp}) is for {attestation.agent}, not {agent}")
    else:
        if (unloaded := controls_gap(workspace, agent)) is not None:
            reasons.append(unloaded)  # as restore refuses: the deploy runs these controls
        reasons += verdict_gaps(workspace, agent, verdict, "the signed verdict")
        # The store's mode is not here to read; the incident files (reviewed in git) are,
        # and the signed verdict must cover every one of them that says restored or closed
        # (gates._verdict.coverage): a verdict from before an incident was recorded proves
        # nothing about it, whatever phase its file claims.
        for incident in workspace.incidents().all(agent):
            if incident.phase not in ("restored", "closed"):
                reasons.append(f"{incident.id} is {incident.phase}, not restored: the agent "
                               f"stays out of full operation until `reinstate restore "
                               f"{agent}` succeeds")
            elif (gap := coverage_gap(verdict, incident, "the signed verdict")) is not None:
                reasons.append(gap)
    return AttestedClearance(
        agent=agent, cleared=not reasons, reasons=reasons, envelope=shown, keyid=key.keyid,
        signed=True, verdict_outcome=verdict.outcome, verdict_created_at=verdict.created_at,
        verdict_sha256=attestation.verdict_sha256,
    )
