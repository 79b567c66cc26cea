"""Agent modes as the runtime asks for them: never ``full`` when the answer is in doubt.

The mode an agent gets is the strictest of the store's mode and the containment of every
incident that is not restored. An incident counts as restored only when the audit log
holds its restore: a ``restored_at`` (or ``closed_at``) written into the incident file by
hand does not lift containment. Nor does a restore written into the store alone: one the
incident file does not record counts only when the latest verdict backs it (passing,
covering the incident, and signed where a public key is configured).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AwareDatetime

from evalsuite import Record, ReinstateError
from gates._config import CONFIG_FILE, Workspace
from gates._errors import StoreUnavailable, UnknownAgent
from gates._store.audit import decision_reader, recorded
from gates._store.backends import (
    MODES,
    AuditEntry,
    Mode,
    ModeRecord,
    SQLiteStore,
    StateStore,
    _SQLStore,
)
from gates._store.mode_facts import ProvenControls, remember_mode_inputs
from gates._store.recent import RecentReadings
from gates._store.shared_reads import sharing
from regressions import Incident, resolution_gaps

if TYPE_CHECKING:
    from gates._store.audit import LatestVerdict
    from gates._store.postgres import PostgresStore

# The key under which restore lists the incidents it restored, in its mode entry.
RESTORED = "incidents"

# The reasons of a ``suspended`` that nobody set: something could not be read. A runtime
# (the OpenFeature provider) reports these as errors, not as a mode.
STORE_UNREADABLE = "state store unreadable: failing closed"
RECORDS_UNREADABLE = "incident records or audit log unreadable: failing closed"
WORKSPACE_UNREADABLE = "workspace unreadable: failing closed"
UNKNOWN_AGENT = "no such agent in the workspace: failing closed"
FAILED_CLOSED = frozenset({STORE_UNREADABLE, RECORDS_UNREADABLE, WORKSPACE_UNREADABLE,
                           UNKNOWN_AGENT})


def open_store(workspace: Workspace) -> SQLiteStore | PostgresStore:
    """The workspace's state store: the PostgreSQL server of ``[state] url`` when set, else
    the SQLite file of ``[paths] state``.

    Raises:
        StoreUnavailable: a PostgreSQL URL is set but psycopg is not installed.
    """
    url = workspace.config.state.url
    if url is None:
        return SQLiteStore(workspace.state_path)
    where = (f"{CONFIG_FILE} $.state.url" if (workspace.root / CONFIG_FILE).is_file()
             else "pyproject.toml $.tool.reinstate.state.url")
    try:  # only a workspace on PostgreSQL pays for importing its driver
        from gates._store.postgres import PostgresStore
    except ImportError:
        raise StoreUnavailable(f"{where}: a PostgreSQL state store needs psycopg: install "
                               f"reinstate[postgres]") from None
    return PostgresStore(url, where)


def store_exists(store: StateStore) -> bool:
    """Whether ``store`` was ever written (a file or tables made); a store of another kind
    (in memory) always was."""
    return store.exists() if isinstance(store, _SQLStore) else True


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
    stopped between the two writes): restored; the next restore writes the file. Only
    where the latest verdict backs that restore (see ``unbacked``)."""
    unbacked: dict[str, str] = field(default_factory=dict)
    """Incidents the log shows restored, whose file does not say so, and for which the
    latest verdict does not back a restore (it did not pass, does not cover the incident,
    or is not signed with the configured key): a store edit, not an interrupted restore.
    They count as open. Id → why."""
    logged: AuditEntry | None = None
    """The agent's last mode entry (None: the log holds none): the modes row must say the
    mode it set, or the row was changed behind the log."""
    missing: dict[str, AuditEntry] = field(default_factory=dict)
    """Incidents the log shows containing the agent, with no restore of them after, that
    no incident file of the agent records (deleted, or moved to another agent by hand):
    they hold the agent, as restore refuses while their file is missing. Id → its last
    containment entry."""
    logged_containment: dict[str, datetime] = field(default_factory=dict)
    """When the audit log's last containment entry of each incident was written: a
    containment is no earlier than that, whatever time its file was given by hand."""

    def last_contained_at(self) -> datetime | None:
        """When the agent was last contained, by its incident files and the audit log (an
        incident whose file was deleted still counts); None when it never was."""
        files = [i.containment.contained_at for i in self.incidents if i.containment]
        return max([*files, *self.logged_containment.values()], default=None)

    def contained_at(self, incident: Incident) -> datetime | None:
        """When ``incident`` was contained: the later of its file's time and its last
        containment entry in the audit log; None when neither records a containment."""
        times = [t for t in (incident.containment.contained_at if incident.containment
                             else None, self.logged_containment.get(incident.id))
                 if t is not None]
        return max(times, default=None)

    @property
    def open(self) -> list[Incident]:
        """Incidents not restored (nor closed) as far as the log knows."""
        return [i for i in self.incidents if i.phase not in ("restored", "closed")]

    @property
    def holding(self) -> list[Incident]:
        """Open incidents that contained the agent: it is not in full operation while
        one of these stands."""
        return [i for i in self.open if i.containment is not None]


