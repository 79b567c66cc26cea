"""Agent modes as the runtime asks for them: never ``full`` when the answer is in doubt.

The mode an agent gets is the strictest of the store's mode and the containment of every
incident that is not restored. An incident counts as restored only when the audit log
holds its restore: a ``restored_at`` (or ``closed_at``) written into the incident file by
hand does not lift containment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import AwareDatetime

from evalsuite import Record, ReinstateError
from gates._config import Workspace
from gates._errors import StoreUnavailable
from gates._store.audit import recorded
from gates._store.backends import MODES, AuditEntry, Mode, SQLiteStore, StateStore
from regressions import Incident

# The key under which restore lists the incidents it restored, in its mode entry.
RESTORED = "incidents"


def open_store(workspace: Workspace) -> SQLiteStore:
    """The workspace's state store."""
    return SQLiteStore(workspace.state_path)


@dataclass(frozen=True)
class Standing:
    """An agent's incidents as the audit log vouches for them."""

    incidents: list[Incident]
    """Every incident of the agent; ``restored_at``/``closed_at`` kept only where the log
    holds the restore."""
    forged: dict[str, str] = field(default_factory=dict)
    """Incident files that say restored while the log holds their containment and no
    restore (hand edits, refused as tampering): id → why."""
    unknown: dict[str, str] = field(default_factory=dict)
    """Incidents whose file says restored but which this store never saw (a new or
    replaced store): they count as open until restored through this store. Id → why."""
    unwritten: list[str] = field(default_factory=list)
    """Incidents the log shows restored whose file does not say so yet (a restore was
    stopped between the two writes): restored; the next restore writes the file."""

    @property
    def open(self) -> list[Incident]:
        """Incidents not restored (nor closed) as far as the log knows."""
        return [i for i in self.incidents if i.phase not in ("restored", "closed")]

    @property
    def holding(self) -> list[Incident]:
        """Open incidents that contained the agent: it is not in full operation while
        one of these stands."""
        return [i for i in self.open if i.containment is not None]


def standing(workspace: Workspace, agent: str, store: StateStore | None) -> Standing:
    """The agent's incidents, each restored or closed only as far as the audit log says.

    A missing store vouches for nothing. An unreadable one raises :class:`StoreUnavailable`.
    """
    incidents = workspace.incidents().all(agent)
    log = _log(store, agent)
    contained = {e.detail.get("incident"): e.seq for e in log if e.action == "mode"}
    restored = {i: e.at for e in log if e.action == "mode" and e.detail.get("mode") == "full"
                and isinstance(e.detail.get(RESTORED), list) for i in e.detail[RESTORED]}
    vouched: list[Incident] = []
    forged: dict[str, str] = {}
    unknown: dict[str, str] = {}
    unwritten: list[str] = []
    for incident in incidents:
        if incident.restored_at is None and incident.id in restored:
            # The log holds the restore; the file was not written yet (a restore killed
            # in between): restored, and the next restore writes the file.
            unwritten.append(incident.id)
            vouched.append(incident.model_copy(update={"restored_at": restored[incident.id]}))
            continue
        if incident.restored_at is None or incident.id in restored:
            vouched.append(incident)  # closing follows a restore, and changes no mode
            continue
        stamp = incident.restored_at.isoformat()
        if incident.id in contained:
            forged[incident.id] = (
                f"{incident.id}: its file says restored at {stamp}, but the audit log holds "
                f"its containment (entry {contained[incident.id]}) and no restore: the file "
                f"was edited by hand; undo the edit")
        else:
            unknown[incident.id] = (
                f"{incident.id}: its file says restored at {stamp}, but this state store "
                f"never saw it (a new or replaced store): it counts as open until "
                f"`reinstate restore` records it here")
        vouched.append(incident.model_copy(update={"restored_at": None, "closed_at": None}))
    return Standing(incidents=vouched, forged=forged, unknown=unknown, unwritten=unwritten)


