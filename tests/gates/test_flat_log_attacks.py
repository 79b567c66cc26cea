"""Attacks on the decisions that read the audit log from its checkpoint (check, restore, a
review release, the regression ratchet): each edits a real SQLite store (and the
workspace's files) by hand, never rewriting the chain to its head, with the agent's tally
counted again by hand where that helps, and asks the public interfaces whether the agent
clears. Each asserts the safe outcome. What stands in the way: the log's numbers and links
up to the checkpoint, tested by every decision inside the database, and the tallies of the
entries it reads."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from gates import (
    Loosening,
    ReviewItem,
    ReviewQueue,
    SQLiteStore,
    StoreUnavailable,
    UnvouchedReview,
    Workspace,
    check,
    contain,
    open_incident,
    ratchet_status,
    restore_blockers,
    run_gate,
    verify_audit,
)
from gates._response.check_light import light_clearance
from gates._store.backends import entry_hash
from gates._store.chain_sql import tally_key, tally_of
from tests.helpers import ACTOR, rehashed

AGENT = "refund-agent"
COLUMNS = "seq, at, actor, action, agent, reason, detail, prev_hash, hash"


def _sql(path: Path, statement: str, *values: object) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement, values)
    conn.close()


def _recount(path: Path, agent: str = AGENT) -> None:
    """The agent's tally alone counted again by hand from its rows as they are now, up to
    the checkpoint left where it is: one ``meta`` row, no store code (which would verify
    the whole chain first and refuse), the chain itself not rewritten."""
    with sqlite3.connect(path) as conn:
        point = json.loads(conn.execute(
            "SELECT value FROM meta WHERE key = 'audit_checkpoint'").fetchone()[0])
        rows = conn.execute("SELECT seq, action, hash FROM audit WHERE agent = ? AND seq <= ? "
                            "ORDER BY seq", (agent, point["seq"])).fetchall()
        conn.execute("UPDATE meta SET value = ? WHERE key = ?",
                     (tally_of([(s, a, h) for s, a, h in rows]).dumps(), tally_key(agent)))
    conn.close()


def _contained_again(ws: Workspace) -> tuple[str, int]:
    """A new incident contains the agent again after its restore; later writes (another
    agent's, as a busy store has) move the checkpoint past the containment. The incident
    and the containment's entry number."""
    incident = open_incident(ws, AGENT, summary="leaked data", severity="sev1", actor=ACTOR)
    contain(ws, incident.id, mode="suspended", notify=["eng-lead"], scope="unknown",
            actor=ACTOR)
    store = SQLiteStore(ws.state_path)
    entry = store.audit(AGENT, actions=("mode",))[-1]
    assert entry.detail.get("incident") == incident.id
    for index in range(3):
        store.append(actor="ci", action="note", agent="billing-agent", reason=f"note {index}")
    assert store.held_checkpoint() == store.head()
    return incident.id, entry.seq


def _containment_removed(ws: Workspace, incident: str, seq: int) -> None:
    """The containment's entry deleted (a gap no decision reads), the incident file
    removed, the modes row put back to full, and the agent's tally counted again."""
    _sql(ws.state_path, "DELETE FROM audit WHERE seq = ?", seq)
    ws.incidents().path(incident).unlink()
    _sql(ws.state_path, "UPDATE modes SET mode = 'full' WHERE agent = ?", AGENT)
    _recount(ws.state_path)


def _containment_rewritten(ws: Workspace, incident: str, seq: int) -> None:
    """The containment's entry rewritten in place into a repeat of the last restore (same
    count of mode entries), hashed as the store hashes (its link to the next entry now
    broken), the incident file removed, the modes row put back, the tally counted again."""
    store = SQLiteStore(ws.state_path)
    before = [e for e in store.audit(AGENT, actions=("mode",)) if e.seq < seq][-1]
    assert before.detail["mode"] == "full"
    _sql(ws.state_path, "UPDATE audit SET actor = ?, reason = ?, detail = ? WHERE seq = ?",
         before.actor, before.reason, json.dumps(before.detail, sort_keys=True), seq)
    rehashed(ws.state_path, seq)
    ws.incidents().path(incident).unlink()
    _sql(ws.state_path, "UPDATE modes SET mode = 'full' WHERE agent = ?", AGENT)
    _recount(ws.state_path)


HIDINGS: dict[str, Callable[[Workspace, str, int], None]] = {
    "removed": _containment_removed,
    "rewritten-and-rehashed": _containment_rewritten,
}


@pytest.mark.slow
@pytest.mark.attack
@pytest.mark.parametrize("hide", list(HIDINGS))
def test_a_containment_hidden_with_its_agents_tally_counted_again_by_hand_does_not_clear(
        back_in_full: Workspace, inline_cli: Callable[..., tuple[int, str, str]],
        hide: str) -> None:
    """A new containment, hidden before the checkpoint (removed, or rewritten and
    re-hashed) with only the agent's tally counted again by hand: the checkpoint's entry
    and the head are untouched and the chain is NOT rewritten to the head (the entry after
    the edit no longer follows it, or follows a gap), which is not the documented limit.
    Before decisions were made flat the checkpoint's link test refused it; now the
    tally, which has no secret, is all that stands, and it was counted to match.

    Safe outcome: `check` refuses, `reinstate check` exits non-zero, restore's conditions
    are not empty."""
    incident, seq = _contained_again(back_in_full)
    assert not check(back_in_full, AGENT).cleared
    assert inline_cli(back_in_full, "check", AGENT)[0] != 0
    HIDINGS[hide](back_in_full, incident, seq)
    # The whole log's verification names the edit ...
    assert verify_audit(SQLiteStore(back_in_full.state_path), [AGENT])
    # ... and so must every decision.
    answers = {
        "restore_blockers": restore_blockers(back_in_full, AGENT,
                                             SQLiteStore(back_in_full.state_path)) != [],
        "check refuses": not check(back_in_full, AGENT).cleared,
        "reinstate check exits non-zero": inline_cli(back_in_full, "check", AGENT)[0] != 0,
        "reinstate check (light, once learned) exits non-zero":
            inline_cli(back_in_full, "check", AGENT)[0] != 0,
        "light check does not clear": light_clearance(AGENT, back_in_full.root) is None,
    }
    assert all(answers.values()), str(answers)


@pytest.mark.slow
@pytest.mark.attack
@pytest.mark.parametrize("recount", [False, True], ids=["tally-kept", "tally-counted-again"])
def test_a_failing_verdict_hidden_before_the_checkpoint_does_not_clear(
        back_in_full: Workspace, recount: bool) -> None:
    """A later gate failed; its verdict row is deleted and its entry rewritten into an
    unrelated note (hashed as the store hashes) once later writes moved the checkpoint
    past it, so the earlier passing verdict is the latest again and its entry the agent's
    last. With the tally kept, the last verdict entry is not the one tallied (refused);
    with the agent's tally counted again by hand, nothing a decision reads differs.

    Safe outcome: `check` refuses either way."""
    store = SQLiteStore(back_in_full.state_path)
    passing = store.latest_verdict(AGENT)
    assert passing is not None
    failed = store.save_verdict(passing.model_copy(update={"outcome": "fail"}, deep=True), "ci")
    for index in range(2):
        store.append(actor="ci", action="note", agent="billing-agent", reason=f"note {index}")
    assert not check(back_in_full, AGENT).cleared
    _sql(back_in_full.state_path, "DELETE FROM verdicts WHERE id = (SELECT max(id) FROM "
                                  "verdicts)")
    _sql(back_in_full.state_path, "UPDATE audit SET action = 'note', reason = 'rotated', "
                                  "detail = '{}' WHERE seq = ?", failed.seq)
    rehashed(back_in_full.state_path, failed.seq)
    if recount:
        _recount(back_in_full.state_path)
    assert verify_audit(store, [AGENT])
    assert not check(back_in_full, AGENT).cleared


# --- the review queue: a submission entry is read by a release but tallied by nothing ---


def _call(queue: ReviewQueue) -> ReviewItem:
    return queue.submit(AGENT, kind="call", tool="issue_refund",
                        args={"order_id": "A-1001", "amount": 900},
                        rule="review.rules[0]", reason="refunds over 500 go to a person",
                        run_id="run-7", source="guard")


@pytest.mark.attack
@pytest.mark.parametrize("hide", [
    "DELETE FROM audit WHERE seq = ?",
    "UPDATE audit SET action = 'note' WHERE seq = ?",
    "UPDATE audit SET agent = 'billing-agent' WHERE seq = ?",
], ids=["removed", "action-edited", "agent-edited"])
def test_a_new_submission_hidden_behind_an_earlier_approval_of_its_id_releases_nothing(
        tmp_path: Path, hide: str) -> None:
    """A reviewer approved a refund (R-1). Its queue row is deleted by hand, and the
    queue's record of the ids it gave out with it, so the store gives the same id to the
    next item; the runtime then holds the same refund again
    (R-1 once more: a duplicate that needs its own decision). Its ``review.submit`` entry
    is hidden once later writes moved the checkpoint past it: removed (a gap in the
    numbers), or its action or agent edited with its hash left as it was (the links stay
    whole, and no decision re-hashes an entry it does not read), so the earlier
    submission and its approval would stand in. The queue row is set to approved so the
    waiting runtime wakes up.

    Safe outcome: the runtime's ``vouched`` releases nothing (pending, or refused)."""
    store = SQLiteStore(tmp_path / "state.db")
    queue = ReviewQueue(store=store)
    first = _call(queue)
    queue.approve(first.id, actor="alice", reason="customer confirmed by phone")
    _sql(store.path, "DELETE FROM reviews WHERE num = 1")
    _sql(store.path, "DELETE FROM meta WHERE key = 'reviews_issued'")
    second = _call(queue)
    assert second.id == first.id  # the same id, given again
    submit = store.audit(AGENT, actions=("review.submit",))[-1]
    for index in range(2):  # the store goes on: the checkpoint moves past the submission
        store.append(actor="ci", action="note", agent="billing-agent", reason=f"note {index}")
    assert store.held_checkpoint() == store.head()
    _sql(store.path, hide, submit.seq)
    row = second.model_copy(update={"status": "approved", "decided_by": "alice",
                                    "decision_reason": "ok",
                                    "decided_at": second.submitted_at})
    _sql(store.path, "UPDATE reviews SET status = 'approved', body = ? WHERE num = 1",
         row.model_dump_json())
    assert queue.wait(second.id, timeout_s=0).status == "approved"  # the runtime wakes up
    assert verify_audit(store, [AGENT])  # audit verify names it
    try:
        item = queue.vouched(second)
    except UnvouchedReview:
        return
    assert not item.released, (item.status, item.decided_by, item.final_args)


# --- the ratchet: approvals are read, never verified, by the gate ----------------------


def _regression_case(ws: Workspace) -> Path:
    return sorted(ws.regressions_dir(AGENT).glob("*.yaml"))[0]


def _loosened(ws: Workspace) -> list[Loosening]:
    """The first regression case's threshold lowered: the one loosening the ratchet finds,
    unapproved."""
    path = _regression_case(ws)
    data = yaml.safe_load(path.read_text())
    data["threshold"] = 0.5
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    found, _ = ratchet_status(ws, AGENT)
    assert [f.approval for f in found] == [None], found
    return found


def _forge_approval(ws: Workspace) -> tuple[int, tuple[object, ...]]:
    """The first regression case's threshold lowered, and a ``ratchet-approval`` of exactly
    that loosening written in place of an entry no decision reads (another agent's note,
    before the checkpoint), hashed as the store hashes. The entry's number and its
    original row (to put it back)."""
    found = _loosened(ws)
    store = SQLiteStore(ws.state_path)
    note = store.append(actor="ci", action="note", agent="billing-agent", reason="rotated")
    store.append(actor="ci", action="note", agent="billing-agent", reason="later")
    with sqlite3.connect(ws.state_path) as conn:
        original = conn.execute(f"SELECT {COLUMNS} FROM audit WHERE seq = ?",
                                (note.seq,)).fetchone()
    conn.close()
    detail = {"case": found[0].case, "terms": found[0].key, "from": found[0].since,
              "change": found[0].what}
    _sql(ws.state_path, "UPDATE audit SET actor = 'lead.engineer', action = 'ratchet-approval', "
                        "agent = ?, reason = 'duplicate', detail = ? WHERE seq = ?",
         AGENT, json.dumps(detail, sort_keys=True), note.seq)
    rehashed(ws.state_path, note.seq)
    return note.seq, tuple(original)


@pytest.mark.slow
@pytest.mark.attack
def test_a_forged_approval_does_not_loosen_the_regression_set(back_in_full: Workspace) -> None:
    """A loosened regression case with an approval forged in place of an unrelated entry
    (hashed as the store hashes; no ``meta`` row touched). The ratchet reads approvals
    with :func:`recorded`, which verifies nothing, so the forged approval is taken.

    Safe outcome: the ratchet errs (the log does not verify), approving nothing."""
    _forge_approval(back_in_full)
    with pytest.raises(StoreUnavailable, match="does not follow the entry before it"):
        ratchet_status(back_in_full, AGENT)


@pytest.mark.slow
@pytest.mark.attack
def test_an_approval_appended_behind_the_store_does_not_loosen_the_regression_set(
        back_in_full: Workspace) -> None:
    """A loosened regression case with an approval of exactly that loosening appended
    behind the store, hashed and linked as the store would, the log's head moved onto it
    (the checkpoint, which every write of the store moves, left where it was): the log
    still verifies up to its head, and the last verdict's entry is untouched.

    Safe outcome: the ratchet errs, naming the entry as written behind the store."""
    found = _loosened(back_in_full)
    last = SQLiteStore(back_in_full.state_path).audit()[-1]
    seq, at = last.seq + 1, datetime.now(last.at.tzinfo)
    detail = {"case": found[0].case, "terms": found[0].key, "from": found[0].since,
              "change": found[0].what}
    digest = entry_hash(seq, at, "lead.engineer", "ratchet-approval", AGENT, "duplicate",
                        detail, last.hash)
    _sql(back_in_full.state_path, f"INSERT INTO audit ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, "
                                  f"?, ?)", seq, at.isoformat(), "lead.engineer",
         "ratchet-approval", AGENT, "duplicate", json.dumps(detail, sort_keys=True), last.hash,
         digest)
    _sql(back_in_full.state_path, "UPDATE meta SET value = ? WHERE key = 'audit_head'",
         f"{seq}:{digest}")
    assert verify_audit(SQLiteStore(back_in_full.state_path), [AGENT], incremental=True)
    with pytest.raises(StoreUnavailable, match="written behind the store"):
        ratchet_status(back_in_full, AGENT)


@pytest.mark.slow
@pytest.mark.attack
def test_a_forged_approval_put_back_after_the_gate_leaves_no_loosened_set_cleared(
        back_in_full: Workspace) -> None:
    """The same forged approval, a gate run on the loosened case, and the unrelated entry
    put back as it was (the log is then whole again: every number, link and tally as the
    store wrote them). The gate's pass verdict remembers the loosened terms.

    Safe outcome: the agent is not cleared on a regression set loosened without an
    approval the store wrote (the gate's ratchet failed, so no passing verdict clears)."""
    seq, original = _forge_approval(back_in_full)
    verdict = run_gate(back_in_full, AGENT, actor="ci")
    with sqlite3.connect(back_in_full.state_path) as conn:
        conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
        conn.execute(f"INSERT INTO audit ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     original)
    conn.close()
    store = SQLiteStore(back_in_full.state_path)
    assert verify_audit(store, [AGENT]) == []  # nothing left to see
    ratchet = [c.outcome for c in verdict.checks if c.name == "regression_ratchet"]
    assert ratchet != ["pass"] or not check(back_in_full, AGENT).cleared, ratchet


@pytest.mark.attack
@pytest.mark.parametrize("mark", ["²", "9" * 5000, "9" * 20], ids=["superscript", "5000-digits",
                                                                  "past-sqlite-integers"])
def test_a_review_id_mark_edited_into_no_count_is_no_mark(tmp_path: Path, mark: str) -> None:
    """The queue's record of the ids it gave out, edited into a value that is no count
    (a digit int() does not read, more digits than int() reads, a number SQLite cannot
    hold): the next item is numbered past the rows, as with no record, never a crash."""
    store = SQLiteStore(tmp_path / "state.db")
    queue = ReviewQueue(store=store)
    first = _call(queue)
    _sql(store.path, "UPDATE meta SET value = ? WHERE key = 'reviews_issued'", mark)
    assert _call(queue).id != first.id