def standing(workspace: Workspace, agent: str, store: StateStore | None, *,
             public_key: Path | None = None,
             latest: LatestVerdict | None = None) -> Standing:
    """The agent's incidents, each restored or closed only as far as the audit log says.

    A restore the log holds but the incident file does not record counts only when the
    latest verdict backs it (:func:`_restore_backing`); ``public_key`` (else ``[signing]
    public_key``) is the key that verdict must then be signed with, and ``latest`` reads it
    (default: :func:`decision_reader` of ``store``). A missing store vouches for nothing.
    An unreadable one raises :class:`StoreUnavailable`.
    """
    incidents = workspace.incidents().all(agent)
    log = [e for e in _log(store, agent) if e.action == "mode"]
    contained = {e.detail.get("incident"): e.seq for e in log}
    restores = {i: e for e in log if e.detail.get("mode") == "full"
                and isinstance(e.detail.get(RESTORED), list) for i in e.detail[RESTORED]}
    # A restore is of the incident only when it follows that incident's containment: an id
    # opened again after its file was deleted (ids are the next free number) must not
    # inherit the restore of the incident that held it before.
    restored = {incident.id: restores[incident.id] for incident in incidents
                if incident.containment is not None and incident.id in restores
                and restores[incident.id].seq > contained.get(incident.id, 0)}
    vouched: list[Incident] = []
    forged: dict[str, str] = {}
    unknown: dict[str, str] = {}
    unwritten: list[str] = []
    unbacked: dict[str, str] = {}
    for incident in incidents:
        if incident.restored_at is None and incident.id in restored:
            entry = restored[incident.id]
            assert store is not None  # a log was read from it
            why = _restore_backing(workspace, agent, store, incident, public_key, latest)
            if why is not None:  # written into the store, not by a restore
                unbacked[incident.id] = (
                    f"{incident.id}: the audit log holds a restore of it (entry {entry.seq}) "
                    f"that its file does not record, and {why}; it counts as open until "
                    f"`reinstate restore` restores it")
                vouched.append(incident)
                continue
            # The log holds the restore; the file was not written yet (a restore killed
            # in between): restored, and the next restore writes the file.
            unwritten.append(incident.id)
            vouched.append(incident.model_copy(update={"restored_at": entry.at}))
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
    # A containment whose incident file is gone (or names another agent now) still holds:
    # deleting the file must not take the incident out of the reading.
    files = {i.id for i in incidents}
    missing = {named: e for e in log
               if isinstance(named := e.detail.get("incident"), str) and named not in files
               and not (named in restores and restores[named].seq > e.seq)}
    logged_containment = {named: e.at for e in log
                          if isinstance(named := e.detail.get("incident"), str)}
    return Standing(incidents=vouched, forged=forged, unknown=unknown, unwritten=unwritten,
                    unbacked=unbacked, logged=log[-1] if log else None, missing=missing,
                    logged_containment=logged_containment)


def logged_mode(entry: AuditEntry) -> Mode:
    """The mode a mode entry set; one that names no mode reads as suspended."""
    mode = entry.detail.get("mode")
    return mode if mode in MODES else "suspended"


