"""The seed metrics that come from the review queue and the guard's logged decisions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gates import Guard, ReviewQueue, Workspace, open_store, review_metrics

AGENT = "refund-agent"
InlineCli = Callable[..., tuple[int, str, str]]


def _decided_queue(ws: Workspace) -> None:
    """Five calls and an output: approved, edited, rejected twice, expired, one pending."""
    queue = ReviewQueue(ws)
    ids = [queue.submit(AGENT, kind="call", tool="close_account", args={"customer_id": f"C-{n}"},
                        reason="every closure", source="guard").id for n in range(5)]
    out = queue.submit(AGENT, kind="output", text="Done.", reason="review mode").id
    queue.approve(ids[0], actor="alice", reason="ok")
    queue.edit(ids[1], actor="alice", reason="other account", args={"customer_id": "C-9"})
    queue.reject(ids[2], actor="bob", reason="not the holder")
    queue.wait(ids[3], timeout_s=0)  # nobody decided: expired
    queue.reject(out, actor="bob", reason="tone")


def _guard_log(ws: Workspace, log: Path) -> None:
    """A guarded run with one allowed, one review-routed and one denied call."""
    open_store(ws).create()  # type: ignore[union-attr]
    with Guard(ws.root, AGENT, log=log) as guard, guard.run("live-1", goal="hello",
                                                            context={"customer_id": "C-1001"}):
        assert guard.call("lookup_order", {"order_id": "A-1001"}).effect == "allow"
        assert guard.call("close_account", {"customer_id": "C-1001"}).effect == "review"
        assert guard.call("wire_money", {"to": "X"}).effect == "deny"


def test_rates_come_from_the_queue_and_the_guards_decisions(example: Workspace,
                                                            tmp_path: Path) -> None:
    """Corrections over human decisions, routed over all guard decisions, calls held back."""
    log = tmp_path / "guard.jsonl"
    _guard_log(example, log)
    _decided_queue(example)
    metrics = review_metrics(example, logs=[log])
    values = {m.name: m.value for m in metrics.metrics}
    assert metrics.runs == 1
    # edited + rejected (a call and the output) over approved + edited + rejected (expired
    # and pending items were decided by no person).
    assert values["human correction rate (review queue)"] == 3 / 4
    assert values["escalation rate (guard decisions)"] == 1 / 3
    assert values["blocked tool calls (review queue)"] == 2  # rejected + expired calls
    basis = {m.name: m.basis for m in metrics.metrics}
    assert basis["escalation rate (guard decisions)"].startswith("guard log: 1 routed")
    assert "1 expired, 1 pending not counted" in basis["human correction rate (review queue)"]


def test_nothing_to_count_is_unknown_never_zero(example: Workspace, tmp_path: Path) -> None:
    """An empty queue and logs without guard decisions give unknown with why, not 0 %."""
    metrics = review_metrics(example)
    assert [m.value for m in metrics.metrics] == [None, None, None]
    assert all(m.basis.startswith("unknown: ") for m in metrics.metrics)
    ReviewQueue(example).submit(AGENT, kind="call", tool="close_account", args={},
                                reason="every closure")
    pending = review_metrics(example).metrics
    assert [m.value for m in pending] == [None, None, None]
    assert "1 pending" in pending[0].basis


def test_metrics_command_shows_them_next_to_the_log_metrics(example: Workspace,
                                                           inline_cli: InlineCli,
                                                           tmp_path: Path) -> None:
    """`reinstate metrics --logs GUARD_LOG --json` holds both, each naming its source."""
    log = tmp_path / "guard.jsonl"
    _guard_log(example, log)
    _decided_queue(example)
    code, out, err = inline_cli(example, "metrics", "--logs", str(log), "--json")
    assert code == 0, err
    rows = {m["name"]: m for m in json.loads(out)["metrics"]}
    assert rows["blocked tool calls"]["value"] == 1  # the guard's denial, from the log
    assert rows["human correction rate (review queue)"]["value"] == 3 / 4
    assert rows["escalation rate (guard decisions)"]["value"] == 1 / 3
    code, out, _ = inline_cli(example, "metrics")  # no logs: the queue alone
    assert code == 0 and "75.0%" in out and "review queue: 1 edited + 2 rejected" in out


@pytest.mark.attack
@pytest.mark.parametrize("edit", ["rejection set approved", "rejection deleted"])
def test_a_queue_row_changed_behind_the_log_does_not_count(example: Workspace,
                                                           edit: str) -> None:
    """The figures count the queue's rows: a rejected call's row set approved, or deleted,
    by hand in SQLite would lower the correction rate and the blocked calls with no trace.
    They are unknown instead, naming the row, and `reinstate audit verify` names it too."""
    from gates._store.audit import verify_audit

    _decided_queue(example)
    assert review_metrics(example).metrics[0].value == 3 / 4
    rejected = next(i for i in ReviewQueue(example).items(status="rejected")
                    if i.kind == "call")
    number = int(rejected.id.removeprefix("R-"))
    with sqlite3.connect(example.root / ".reinstate" / "state.db") as conn:
        if edit == "rejection deleted":
            conn.execute("DELETE FROM reviews WHERE num = ?", (number,))
        else:
            approved = rejected.model_copy(update={"status": "approved"})
            conn.execute("UPDATE reviews SET status = 'approved', body = ? WHERE num = ?",
                         (approved.model_dump_json(), number))
    conn.close()
    metrics = {m.name: m for m in review_metrics(example, agent=AGENT).metrics}
    for name in ("human correction rate (review queue)", "blocked tool calls (review queue)"):
        assert metrics[name].value is None, (name, metrics[name])
        assert metrics[name].basis.startswith(
            f"unknown: the review queue is not what its audit log records (reviews: "
            f"{rejected.id} "), metrics[name].basis
    assert any(p.startswith(f"reviews: {rejected.id} ")
               for p in verify_audit(open_store(example), [AGENT]))
