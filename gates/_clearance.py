"""Clearance for deploy jobs: may the agent run in full operation at today's fingerprint?

It only reads state (the incident files, the latest verdict, the mode) and loads the
controls (importing the predicate modules the workspace allows), and runs no agent, so a
deploy job can ask it in a second. The conditions are restore's own
(:func:`restore_blockers`), so ``check`` and ``restore`` never disagree; on top of them the
agent must actually be in full operation.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from evalsuite import Record
from gates._config import Workspace
from gates._restore import restore_blockers
from gates._state import open_store, read_mode, standing
from gates._store import Mode, StateStore
from gates._verdict import Outcome


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

    @property
    def restorable(self) -> bool:
        """Whether ``reinstate restore`` would be allowed now."""
        return not self.blockers

    def __bool__(self) -> bool:
        return self.cleared


def check(workspace: Workspace, agent: str, store: StateStore | None = None) -> Clearance:
    """Whether ``agent`` is cleared for full operation; reads state, runs nothing.

    An unreadable state store raises :class:`StoreUnavailable` (exit 3): no answer is
    ever a clearance.
    """
    store = store or open_store(workspace)
    blockers = restore_blockers(workspace, agent, store)
    reading = read_mode(workspace, agent, store)
    held = standing(workspace, agent, store)
    reasons = list(blockers)
    notes = list(held.unknown.values())
    # Incidents a new store (a CI job's) never saw hold the agent at run time, but a deploy
    # is cleared when the verdict meets their restore conditions (the blockers above); an
    # incident this store saw contained stands until it is restored here.
    new_store = (store.mode(agent) is None
                 and {i.id for i in held.holding} <= set(held.unknown))
    if reading.mode != "full" and not new_store:
        then = reading.since.strftime("%Y-%m-%d %H:%M UTC") if reading.since else "unknown"
        reasons.append(f"{agent} is in {reading.mode} mode (since {then}, by "
                       f"{reading.actor or 'containment'}: {reading.reason})"
                       + ("" if blockers else f": run `reinstate restore {agent}`"))
    verdict = store.latest_verdict(agent)
    return Clearance(
        agent=agent, cleared=not reasons, mode=reading.mode, blockers=blockers,
        reasons=reasons, notes=notes,
        verdict_outcome=verdict.outcome if verdict is not None else None,
        verdict_created_at=verdict.created_at if verdict is not None else None,
    )
