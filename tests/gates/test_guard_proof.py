"""The control proven at the gate is the control that runs: controls edited where the agent
runs after its last passing gate are not enforced as if proven. The runtime guard sends
every call they do not stop to a person until a gate passes on them, while what they do
stop stays stopped (an emergency tightening denies at once)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gates import GatesError, Guard, GuardDecision, Workspace, open_store, run_gate
from regressions import IncidentBook
from tests.helpers import contained, proven

AGENT = "refund-agent"
# A $20 order: a $100 refund of it is past its total, which the gated boundary denies
# (deny_when refund-exceeds-order-total) and no review rule catches (it is under $150, to
# the original payment method).
ORDER = {"order_id": "A-1002", "customer_id": "C-1002", "total": 20.0, "currency": "USD",
         "status": "shipped"}
PAST_TOTAL = {"order_id": "A-1002", "amount": 100, "refund_to": "original_payment_method"}
PAST_TOTAL_RULE = "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total"


def refund(guard: Guard, run_id: str, args: dict[str, Any] = PAST_TOTAL,
           ) -> tuple[GuardDecision, GuardDecision]:
    """A lookup of order A-1002 and a refund of it: the two decisions."""
    with guard.run(run_id, goal="refund order A-1002", context={"customer_id": "C-1002"}) as run:
        looked = run.call("lookup_order", {"order_id": "A-1002"})
        assert looked.call_id is not None
        run.result(looked.call_id, ORDER)
        return looked, run.call("issue_refund", args)


def edit(path: Path, old: str, new: str) -> str:
    """Replace the one ``old`` in ``path`` by ``new``; the text before."""
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))
    return text


def without_the_total_rule(ws: Workspace) -> str:
    """Take ``refund-exceeds-order-total`` out of permissions.yaml; the text before."""
    permissions = ws.agent_dir(AGENT) / "permissions.yaml"
    text = permissions.read_text()
    start = text.index("    deny_when:\n      - id: refund-exceeds-order-total\n")
    end = text.index("double(s.result.total))\n", start) + len("double(s.result.total))\n")
    permissions.write_text(text[:start] + text[end:])
    return text


def tickets_denied_by(ws: Workspace, predicate: str) -> None:
    """List the ``ticket_rules`` predicate modules (written by the caller), deny a ticket
    when ``predicate`` holds, and gate it."""
    config = ws.root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["ticket_rules"]\n')
    edit(ws.agent_dir(AGENT) / "permissions.yaml",
         "    description: Open a ticket for the support team.\n",
         "    description: Open a ticket for the support team.\n"
         f"    deny_when:\n      - id: leaks\n        predicate: {predicate}\n")
    proven(ws)


@pytest.mark.attack
def test_a_rule_taken_out_after_the_gate_does_not_let_the_harm_through(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """Back in full operation, someone takes the order-total rule out of permissions.yaml
    where the agent runs. ``check`` says stale, but the guard enforced the edited file: a
    refund past the order's total was allowed. It now goes to a person, as every call does
    until a gate passes on today's controls, and the reason names the file."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    _, gated = refund(guard, "before-edit")
    without_the_total_rule(back_in_full)
    looked, loosened = refund(guard, "after-edit")
    assert (gated.effect, gated.rule) == ("deny", PAST_TOTAL_RULE), gated
    assert (loosened.effect, loosened.rule) == ("review", "controls.unproven"), loosened
    assert "agents/refund-agent/permissions.yaml" in loosened.reason
    assert "reinstate gate refund-agent" in loosened.reason
    assert (looked.effect, looked.rule) == ("review", "controls.unproven"), looked