def _restore_backing(workspace: Workspace, agent: str, store: StateStore, incident: Incident,
                     public_key: Path | None, latest: LatestVerdict | None) -> str | None:
    """Why the latest verdict does not back a restore of ``incident`` that the log holds
    and its file does not record; None when it does: it is the agent's, it passed, it
    covers the incident (:mod:`gates._verdict.coverage`), and with a public key
    configured it is signed with that key; and the incident meets restore's own conditions
    (its resolution complete, a post-incident review scheduled). A restore always restores
    on such a verdict and file; whoever can only write the store cannot make one, where
    verdicts are signed."""
    # Imported here: only this rare case (a restore stopped between its two writes, or a
    # store edit) reads a verdict or a key while reading a mode.
    from gates._store.verdict_signature import configured_public_key, key_id, signature_problem
    from gates._verdict.coverage import uncovered

    verdict = (latest or decision_reader(store))(agent)
    if verdict is None:
        return f"the store holds no verdict of {agent} to back it"
    stamp = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
    if verdict.agent != agent:
        return f"the latest verdict ({stamp}) is a verdict of {verdict.agent}, not of {agent}"
    if not verdict:
        return f"the latest verdict ({stamp}) is {verdict.outcome}, not a pass"
    gap = uncovered(verdict, incident, "the latest verdict")
    if gap is not None:
        return f"no verdict backs it: {gap}"
    key = configured_public_key(workspace, public_key)
    problem = signature_problem(workspace, verdict, key) if key is not None else None
    if key is not None and problem is not None:
        return (f"the latest verdict ({stamp}) is not signed by the configured key "
                f"{key_id(key)}…: {problem}")
    # What restore asks of the incident itself, beside the verdict: a restore stopped
    # between its writes checked these on this very file, so only a restore written into
    # the store without restore's checks (a store edit) misses one.
    unmet = resolution_gaps(incident)
    if incident.post_incident_review is None:
        unmet.append(f"{incident.id} has no post-incident review scheduled")
    if unmet:
        return f"restore would refuse it: {'; '.join(unmet)}"
    return None


def _log(store: StateStore | None, agent: str) -> list[AuditEntry]:
    if store is None:
        return []
    if not store_exists(store):
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

    @property
    def failed_closed(self) -> bool:
        """Whether this is a ``suspended`` nobody set: the workspace, the agent, the store or
        the records could not be read."""
        return self.reason in FAILED_CLOSED

    @property
    def unknown_agent(self) -> bool:
        """Whether this is a ``suspended`` for an agent the workspace does not define."""
        return self.reason == UNKNOWN_AGENT


def read_mode(workspace: Workspace, agent: str, store: StateStore | None = None,
              incidents: Standing | None = None) -> ModeReading:
    """The agent's mode: the strictest of the store's and every unrestored containment;
    ``suspended`` with the reason when the store or the incidents cannot be read.

    ``incidents`` is the agent's :func:`standing` when the caller read it already.
    """
    with sharing():  # the mode row and the log, over one connection on a server
        return _read_mode(workspace, agent, store, incidents)


def _read_mode(workspace: Workspace, agent: str, store: StateStore | None,
               incidents: Standing | None) -> ModeReading:
    store = store or open_store(workspace)
    try:
        record = store.mode(agent)
    except ReinstateError as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                           reason=STORE_UNREADABLE)
    try:
        vouched = incidents or standing(workspace, agent, store)
        for _ in range(2):
            if _row_as_logged(record, vouched):
                break
            # A mode set between the two reads (each write sets the row and its entry in
            # one transaction): read the log again, and the row after it.
            vouched = standing(workspace, agent, store)
            record = store.mode(agent)
    except ReinstateError as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                           reason=RECORDS_UNREADABLE)
    held = vouched.holding
    held_mode = min((i.containment.mode for i in held if i.containment), key=MODES.index,
                    default=None)
    if held_mode is not None and (record is None
                                  or MODES.index(held_mode) < MODES.index(record.mode)):
        ids = ", ".join(i.id for i in held)
        said = f"says {record.mode}" if record is not None else f"has no mode for {agent}"
        reading = ModeReading(
            agent=agent, mode=held_mode, reason=f"contained by {ids}",
            since=min(i.containment.contained_at for i in held if i.containment),
            degraded=f"the state store {said}, but {ids} contained it and the audit log "
                     f"holds no restore of it"
                     + ("".join(f"; {vouched.unbacked[i.id]}" for i in held
                                if i.id in vouched.unbacked))
                     + f": answering {held_mode}")
    elif record is None:
        reading = ModeReading(agent=agent, mode="full", reason="never contained")
    else:
        reading = ModeReading(agent=agent, mode=record.mode, since=record.since,
                              actor=record.actor, reason=record.reason)
    return _as_logged(reading, record, vouched)