def _log(store: StateStore | None, agent: str) -> list[AuditEntry]:
    if store is None:
        return []
    if isinstance(store, SQLiteStore) and not store.path.exists():
        return []
    return recorded(store, agent, ("mode",))


class ModeReading(Record):
    """An agent's mode as the runtime should act on it."""

    agent: str
    """The agent."""
    mode: Mode
    """The mode to operate in."""
    since: AwareDatetime | None = None
    """When it was set; none for an agent never contained."""
    actor: str | None = None
    """Who set it."""
    reason: str = ""
    """Why."""
    degraded: str | None = None
    """Set when the answer is not the store's own (the store could not be read, or an
    incident it does not show as restored still holds the agent): the stricter mode wins."""


def read_mode(workspace: Workspace, agent: str, store: StateStore | None = None,
              incidents: Standing | None = None) -> ModeReading:
    """The agent's mode: the strictest of the store's and every unrestored containment;
    ``suspended`` with the reason when the store or the incidents cannot be read.

    ``incidents`` is the agent's :func:`standing` when the caller read it already.
    """
    store = store or open_store(workspace)
    try:
        record = store.mode(agent)
    except ReinstateError as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                           reason="state store unreadable: failing closed")
    try:
        held = (incidents or standing(workspace, agent, store)).holding
    except ReinstateError as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                           reason="incident records or audit log unreadable: failing closed")
    held_mode = min((i.containment.mode for i in held if i.containment), key=MODES.index,
                    default=None)
    if held_mode is not None and (record is None
                                  or MODES.index(held_mode) < MODES.index(record.mode)):
        ids = ", ".join(i.id for i in held)
        said = f"says {record.mode}" if record is not None else f"has no mode for {agent}"
        return ModeReading(
            agent=agent, mode=held_mode, reason=f"contained by {ids}",
            since=min(i.containment.contained_at for i in held if i.containment),
            degraded=f"the state store {said}, but {ids} contained it and the audit log "
                     f"holds no restore of it: answering {held_mode}")
    if record is None:
        return ModeReading(agent=agent, mode="full", reason="never contained")
    return ModeReading(agent=agent, mode=record.mode, since=record.since, actor=record.actor,
                       reason=record.reason)


def history_evidence(workspace: Workspace) -> list[str]:
    """What in the workspace shows that its state store had history: containments (each
    wrote the store) and verdict attestations. Empty for a workspace never used."""
    try:
        held = [i.id for i in workspace.incidents().all() if i.containment is not None]
    except ReinstateError:
        held = ["an incident file"]
    evidence = [f"{', '.join(held)} {'was' if len(held) == 1 else 'were'} contained"] if held \
        else []
    attestations = workspace.state_path.parent / "attestations"
    if attestations.is_dir() and any(p.is_file() for p in attestations.rglob("*")):
        evidence.append(f"{workspace.relative(attestations)} holds signed verdicts")
    return evidence


def require_store(workspace: Workspace, *, new_store: bool) -> None:
    """Refuse to start a new state store where the workspace shows it had one.

    A deleted store must not come back empty with its history (containments, verdicts,
    the audit log) silently gone; a CI job that starts from an empty store by design says
    so with ``new_store``.
    """
    if new_store or workspace.state_path.exists():
        return
    evidence = history_evidence(workspace)
    if evidence:
        raise StoreUnavailable(
            f"no state store at {workspace.relative(workspace.state_path)}, but the workspace "
            f"shows it had one ({'; '.join(evidence)}): restore it from a backup, or pass "
            f"--new-store where a CI job starts from an empty store by design")


def agent_mode(agent: str, workspace: Path | str | None = None) -> Mode:
    """For an agent's runtime: the mode to operate in right now.

    Never raises: a missing or broken workspace, store or record answers ``suspended``.
    """
    try:
        found = Workspace.find(Path(workspace) if workspace is not None else None)
        return read_mode(found, agent).mode
    except Exception:  # fail closed: whatever went wrong, the agent does not run in full
        return "suspended"