def test_an_emergency_tightening_denies_at_once_and_runs_in_full_once_gated(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """Tickets quoting a card number denied by hand: such a ticket is denied at once while
    a lookup waits for a person; once a gate passes on the tightened file, the lookup runs
    in full and the ticket is still denied."""
    edit(back_in_full.agent_dir(AGENT) / "permissions.yaml",
         "    description: Open a ticket for the support team.\n",
         "    description: Open a ticket for the support team.\n"
         "    arguments:\n      type: object\n      properties:\n"
         "        summary: {type: string, not: {pattern: '\\d{4} \\d{4}'}}\n")
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    decided = []
    for run_id in ("tightened", "tightened-and-gated"):
        with guard.run(run_id, goal="open a ticket", context={"customer_id": "C-1001"}):
            decided.append((guard.call("lookup_order", {"order_id": "A-1001"}),
                            guard.call("create_ticket", {"summary": "card 4242 4242 4242"})))
        if run_id == "tightened":
            proven(back_in_full)
    (looked, ticket), (looked_gated, ticket_gated) = decided
    assert (ticket.effect, ticket.rule) == ("deny", "permissions.tools.create_ticket.arguments")
    assert (looked.effect, looked.rule) == ("review", "controls.unproven"), looked
    assert looked_gated.effect == "allow", looked_gated
    assert ticket_gated.effect == "deny", ticket_gated


def test_controls_put_back_as_gated_run_in_full_without_a_gate(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """An edit undone (with a comment added, which changes nothing a control says) is the
    gated controls again."""
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    gated = without_the_total_rule(back_in_full)
    looked, _ = refund(guard, "edited")
    permissions.write_text(gated + "# reviewed again on 2026-12-02\n")
    again, harm = refund(guard, "put-back")
    assert looked.effect == "review"
    assert again.effect == "allow", again
    assert (harm.effect, harm.rule) == ("deny", PAST_TOTAL_RULE), harm


CAPPED = ("exclusiveMinimum: 0, maximum: 500}", "exclusiveMinimum: 0, maximum: 30}")


@pytest.mark.attack
def test_a_failing_gate_on_edited_controls_proves_nothing(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """Refunds capped at $30 by hand: the gate fails on them (the eval cases' fair refunds
    are denied), and its verdict on today's controls proves nothing."""
    edit(back_in_full.agent_dir(AGENT) / "permissions.yaml", *CAPPED)
    assert not run_gate(Workspace.find(back_in_full.root), AGENT, actor="ci")
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    looked, _ = refund(guard, "after-failed-gate")
    assert (looked.effect, looked.rule) == ("review", "controls.unproven"), looked


def test_an_agent_that_never_passed_a_gate_runs_its_controls_as_they_are(
        example: Workspace, tmp_path: Path) -> None:
    """With no passing verdict (the only gate failed) there is nothing proven to hold to:
    the controls decide as they are."""
    edit(example.agent_dir(AGENT) / "permissions.yaml",
         "amount: {type: number, exclusiveMinimum: 0}",
         "amount: {type: number, exclusiveMinimum: 0, maximum: 30}")
    assert not run_gate(example, AGENT, actor="ci")
    guard = Guard(example.root, AGENT, log=tmp_path / "guard.jsonl")
    looked, over_cap = refund(guard, "never-gated", {**PAST_TOTAL, "amount": 40})
    assert looked.effect == "allow", looked
    assert (over_cap.effect, over_cap.rule) == (
        "deny", "permissions.tools.issue_refund.arguments"), over_cap


@pytest.mark.attack
def test_a_predicate_module_edited_after_the_gate_is_not_enforced_as_proven(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A ``deny_when`` predicate's code is a control: emptied after the gate, the calls it
    no longer stops go to a person, and the reason names its file."""
    root = back_in_full.root
    module = root / "ticket_rules.py"
    module.write_text("def leaks(data):\n    return '4242' in str(data['args'])\n")
    tickets_denied_by(back_in_full, "ticket_rules:leaks")
    guard = Guard(root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    decided = []
    for run_id in ("gated", "emptied"):
        with guard.run(run_id, goal="open a ticket", context={"customer_id": "C-1001"}):
            decided.append(guard.call("create_ticket", {"summary": "card 4242 4242 4242"}))
        module.write_text("def leaks(data):\n    return False\n")
    gated, emptied = decided
    assert (gated.effect, gated.rule) == (
        "deny", "permissions.tools.create_ticket.deny_when.leaks"), gated
    assert (emptied.effect, emptied.rule) == ("review", "controls.unproven"), emptied
    assert "ticket_rules.py" in emptied.reason


@pytest.mark.attack
def test_the_controls_that_failed_put_back_are_not_proven_by_their_gate_before_the_incident(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """The agent passed a gate on its old controls before INC-1, and those controls let
    INC-1 happen. Copied back from the incident's baseline after the restore, they match
    that verdict, but a verdict from before the agent's last containment proves nothing:
    the incident showed those controls wrong."""
    baseline = back_in_full.root / "incidents/INC-1.baseline"
    for name in ("permissions.yaml", "review.yaml", "acceptance.yaml", "checklist.yaml"):
        (back_in_full.agent_dir(AGENT) / name).write_bytes((baseline / name).read_bytes())
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    looked, _ = refund(guard, "old-controls")
    assert (looked.effect, looked.rule) == ("review", "controls.unproven"), looked


@pytest.mark.attack
def test_a_module_imported_at_call_time_runs_as_gated(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A predicate package whose function imports its helper when first called: the helper
    was read from disk at that call, after the guard digested it. Rewritten in place after
    the guard loaded (same size, its time put back, so no stamp moved), the helper's new
    code decided while the guard held the controls proven: a ticket quoting a card number,
    denied by the gated helper, was allowed. The helper now runs from the bytes the guard
    digested."""
    root = back_in_full.root
    (root / "ticket_rules").mkdir()
    (root / "ticket_rules/__init__.py").write_text("")
    (root / "ticket_rules/rules.py").write_text(
        "def leaks(data):\n    from ticket_rules import card\n    return card.leaks(data)\n")
    helper = root / "ticket_rules/card.py"
    helper.write_text("def leaks(data):\n    return '4242' in str(data['args'])\n")
    tickets_denied_by(back_in_full, "ticket_rules.rules:leaks")
    # The guard in a process of its own, as deployed (the gate's process has the helper
    # loaded already); the rewrite happens there after the guard loaded the controls.
    script = f"""
import os
import subprocess
import sys
from pathlib import Path
from gates import Guard
helper = Path({str(helper)!r})
guard = Guard({str(root)!r}, {AGENT!r}, log=Path({str(tmp_path / "guard.jsonl")!r}),
              controls_recheck_s=0)
gated = helper.read_bytes()
emptied = b"def leaks(data):\\n    return False\\n"
emptied += b"#" * (len(gated) - len(emptied) - 1) + b"\\n"
before = helper.stat()
with helper.open("r+b") as file:  # in place: the same inode
    file.write(emptied)
os.utime(helper, ns=(before.st_atime_ns, before.st_mtime_ns))
with guard.run("helper-rewritten", goal="open a ticket", context={{"customer_id": "C-1001"}}):
    ticket = guard.call("create_ticket", {{"summary": "card 4242 4242 4242"}})
print(ticket.effect, ticket.rule)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert b"return False" in helper.read_bytes()  # the rewrite happened
    assert done.stdout.split() == ["deny", "permissions.tools.create_ticket.deny_when.leaks"], (
        done.stdout)


# A refresh held in the middle: while PAUSE is set, reading the incidents waits (READING
# says it got there) until GO_ON.
PAUSE, READING, GO_ON = threading.Event(), threading.Event(), threading.Event()


@dataclass(frozen=True)
class PausingWorkspace(Workspace):
    """A workspace whose incident book waits while PAUSE is set."""

    def incidents(self) -> IncidentBook:
        if PAUSE.is_set():
            READING.set()
            GO_ON.wait(timeout=120)  # never the test's verdict: only so a bug cannot hang it
        return super().incidents()


@pytest.mark.attack
def test_a_decision_made_while_another_thread_reloads_the_controls_is_not_made_proven(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """One thread refreshes the guard after the order-total rule was taken out: it loads
    the edited controls, then reads the mode and works out whether they are proven. A
    decision made by another thread in between used the edited controls with the answer
    worked out for the gated ones, and let a refund past the order's total through. Until
    the edited controls' proof is worked out they count as unproven."""
    for event in (PAUSE, READING, GO_ON):
        event.clear()
    workspace = PausingWorkspace(back_in_full.root, back_in_full.config)
    guard = Guard(workspace, AGENT, log=tmp_path / "guard.jsonl",
                  recheck_s=3600, controls_recheck_s=3600)
    without_the_total_rule(back_in_full)
    (back_in_full.incidents_dir / "note.txt").write_text("the mode is read again\n")
    PAUSE.set()
    refresher = threading.Thread(target=guard.refresh)
    refresher.start()
    try:
        assert READING.wait(timeout=120)
        _, during = refund(guard, "during-the-refresh")
    finally:
        PAUSE.clear()
        GO_ON.set()
        refresher.join()
    _, after = refund(guard, "after-the-refresh")
    assert (after.effect, after.rule) == ("review", "controls.unproven"), after
    assert during.effect != "allow", during


@pytest.mark.attack
def test_verdicts_deleted_from_the_store_do_not_make_the_agent_never_gated(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """With the agent's verdict rows deleted, it looked never gated, and controls edited
    after its restore ran in full (a refund past the order's total allowed). An agent that
    was contained has passed a gate to be restored: no verdict is no proof."""
    without_the_total_rule(back_in_full)
    with sqlite3.connect(back_in_full.state_path) as conn:
        conn.execute("DELETE FROM verdicts WHERE agent = ?", (AGENT,))
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    assert guard.mode.mode == "full", guard.mode
    _, refund_past_total = refund(guard, "verdicts-deleted")
    assert (refund_past_total.effect, refund_past_total.rule) == (
        "review", "controls.unproven"), refund_past_total
    assert "no passing verdict" in refund_past_total.reason


@pytest.mark.attack
def test_a_gate_the_agent_was_contained_during_stores_no_verdict(
        back_in_full: Workspace) -> None:
    """A gate that started before a containment read the incidents from before it, and its
    pass was stored dated after it: on the very controls the new incident may show wrong,
    it was the proof the runtime guard takes for them. Such a gate now stores nothing
    (exit 3), and the last verdict stands."""
    store = open_store(back_in_full)
    before = store.latest_verdict_sha256(AGENT)
    contained_once: list[str] = []

    def contain_midway(_result: object, done: int, _total: int) -> None:
        if done and not contained_once:
            contained_once.append(contained(back_in_full))

    with pytest.raises(GatesError, match="was contained while its gate ran") as raised:
        run_gate(back_in_full, AGENT, actor="ci", progress=contain_midway)
    assert contained_once and raised.value.exit_code == 3
    assert store.latest_verdict_sha256(AGENT) == before