def _row_as_logged(record: ModeRecord | None, vouched: Standing) -> bool:
    """Whether the modes row says what the agent's last mode entry set."""
    last = vouched.logged
    return (record.mode if record is not None else None) == (
        logged_mode(last) if last is not None else None)


def _as_logged(reading: ModeReading, record: ModeRecord | None,
               vouched: Standing) -> ModeReading:
    """``reading``, or a stricter one where the audit log holds a stricter mode than the
    modes row shows: a containment whose incident file is gone, or the row changed behind
    the log's last mode entry (``audit verify`` names both; a runtime must not run in full
    on them meanwhile)."""
    agent, stricter = reading.agent, MODES.index(reading.mode)
    found: list[tuple[AuditEntry, str]] = [
        (entry, f"{named} contained {agent} (audit entry {entry.seq}) and the log holds no "
                f"restore of it, but its incident file is missing")
        for named, entry in vouched.missing.items()]
    last = vouched.logged
    if last is not None and not _row_as_logged(record, vouched):
        now = record.mode if record is not None else "unset"
        found.append((last, f"the state store says {now}, but the last mode entry of "
                            f"{agent} (entry {last.seq}) set {logged_mode(last)}: the modes "
                            f"table was changed behind the audit log"))
    found = [(e, why) for e, why in found if MODES.index(logged_mode(e)) < stricter]
    if not found:
        return reading
    entry = min(found, key=lambda f: (MODES.index(logged_mode(f[0])), f[0].seq))[0]
    mode = logged_mode(entry)
    return ModeReading(agent=agent, mode=mode, since=entry.at, actor=entry.actor,
                       reason=entry.reason,
                       degraded="; ".join([*([reading.degraded] if reading.degraded else []),
                                           *(why for _, why in found)])
                                + f": answering {mode}")


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
    store = open_store(workspace)
    if new_store or store_exists(store):
        return
    evidence = history_evidence(workspace)
    if evidence:
        where, moved = ((workspace.relative(store.path), "") if isinstance(store, SQLiteStore)
                        else (store.display, " (or bring it there with `reinstate store "
                                             "migrate`)"))
        raise StoreUnavailable(
            f"no state store at {where}, but the workspace shows it had one "
            f"({'; '.join(evidence)}): restore it from a backup{moved}, or pass "
            f"--new-store where a CI job starts from an empty store by design")


# (workspace as given, working directory, agent) → (when read, the reading): what
# ``cache_s`` answers from. Only this process's memory; every entry expires by age.
_READINGS: RecentReadings[ModeReading] = RecentReadings()


def mode_reading(agent: str, workspace: Path | str | None = None, *,
                 cache_s: float = 0.0) -> ModeReading:
    """For an agent's runtime: the mode to operate in, with when, who and why.

    Never raises: a missing or broken workspace, an agent the workspace does not define, an
    unreadable store or record answers ``suspended`` (:attr:`ModeReading.failed_closed`).

    Args:
        agent: The agent's name, as in ``agents/<agent>/``.
        workspace: The workspace folder (default: found from the working directory, or
            ``REINSTATE_WORKSPACE``).
        cache_s: Answer from this process's memory when the last reading is younger than
            this many seconds; 0 reads the store every time. A reading older than that is
            never served: the store is read again, and an unreadable store then answers
            ``suspended`` whatever the cached answer was.
    """
    return _READINGS.read(agent, workspace, cache_s, lambda: _read_now(agent, workspace))


