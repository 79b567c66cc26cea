"""A call a reviewer edited is, in the guard's history, the call that ran: later rules over
the run's history decide on the edited arguments, not on the ones the agent asked for."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from evalsuite import ToolCall, read_log_runs
from gates import GatesError, Guard, ReviewQueue, Workspace, hold_for_review
from tests.helpers import proven

AGENT = "refund-agent"

# A rule over the run's history, on the arguments of earlier calls: two refunds of one
# order never add up past the total its lookup returned.
REFUNDS_WITHIN_TOTAL = """\
    deny_when:
      - id: refunds-past-order-total
        description: Two refunds of one order never add up past the order's total.
        expression: >-
          history.exists(r, r.kind == "tool_result" && r.tool == "lookup_order"
            && r.result.order_id == args.order_id
            && history.exists(s, s.kind == "tool_call" && s.tool == "issue_refund"
              && s.arguments.order_id == args.order_id
              && double(s.arguments.amount) + double(args.amount) > double(r.result.total)))
"""
# Order A-1002's lookup: a total of $240.
ORDER = {"order_id": "A-1002", "customer_id": "C-1002", "total": 240.0, "currency": "USD",
         "status": "shipped"}
ASKED = {"order_id": "A-1002", "amount": 200, "refund_to": "original_payment_method"}
EDITED = {**ASKED, "amount": 100}


def with_refunds_within_total(ws: Workspace) -> None:
    """Add the history rule to the agent's permissions (before the refund's own rules) and
    pass the gate on them."""
    permissions = ws.agent_dir(AGENT) / "permissions.yaml"
    text = permissions.read_text()
    assert text.count("    deny_when:\n") == 1
    permissions.write_text(text.replace("    deny_when:\n", REFUNDS_WITHIN_TOTAL))
    proven(ws)


def edited_run(ws: Workspace, log: Path) -> dict[str, Any]:
    """A guarded run whose $200 refund a reviewer edits to $100, then two more refunds
    ($130, $150): the guard's live decisions by name (``held``, ``second``, ``third``),
    the review item (``item``) and the held call's step in the history (``step``)."""
    with_refunds_within_total(ws)
    guard = Guard(ws.root, AGENT, log=log)
    queue = ReviewQueue(ws)

    def reviewer() -> None:
        while not queue.items():
            time.sleep(0.05)
        queue.edit(queue.items()[0].id, actor="rita", reason="half now", args=EDITED)

    deciding = threading.Thread(target=reviewer)
    deciding.start()
    with guard.run("live-edit", goal="refund order A-1002",
                   context={"customer_id": "C-1002"}) as run:
        looked = run.call("lookup_order", {"order_id": "A-1002"})
        assert looked.call_id is not None
        run.result(looked.call_id, ORDER)
        held = run.call("issue_refund", ASKED)
        assert held.effect == "review" and held.call_id is not None, held
        item = hold_for_review(queue, run, held, timeout_s=60, poll_s=0.05)
        assert item.released and item.final_args == EDITED
        run.result(held.call_id, {"refund_id": "R-1", "amount": 100})
        second = run.call("issue_refund", {**ASKED, "amount": 130})
        third = run.call("issue_refund", {**ASKED, "amount": 150})
        step = run.history[held.step]
    deciding.join(30)
    guard.close()
    return {"held": held, "second": second, "third": third, "item": item, "step": step}


@pytest.mark.slow
def test_later_calls_are_decided_after_the_edited_call(back_in_full: Workspace,
                                                       tmp_path: Path) -> None:
    """After a $200 refund edited to $100 ran, a $130 refund fits the order's $240 total."""
    live = edited_run(back_in_full, tmp_path / "guard.jsonl")
    second, third, held = live["second"], live["third"], live["held"]
    assert second.effect == "allow", second
    assert third.effect == "deny" and third.rule.endswith("refunds-past-order-total"), third
    assert isinstance(live["step"], ToolCall) and live["step"].arguments == EDITED
    [logged] = read_log_runs(tmp_path / "guard.jsonl")
    assert logged.metadata[f"guard.edited.{held.step}"] == {
        "arguments": EDITED, "by": "rita", "review": live["item"].id, "requested": ASKED}


def test_revising_a_call_the_run_never_made_is_refused(back_in_full: Workspace,
                                                       tmp_path: Path) -> None:
    """An edit for a call id the run does not hold raises and leaves the history alone."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    with guard.run("live-edit-2", goal="refund order A-1002") as run:
        looked = run.call("lookup_order", {"order_id": "A-1002"})
        with pytest.raises(GatesError, match="no tool call 'nope' to revise"):
            run.revise("nope", EDITED, by="rita")
        assert [s.arguments for s in run.history if isinstance(s, ToolCall)] == [
            {"order_id": "A-1002"}]
        assert looked.effect == "allow"
    guard.close()
    [logged] = read_log_runs(tmp_path / "guard.jsonl")
    assert not any(key.startswith("guard.edited.") for key in logged.metadata)
