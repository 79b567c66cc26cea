"""Clearance for deploy jobs: may the agent run in full operation at today's fingerprint?

It only reads state (the incident files, the latest verdict, the mode) and loads the
controls (importing the predicate modules the workspace allows), and runs no agent, so a
deploy job can ask it in a second. The conditions are restore's own
(:func:`restore_blockers`), so ``check`` and ``restore`` never disagree; on top of them the
agent must actually be in full operation.
"""

from __future__ import annotations

from pydantic import AwareDatetime

from evalsuite import Record
from gates._config import Workspace
from gates._restore import restore_blockers
from gates._state import contained_by, open_store
from gates._store import Mode, StateStore
from gates._verdict import Outcome


class Clearance(Record):
    """Whether an agent is cleared for full operation, and every reason it is not."""

    agent: str
    """The agent asked about."""
    cleared: bool
    """True only when nothing blocks restoration and the agent is in full operation."""
    mode: Mode
    """The mode the state store records; ``full`` for an agent never contained."""
    blockers: list[str]
    """Restore's unmet conditions: open incidents, controls that no longer load, a
    missing, failing or stale verdict."""
    reasons: list[str]
    """Everything that keeps the agent from being cleared: the blockers, then the mode."""
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
    record = store.mode(agent)
    mode: Mode = "full" if record is None else record.mode
    reasons = list(blockers)
    if record is None and contained_by(workspace, agent):
        reasons.append(f"{agent} has no recorded mode, but "
                       f"{', '.join(i.id for i in contained_by(workspace, agent))} contained it: "
                       f"the state store was lost or replaced; run `reinstate restore {agent}`")
    if record is not None and mode != "full":
        then = record.since.strftime("%Y-%m-%d %H:%M UTC")
        reasons.append(f"{agent} is in {mode} mode (since {then}, by {record.actor}: "
                       f"{record.reason})"
                       + ("" if blockers else f": run `reinstate restore {agent}`"))
    verdict = store.latest_verdict(agent)
    return Clearance(
        agent=agent, cleared=not reasons, mode=mode, blockers=blockers, reasons=reasons,
        verdict_outcome=verdict.outcome if verdict is not None else None,
        verdict_created_at=verdict.created_at if verdict is not None else None,
    )