def _read_now(agent: str, workspace: Path | str | None) -> ModeReading:
    # Fail closed: whatever went wrong, the agent does not run in full.
    try:
        # An invalid [notify] changes no mode: it is set aside, the answer stands.
        found = Workspace.find(Path(workspace) if workspace is not None else None,
                               containing=True)
        found.require_agent(agent)  # a misspelt agent never reads as "never contained"
    except UnknownAgent as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                           reason=UNKNOWN_AGENT)
    except Exception as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc) or repr(exc),
                           reason=WORKSPACE_UNREADABLE)
    reading = held_to_proof(found, agent, safe_read_mode(found, agent))
    remember_mode_inputs(found)  # so the next read of these files is a light one
    return reading


def held_to_proof(workspace: Workspace, agent: str, reading: ModeReading,
                  store: StateStore | None = None, latest: LatestVerdict | None = None,
                  held: Standing | None = None) -> ModeReading:
    """``reading``, or ``review`` where it says ``full`` on controls the runtime guard holds
    unproven (rule ``controls.unproven``): their files as they are now are not those a
    passing gate of the agent verified since its last containment. A runtime or deploy job
    that reads the mode must not run the agent in full where the guard would send every
    call to a person; one answer (:func:`gates._store.control_proof.controls_unproven`)
    decides both. Whatever cannot be read to work it out proves nothing: ``review`` too.

    Controls found proven are remembered (``mode-inputs``), so the light read answers
    ``full`` for exactly those files, that verdict and that containment again. ``latest``
    reads the latest verdict (default: :func:`decision_reader` of the store); ``held`` is
    the agent's :func:`standing` when the caller read it already.
    """
    if reading.mode != "full":
        return reading
    # Imported here: a mode that is not full needs no verdict, fingerprint or control.
    from gates._store.control_proof import controls_unproven, today_controls

    try:
        store = store or open_store(workspace)
        verdict_sha256 = store.latest_verdict_sha256(agent)  # before: a later one re-keys
        latest = latest or decision_reader(store)
        held = held or standing(workspace, agent, store, latest=latest)
        since = held.last_contained_at()
        loaded, raw = today_controls(workspace, agent)
        problem = controls_unproven(workspace, agent, loaded, store, since, latest)
    except Exception as exc:  # nothing read is nothing proven
        problem = (f"whether {agent}'s controls are ones a passing gate verified cannot be "
                   f"read ({str(exc) or repr(exc)})")
    else:
        if not problem:
            remember_mode_inputs(workspace, ProvenControls(agent, raw, verdict_sha256, since))
            return reading
    return ModeReading(
        agent=agent, mode="review", since=reading.since, actor=reading.actor,
        reason=f"controls unproven: {problem}",
        degraded=f"the state store says full, but {problem}: the runtime guard sends every "
                 f"call and output to a person (controls.unproven) until `reinstate gate "
                 f"{agent}` passes on today's controls: answering review")


def safe_read_mode(workspace: Workspace, agent: str) -> ModeReading:
    """:func:`read_mode` that never raises: an error it does not answer for itself (a
    file system gone, a driver's own exception) answers ``suspended`` too."""
    try:
        return read_mode(workspace, agent)
    except Exception as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc) or repr(exc),
                           reason=STORE_UNREADABLE)


def watch_mode(workspace: Workspace, agent: str, interval_s: float,
               stop: threading.Event) -> Iterator[ModeReading]:
    """The agent's mode now, then each change of it, read every ``interval_s`` seconds
    until ``stop`` is set. Polls through the store's own interface, whatever the store."""
    last: tuple[object, ...] | None = None
    while True:
        reading = held_to_proof(workspace, agent, safe_read_mode(workspace, agent))
        # Not the degraded text: a store failing the same way twice is not a change.
        seen = (reading.mode, reading.since, reading.actor, reading.reason)
        if seen != last:
            last = seen
            yield reading
        if stop.wait(interval_s):
            return
