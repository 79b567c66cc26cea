"""The seed metrics that the review queue and the guard's decisions are the source of.

- human correction rate (review queue): items a person edited or rejected ÷ items a
  person decided (approved, edited, rejected); expired items were decided by nobody.
- escalation rate (guard decisions): the guard's ``review`` decisions ÷ all its decisions,
  as its run log records each one (run metadata ``guard.step.<n>``).
- blocked tool calls (review queue): held calls that were not released (rejected, or
  expired at the waiting side's timeout).

Each is "unknown", with why, when there is nothing to count: never 0 % from no data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from evalsuite import LogFormat, Metric, Metrics, ReinstateError, RunPart, read_logs
from gates._config import Workspace
from gates._store.access import store_exists
from gates._store.audit import review_problems
from gates._store.backends import verify_chain
from gates._store.review_queue import ReviewQueue
from gates._store.reviews import ReviewItem

# The metadata key prefix under which the guard logs each step's decision.
GUARD_STEP = "guard.step."
CORRECTION = "human correction rate (review queue)"
ESCALATION = "escalation rate (guard decisions)"
BLOCKED = "blocked tool calls (review queue)"


class GuardDecisions:
    """Counts the guard's logged decisions, each once however the log's parts repeat it."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self.effects: Counter[str] = Counter()

    def feed(self, part: RunPart) -> None:
        """Count the decisions one part of a run carries."""
        if part.header is None:
            return
        for key, value in part.header.metadata.items():
            if not key.startswith(GUARD_STEP) or (part.run_id, key) in self._seen:
                continue
            effect = value.get("effect") if isinstance(value, dict) else None
            if effect in ("allow", "review", "deny"):
                self._seen.add((part.run_id, key))
                self.effects[effect] += 1


def queue_metrics(items: Sequence[ReviewItem] | str, guard: GuardDecisions) -> list[Metric]:
    """The three metrics from the queue's items (or why they cannot be read) and the guard's
    decisions counted from the logs."""
    out: list[Metric] = []
    if isinstance(items, str):
        why = f"unknown: {items}"
        out.append(Metric(name=CORRECTION, value=None, unit="ratio", basis=why))
    else:
        status = Counter(i.status for i in items)
        by_person = status["approved"] + status["edited"] + status["rejected"]
        if by_person:
            corrected = status["edited"] + status["rejected"]
            out.append(Metric(
                name=CORRECTION, value=corrected / by_person, unit="ratio",
                basis=f"review queue: {status['edited']} edited + {status['rejected']} "
                      f"rejected of {by_person} decided by a person ({status['expired']} "
                      f"expired, {status['pending']} pending not counted)"))
        else:
            out.append(Metric(
                name=CORRECTION, value=None, unit="ratio",
                basis=f"unknown: no item of the review queue was decided by a person "
                      f"({len(items)} items: {status['pending']} pending, "
                      f"{status['expired']} expired)"))
    total = sum(guard.effects.values())
    if total:
        out.append(Metric(
            name=ESCALATION, value=guard.effects["review"] / total, unit="ratio",
            basis=f"guard log: {guard.effects['review']} routed to review of {total} "
                  f"decisions (guard.step.<n>; {guard.effects['deny']} denied)"))
    else:
        out.append(Metric(name=ESCALATION, value=None, unit="ratio",
                          basis="unknown: the logs hold no guard decisions (guard.step.<n>): "
                                "give the guard's run log with --logs"))
    if isinstance(items, str):
        out.append(Metric(name=BLOCKED, value=None, unit="count", basis=f"unknown: {items}"))
    else:
        calls = [i for i in items if i.kind == "call" and i.status != "pending"]
        if calls:
            blocked = [i for i in calls if not i.released]
            out.append(Metric(
                name=BLOCKED, value=len(blocked), unit="count",
                basis=f"review queue: {len(blocked)} of {len(calls)} decided calls not "
                      f"released (rejected or expired)"))
        else:
            out.append(Metric(name=BLOCKED, value=None, unit="count",
                              basis="unknown: no tool call in the review queue was decided"))
    return out


def queue_items(workspace: Workspace | None, agent: str | None,
                problem: str = "") -> list[ReviewItem] | str:
    """Every item of the workspace's queue (``agent``'s only when given), or why they
    cannot be read."""
    if workspace is None:
        return problem or "no workspace, so no review queue"
    try:
        queue = ReviewQueue(workspace)
        items = queue.items(agent, status=None)
        # The rows are what is counted, and a row is a plain table row: one set approved,
        # or deleted, behind the audit log would move the figures without a trace.
        entries = queue.store.audit() if store_exists(queue.store) else []
        behind = verify_chain(entries) + review_problems(queue.store, entries, agent)
    except ReinstateError as exc:
        return f"the review queue cannot be read ({exc})"
    if behind:
        more = f" and {len(behind) - 1} more" if len(behind) > 1 else ""
        return (f"the review queue is not what its audit log records ({behind[0]}{more}); "
                f"`reinstate audit verify` names every difference")
    return items


def review_metrics(workspace: Workspace | Path | str | None = None, *,
                   agent: str | None = None, logs: Sequence[Path] = (),
                   fmt: LogFormat | Literal["auto"] = "auto") -> Metrics:
    """Human correction rate and blocked calls from the review queue, escalation rate from
    the guard's decisions in ``logs``; each unknown (with why) when there is nothing to
    count.

    Args:
        workspace: The workspace whose state store holds the queue (default: found from
            the working directory).
        agent: Only this agent's items and runs.
        logs: Run logs to count the guard's decisions in (its own JSONL log).
        fmt: The logs' format, or ``auto``.

    Raises:
        InvalidInput: no workspace there, or a log that cannot be read.
    """
    found = workspace if isinstance(workspace, Workspace) else Workspace.find(
        Path(workspace) if workspace is not None else None)
    guard = GuardDecisions()
    runs: set[str] = set()
    for part in read_logs(list(logs), fmt, agent=agent):
        runs.add(part.run_id)
        guard.feed(part)
    return Metrics(runs=len(runs), metrics=queue_metrics(queue_items(found, agent), guard))
