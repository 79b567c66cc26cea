"""Agent modes as the runtime asks for them: never ``full`` when the answer is in doubt."""

from __future__ import annotations

from pathlib import Path

from pydantic import AwareDatetime

from evalsuite import Record, ReinstateError
from gates._config import Workspace
from gates._store import MODES, Mode, SQLiteStore, StateStore
from regressions import Incident


def open_store(workspace: Workspace) -> SQLiteStore:
    """The workspace's state store."""
    return SQLiteStore(workspace.state_path)


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
    """Set when the store could not be read: the mode is then ``suspended``, not a guess."""


def read_mode(workspace: Workspace, agent: str, store: StateStore | None = None) -> ModeReading:
    """The agent's mode; ``suspended`` with the reason when the store cannot be read."""
    try:
        record = (store or open_store(workspace)).mode(agent)
    except ReinstateError as exc:
        return ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                           reason="state store unreadable: failing closed")
    if record is None:
        try:
            held = contained_by(workspace, agent)
        except ReinstateError as exc:
            return ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                               reason="incident records unreadable: failing closed")
        if held:
            mode: Mode = min((i.containment.mode for i in held if i.containment),
                             key=MODES.index)
            ids = ", ".join(i.id for i in held)
            return ModeReading(
                agent=agent, mode=mode, reason=f"contained by {ids}",
                degraded=f"the state store has no mode for {agent}, but {ids} contained it: "
                         f"the store was lost or replaced; answering {mode}")
        return ModeReading(agent=agent, mode="full", reason="never contained")
    return ModeReading(agent=agent, mode=record.mode, since=record.since, actor=record.actor,
                       reason=record.reason)


def contained_by(workspace: Workspace, agent: str) -> list[Incident]:
    """The agent's incidents that contained it and are not restored yet: whatever the
    store says, the agent is not in full operation while one of these stands."""
    return [i for i in workspace.incidents().all(agent)
            if i.containment is not None and i.phase not in ("restored", "closed")]


def agent_mode(agent: str, workspace: Path | str | None = None) -> Mode:
    """For an agent's runtime: the mode to operate in right now.

    Never raises for a missing or broken workspace or store; answers ``suspended``.
    """
    try:
        found = Workspace.find(Path(workspace) if workspace is not None else None)
    except ReinstateError:
        return "suspended"
    return read_mode(found, agent).mode
