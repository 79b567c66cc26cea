"""The release of a held call or output: what a person decided, decided again before it runs.

One function releases what the review queue held, for the guard (:func:`~gates.hold_for_review`)
and the MCP gateway alike (:func:`release_held`):

1. What was decided is read from the hash-chained audit log for the item as the runtime
   submitted it (:meth:`~gates.ReviewQueue.vouched`), never from the store's review row: an
   approval releases exactly the arguments (or text) the runtime held, an edit the
   reviewer's arguments as the ``review.edit`` entry records them. A decision the log does
   not vouch for releases nothing, with a ``review.release_refused`` entry.
2. Whatever a person released is decided again by the guard, with the same replay the gate
   verified, as if the agent made it now in the held step's place: today's mode (a
   suspended agent releases nothing), today's controls, and the run's whole history as it
   is now (every call made while the item waited, the held step itself left out), in the
   run's context. It runs only when that decision lets it.

Routed to review again by the rule the reviewer just answered (a refund over $150 edited to
another amount over $150, or any call while the agent is in review mode), the reviewer's
decision is that review, and the call runs. Routed to review by another rule, it is refused
rather than held a second time: a release never loops through the queue. A refused edit is
audited as ``review.edit_refused``, a refused approval as ``review.release_refused``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from evalsuite import History, Output, Step, ToolCall
from gates._controls.policy import Decision
from gates._errors import GatesError
from gates._response.guard import GuardDecision, GuardedRun
from gates._store.access import open_store
from gates._store.backends import StateStore
from gates._store.review_queue import ReviewQueue
from gates._store.reviews import ReviewItem

# The audit action of a reviewer's edit the re-decision refused.
EDIT_REFUSED_ACTION = "review.edit_refused"
# The audit action of an approval refused at release (by the re-decision, or because the
# audit log does not vouch for it).
RELEASE_REFUSED_ACTION = "review.release_refused"


def vouched_item(queue: ReviewQueue, submitted: ReviewItem, *, actor: str,
                 source: str) -> ReviewItem:
    """The decision on ``submitted`` (the item as this runtime submitted it, waited for
    until the queue says it was decided) as the audit log records it
    (:meth:`ReviewQueue.vouched`); one the log does not vouch for, or does not record at
    all, comes back ``rejected`` by ``actor``, saying why, with a
    ``review.release_refused`` entry."""
    try:
        item = queue.vouched(submitted)
        if item.status == "pending":  # waited for: the row says decided, the log does not
            raise GatesError(f"the audit log records no decision of {submitted.id}")
        return item
    except GatesError as exc:  # unvouched, or a store that cannot be read: fail closed
        return refused_release(
            queue, submitted, actor=actor, source=source,
            why=(f"review {submitted.id}: {exc}; the decision in the store's queue is not "
                 f"the audit log's, so nothing is released (failing closed)"))


def refused_release(queue: ReviewQueue, submitted: ReviewItem, *, actor: str, source: str,
                    why: str) -> ReviewItem:
    """``submitted`` come back ``rejected`` by ``actor`` for ``why``, with a
    ``review.release_refused`` entry: what a runtime that waited for it must not release."""
    why = _audit(lambda: queue.store, submitted, actor=actor, action=RELEASE_REFUSED_ACTION,
                 why=why, detail={"rule": "review.audit", "source": source})
    return submitted.model_copy(update={
        "status": "rejected", "decided_by": actor, "decision_reason": why,
        "decided_at": datetime.now(UTC)})


def release_held(run: GuardedRun, routed: GuardDecision, item: ReviewItem, *, actor: str,
                 source: str) -> ReviewItem:
    """Decide again what a person released (``item``, as :func:`vouched_item` read it) of
    the step ``routed`` held, and record what runs.

    A released call or output that today's decision stops comes back ``rejected``, its
    reason saying why, with an audit entry by ``actor``; an edited call that runs replaces
    the held call in the run's history (:meth:`GuardedRun.revise`). An item that was not
    released comes back as it is.
    """
    if not item.released:
        return item
    edited = item.status == "edited"
    step: Step
    if item.kind == "call":
        step = ToolCall(tool=item.tool or "", arguments=dict(item.final_args or {}),
                        call_id=routed.call_id, at=datetime.now(UTC))
    else:
        step = Output(content=item.final_text or "", at=datetime.now(UTC))
    again = decide_release(run, routed, step, edited=edited)
    if not again.stopped:
        if edited and item.kind == "call" and routed.call_id is not None:
            # What runs is what later decisions of the run read in its history.
            run.revise(routed.call_id, item.final_args or {}, by=item.decided_by or "",
                       review=item.id)
        return item
    why = f"{item.status} by {item.decided_by}: {again.reason}"
    detail: dict[str, Any] = {"rule": again.rule, "run_id": run.run_id, "source": source}
    if edited and item.kind == "call":
        detail["edited_args"] = item.final_args
    elif edited:
        detail["edited_text"] = item.final_text
    why = _audit(lambda: open_store(run.guard.workspace), item, actor=actor, why=why, detail=detail,
                 action=EDIT_REFUSED_ACTION if edited else RELEASE_REFUSED_ACTION)
    return item.model_copy(update={"status": "rejected", "decision_reason": why})


def decide_release(run: GuardedRun, routed: GuardDecision, step: Step, *,
                   edited: bool) -> Decision:
    """What the guard decides now on ``step`` (the held call or output as a person released
    it), in the place of the step it routed to review (``routed``).

    Decided after the run's whole history as it is now, the held step left out (calls made
    while it waited count; the held call is the one being decided), with today's controls
    and mode, in the run's context.

    Returns:
        ``allow`` when it may run; else ``deny``, whose rule is the one that stopped it and
        whose reason says the release was refused and why.
    """
    history = History(s for i, s in enumerate(run.history) if i != routed.step)
    decision = run.guard.decide(step, history, run.context)
    what = "the reviewer's edit" if edited else "the approved " + (
        "call" if isinstance(step, ToolCall) else "output")
    if decision.effect == "allow":
        return decision
    if decision.effect == "review" and decision.rule == routed.rule:
        return Decision(effect="allow", rule=decision.rule,
                        reason=f"{what} is routed to review by {decision.rule} as the held "
                               f"step was, and the reviewer's decision is that review")
    if decision.effect == "review":
        return Decision(effect="deny", rule=decision.rule,
                        reason=f"{what} was refused: it is routed to review again, by "
                               f"{decision.rule} ({decision.reason}), and a release is not "
                               f"held twice; reject it, or edit it within {routed.rule}")
    return Decision(effect="deny", rule=decision.rule,
                    reason=f"{what} was refused: denied by {decision.rule}: "
                           f"{decision.reason}")


def _audit(store: Callable[[], StateStore], item: ReviewItem, *, actor: str, action: str,
           why: str, detail: dict[str, Any]) -> str:
    """Append the refusal's audit entry; returns ``why``, saying so when the entry could
    not be written (refused either way)."""
    try:
        store().append(
            actor=actor, action=action, agent=item.agent, reason=why,
            detail={"review": item.id, "tool": item.tool, **detail})
    except Exception as exc:  # refused either way; say the audit entry is missing
        why += f" (the audit entry could not be written: {exc})"
    return why
