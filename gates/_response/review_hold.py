"""A guarded run's review-routed step, held in the review queue until a person decides.

The guard decides; this puts its ``review`` decision in front of a person: the call (tool
and arguments, as the run's history holds them) or the output goes to the queue with the
deciding rule, the caller waits, and a call that is not released is logged as blocked in
the run, so the run log says what happened to it.
"""

from __future__ import annotations

from evalsuite import Output, ToolCall
from gates._errors import GatesError, UnknownReview
from gates._response.guard import GuardDecision, GuardedRun
from gates._response.review_edits import refused_release, release_held, vouched_item
from gates._store.review_queue import ReviewQueue
from gates._store.reviews import ReviewItem

# Who refuses a reviewer's edit in the audit log: the guard's decision, not a person.
GUARD_ACTOR = "reinstate-guard"


def submit_guarded(queue: ReviewQueue, run: GuardedRun,
                   decision: GuardDecision) -> ReviewItem:
    """Queue the step a guard routed to review (source ``guard``), without waiting.

    Raises:
        GatesError: ``decision`` is not a review decision of a step of ``run``.
    """
    if decision.effect != "review":
        raise GatesError(f"run {run.run_id}: step {decision.step} was decided "
                         f"{decision.effect}, not review: only review decisions are queued")
    step = run.history[decision.step] if decision.step < len(run.history) else None
    if isinstance(step, ToolCall):
        return queue.submit(run.guard.agent, kind="call", tool=step.tool,
                            args=dict(step.arguments), rule=decision.rule,
                            reason=decision.reason, run_id=run.run_id, source="guard")
    if isinstance(step, Output):
        return queue.submit(run.guard.agent, kind="output", text=step.content,
                            rule=decision.rule, reason=decision.reason, run_id=run.run_id,
                            source="guard")
    raise GatesError(f"run {run.run_id}: step {decision.step} is not a tool call or an "
                     f"output of this run")


def hold_for_review(queue: ReviewQueue, run: GuardedRun, decision: GuardDecision, *,
                    timeout_s: float, poll_s: float = 0.2) -> ReviewItem:
    """Queue a review-routed step and wait for a person (at most ``timeout_s``).

    Proceed only when the returned item is :attr:`~gates.ReviewItem.released`, with its
    :attr:`~gates.ReviewItem.final_args` (or ``final_text``). A call that is not released
    (rejected, or expired at the timeout) is logged in the run as blocked, naming why.
    An item deleted from the queue while the caller waits comes back ``rejected`` (audited
    as ``review.release_refused``) and is logged blocked the same way: it never runs.

    What comes back is what the hash-chained audit log records for the step as the run
    held it (:meth:`~gates.ReviewQueue.vouched`), not the store's review row: an approval
    releases exactly the held arguments, an edit the reviewer's as the ``review.edit``
    entry records them, and a decision the log does not vouch for comes back ``rejected``
    (audited as ``review.release_refused``).

    Whatever a person released is decided again by the guard, in the held step's place,
    with today's mode and controls after the run's whole history as it is now: a release
    the guard stops (the agent suspended meanwhile, a refund edited past the limit, a
    refund that with those made meanwhile adds up past the order's total) is audited
    (``review.edit_refused`` for an edit, ``review.release_refused`` for an approval) and
    comes back as ``rejected``, with the refusal as its reason, so it never runs (the
    queue keeps the decision as made). An edit that runs replaces the call in the run's
    history (:meth:`GuardedRun.revise`): later decisions read the arguments that ran.

    Raises:
        GatesError: ``decision`` is not a review decision of a step of ``run``.
        StoreUnavailable: the queue cannot be written or read (deny the step).
    """
    submitted = submit_guarded(queue, run, decision)
    try:
        queue.wait(submitted.id, timeout_s=timeout_s, poll_s=poll_s)
    except UnknownReview:
        # Nobody can decide, or be shown, a row that is gone: whatever the log says of it,
        # the step is not released.
        item = refused_release(
            queue, submitted, actor=GUARD_ACTOR, source="guard",
            why=(f"review {submitted.id} was deleted from the review queue while its "
                 f"runtime waited: nothing is released (failing closed)"))
    else:
        # The store's row only says that a decision was made; what it is, the log says.
        item = vouched_item(queue, submitted, actor=GUARD_ACTOR, source="guard")
        item = release_held(run, decision, item, actor=GUARD_ACTOR, source="guard")
    if item.kind == "call" and not item.released and decision.call_id is not None:
        run.result(decision.call_id, blocked=True,
                   error=f"{item.status} in review {item.id} by {item.decided_by}: "
                         f"{item.decision_reason}")
    return item
