"""A reviewer's edited call, decided again before it runs.

A person who edits a held call releases arguments the guard never decided: an edit could
turn a refund the permissions allow into one over the limit. So the edited call is decided
by the guard, with the same replay the gate verified, as if the agent had made it in the
original call's place (same history before it, same run context, today's controls and
mode), and it runs only when that decision lets it.

Routed to review again by the rule the reviewer just answered (a refund over $150 edited to
another amount over $150, or any call while the agent is in review mode), the reviewer's
decision is that review, and the edit runs. Routed to review by another rule, it is refused
rather than held a second time: an edit never loops through the queue.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from evalsuite import History, ToolCall
from gates._config import Workspace
from gates._controls.policy import Decision
from gates._response.guard import GuardDecision, GuardedRun
from gates._store.access import open_store
from gates._store.reviews import ReviewItem

# The audit action of a reviewer's edit the re-decision refused.
EDIT_REFUSED_ACTION = "review.edit_refused"


def decide_edited_call(run: GuardedRun, routed: GuardDecision, tool: str,
                       edited_args: dict[str, Any]) -> Decision:
    """What the guard decides on ``tool`` called with a reviewer's ``edited_args``, in the
    place of the call it routed to review (``routed``).

    Args:
        run: The live run the held call belongs to.
        routed: The guard's review decision on the call as the agent made it.
        tool: The tool called.
        edited_args: The arguments the reviewer released instead.

    Returns:
        ``allow`` when the edited call may run; else ``deny``, whose rule is the one that
        stopped the edit and whose reason says the reviewer's edit was refused and why.
    """
    step = ToolCall(tool=tool, arguments=dict(edited_args), call_id=routed.call_id,
                    at=datetime.now(UTC))
    before = History(itertools.islice(run.history, routed.step))
    decision = run.guard.decide(step, before, run.context)
    if decision.effect == "allow":
        return decision
    if decision.effect == "review" and decision.rule == routed.rule:
        return Decision(effect="allow", rule=decision.rule,
                        reason=f"the reviewer's edit is routed to review by {decision.rule} "
                               f"as the call was, and the reviewer's decision is that review")
    if decision.effect == "review":
        return Decision(effect="deny", rule=decision.rule,
                        reason=f"the reviewer's edit was refused: it is routed to review "
                               f"again, by {decision.rule} ({decision.reason}), and an edit "
                               f"is not held twice; reject the call or edit it within "
                               f"{routed.rule}")
    return Decision(effect="deny", rule=decision.rule,
                    reason=f"the reviewer's edit was refused: denied by {decision.rule}: "
                           f"{decision.reason}")


def refuse_edit(workspace: Workspace, item: ReviewItem, refusal: Decision, *, actor: str,
                tool: str, run_id: str, source: str) -> str:
    """Record in the audit log that ``item``'s edit was refused by ``refusal``.

    Returns:
        Why the edited call does not run, as one sentence; it says so when the audit entry
        could not be written (the edit is refused either way).
    """
    why = f"review {item.id} edited by {item.decided_by}: {refusal.reason}"
    try:
        open_store(workspace).append(
            actor=actor, action=EDIT_REFUSED_ACTION, agent=item.agent, reason=why,
            detail={"review": item.id, "tool": tool, "rule": refusal.rule,
                    "edited_args": item.final_args, "run_id": run_id, "source": source})
    except Exception as exc:  # refused either way; say the audit entry is missing
        why += f" (the audit entry could not be written: {exc})"
    return why
