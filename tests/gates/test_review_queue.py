"""The human review queue: the store contract every store passes, compare-and-set across
processes, waiting and expiry, and a store made before the queue existed."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest

from evalsuite import InvalidInput, ToolCall
from gates import (
    GatesError,
    Guard,
    PostgresStore,
    ReviewDecided,
    ReviewItem,
    ReviewQueue,
    SQLiteStore,
    StateStore,
    UnknownReview,
    UnvouchedReview,
    Workspace,
    hold_for_review,
    migrate_store,
)
from tests.helpers import held_refund

AGENT = "refund-agent"


def _call(queue: ReviewQueue, amount: int = 900, agent: str = AGENT) -> ReviewItem:
    return queue.submit(agent, kind="call", tool="issue_refund",
                        args={"order_id": "A-1001", "amount": amount},
                        rule="review.rules[0]", reason="refunds over 500 go to a person",
                        run_id="run-7", source="guard")


def test_submit_queues_a_pending_item_with_its_audit_entry(store: StateStore) -> None:
    """A submitted call is pending under a store-given id, listed, read back and audited."""
    queue = ReviewQueue(store=store)
    item = _call(queue)
    assert (item.id, item.status, item.released, item.decided_at) == ("R-1", "pending",
                                                                       False, None)
    assert queue.get("R-1") == item and queue.items() == [item]
    entry = store.audit()[-1]
    assert (entry.action, entry.agent, entry.actor) == ("review.submit", AGENT, "guard")
    assert entry.detail["review"] == "R-1" and entry.detail["tool"] == "issue_refund"


def test_items_are_oldest_first_and_filtered(store: StateStore) -> None:
    """Listing filters by agent and status (None: every status), oldest first."""
    queue = ReviewQueue(store=store)
    first, second = _call(queue, 600), _call(queue, 700)
    other = _call(queue, agent="billing-agent")
    out = queue.submit(AGENT, kind="output", text="Refund sent.", reason="review mode")
    queue.reject(second.id, actor="alice", reason="not the customer's order")
    assert [i.id for i in queue.items()] == [first.id, other.id, out.id]
    assert [i.id for i in queue.items(AGENT)] == [first.id, out.id]
    assert [i.id for i in queue.items(AGENT, status=None)] == [first.id, second.id, out.id]
    assert [i.id for i in queue.items(status="rejected")] == [second.id]


def test_approve_releases_the_call_as_submitted(store: StateStore) -> None:
    """An approved call is released with its own arguments, decided by the actor, audited."""
    queue = ReviewQueue(store=store)
    item = _call(queue)
    done = queue.approve(item.id, actor="alice", reason="customer confirmed by phone")
    assert done.released and done.status == "approved" and done.decided_by == "alice"
    assert done.final_args == {"order_id": "A-1001", "amount": 900}
    assert queue.get(item.id) == done and queue.items() == []
    entry = store.audit()[-1]
    assert (entry.action, entry.actor, entry.reason) == ("review.approve", "alice",
                                                         "customer confirmed by phone")


def test_a_second_decision_is_refused_and_changes_nothing(store: StateStore) -> None:
    """Compare-and-set: deciding a decided item raises ReviewDecided and writes nothing."""
    queue = ReviewQueue(store=store)
    item = _call(queue)
    done = queue.reject(item.id, actor="alice", reason="wrong order")
    entries = len(store.audit())
    with pytest.raises(ReviewDecided, match=r"R-1 was already decided: rejected by alice"):
        queue.approve(item.id, actor="bob", reason="looks fine")
    assert ReviewDecided.exit_code == 1
    assert queue.get(item.id) == done and len(store.audit()) == entries


def test_edit_releases_the_reviewers_change(store: StateStore) -> None:
    """An edited call runs with the reviewer's arguments, an edited output shows their text."""
    queue = ReviewQueue(store=store)
    call = _call(queue)
    out = queue.submit(AGENT, kind="output", text="Refunded 900.", reason="review mode",
                       rule="mode.review")
    edited = queue.edit(call.id, actor="alice", reason="cap at 500",
                        args={"order_id": "A-1001", "amount": 500})
    assert edited.released and edited.final_args == {"order_id": "A-1001", "amount": 500}
    assert edited.args == {"order_id": "A-1001", "amount": 900}
    said = queue.edit(out.id, actor="alice", reason="tone", text="Refunded 500.")
    assert said.final_text == "Refunded 500." and said.text == "Refunded 900."
    entry = store.audit()[-1]
    assert entry.action == "review.edit" and entry.detail["edited_text"] == "Refunded 500."


def test_an_edit_that_does_not_fit_the_item_is_refused(store: StateStore) -> None:
    """Text for a call (or no change at all) is bad input, and the item stays pending."""
    queue = ReviewQueue(store=store)
    item = _call(queue)
    with pytest.raises(InvalidInput, match="new arguments"):
        queue.edit(item.id, actor="alice", reason="x", text="hello")
    with pytest.raises(InvalidInput, match="a reason"):
        queue.approve(item.id, actor="alice", reason="  ")
    assert queue.get(item.id).status == "pending"


def test_an_unknown_id_is_a_gates_error(store: StateStore) -> None:
    """An id the store never gave is UnknownReview (exit 2), for reading and deciding."""
    queue = ReviewQueue(store=store)
    _call(queue)
    for act in (lambda: queue.get("R-99"), lambda: queue.get("banana"),
                lambda: queue.approve("R-2", actor="alice", reason="ok")):
        with pytest.raises(UnknownReview, match="no such item") as caught:
            act()
        assert isinstance(caught.value, GatesError) and caught.value.exit_code == 2


def test_wait_expires_an_undecided_item_at_the_timeout(store: StateStore) -> None:
    """Nobody decides: at the timeout the item is expired by reinstate, and not released."""
    queue = ReviewQueue(store=store)
    item = _call(queue)
    done = queue.wait(item.id, timeout_s=0.3, poll_s=0.05)
    assert done.status == "expired" and not done.released
    assert done.decided_by == "reinstate" and "0.3 s" in (done.decision_reason or "")
    assert store.audit()[-1].action == "review.expire"
    with pytest.raises(ReviewDecided):
        queue.approve(item.id, actor="alice", reason="too late")


def test_wait_returns_the_decision_made_elsewhere(store: StateStore) -> None:
    """A runtime waiting in one thread gets the approval a reviewer makes in another."""
    queue = ReviewQueue(store=store)
    item = _call(queue)
    timer = threading.Timer(0.3, lambda: queue.approve(item.id, actor="alice", reason="ok"))
    timer.start()
    try:
        done = queue.wait(item.id, timeout_s=30, poll_s=0.05)
    finally:
        timer.join()
    assert done.status == "approved" and done.released and done.decided_by == "alice"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_older_store_gets_the_queue_on_first_submit(kind: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    """A store made before the queue lists nothing, then gains the table on a submission."""
    if kind == "sqlite":
        store: StateStore = SQLiteStore(tmp_path / "state.db")
        store.append(actor="oncall", action="note", agent=None, reason="made before the queue")
        with sqlite3.connect(tmp_path / "state.db") as conn:
            conn.execute("DROP TABLE reviews")  # as stores made before the queue are
    else:
        url = request.getfixturevalue("postgres_url")
        store = PostgresStore(url)
        store.append(actor="oncall", action="note", agent=None, reason="made before the queue")
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute("DROP TABLE reinstate.reviews")
            pg.execute("DROP FUNCTION reinstate.review_decided_once()")
    queue = ReviewQueue(store=store)
    assert queue.items(status=None) == []
    with pytest.raises(UnknownReview):
        queue.get("R-1")
    assert _call(queue).id == "R-1" and [i.id for i in queue.items()] == ["R-1"]
    queue.approve("R-1", actor="alice", reason="ok")
    assert queue.get("R-1").released


def test_postgres_refuses_changing_a_decided_item(postgres_url: str) -> None:
    """The server itself keeps a decision: a decided row cannot be updated or deleted."""
    queue = ReviewQueue(store=PostgresStore(postgres_url))
    item = _call(queue)
    queue.reject(item.id, actor="alice", reason="no")
    for statement in ("UPDATE reinstate.reviews SET status = 'approved'",
                      "DELETE FROM reinstate.reviews", "TRUNCATE reinstate.reviews"):
        with psycopg.connect(postgres_url, autocommit=True) as conn, \
                pytest.raises(psycopg.errors.RaiseException):
            conn.execute(statement)  # type: ignore[arg-type]
    assert queue.get(item.id).status == "rejected"


def _decide_at_once(where: str, kind: str, verb: str, start: float) -> str:
    """One process's decision, taken at ``start`` (a shared wall-clock instant)."""
    store: StateStore = SQLiteStore(Path(where)) if kind == "sqlite" else PostgresStore(where)
    queue = ReviewQueue(store=store)
    time.sleep(max(0.0, start - time.time()))
    try:
        getattr(queue, verb)("R-1", actor=f"{verb}-process", reason=f"{verb} at once")
    except ReviewDecided:
        return "lost"
    return "won"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_two_processes_deciding_at_once_exactly_one_wins(kind: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest,
                                                         ) -> None:
    """Two processes approving and rejecting one item at the same instant: one decision."""
    where = (str(tmp_path / "state.db") if kind == "sqlite"
             else request.getfixturevalue("postgres_url"))
    store: StateStore = SQLiteStore(Path(where)) if kind == "sqlite" else PostgresStore(where)
    queue = ReviewQueue(store=store)
    _call(queue)
    start = time.time() + 3.0  # both spawned processes are up and waiting by then
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(2) as pool:
        results = pool.starmap(_decide_at_once, [(where, kind, "approve", start),
                                                 (where, kind, "reject", start)])
    assert sorted(results) == ["lost", "won"]
    final = queue.get("R-1")
    winner = "approve" if results[0] == "won" else "reject"
    assert final.decided_by == f"{winner}-process"
    decisions = [e for e in store.audit() if e.action in ("review.approve", "review.reject")]
    assert len(decisions) == 1 and decisions[0].actor == f"{winner}-process"


@pytest.mark.slow
def test_store_migrate_carries_the_queue_to_postgres(tmp_path: Path, postgres_url: str) -> None:
    """`store migrate` copies pending and decided items; run again, it brings a pending copy
    up to the source's decision, and the queue on PostgreSQL goes on numbering after them."""
    source = SQLiteStore(tmp_path / "state.db")
    queue = ReviewQueue(store=source)
    first, second = _call(queue, 600), _call(queue, 700)
    queue.reject(first.id, actor="alice", reason="no")
    done = migrate_store(source, PostgresStore(postgres_url))
    assert done.copied_reviews == 2
    target = ReviewQueue(store=PostgresStore(postgres_url))
    assert target.items(status=None) == queue.items(status=None)
    queue.approve(second.id, actor="bob", reason="fine")
    again = migrate_store(source, PostgresStore(postgres_url))
    assert again.copied_reviews == 1 and target.get(second.id) == queue.get(second.id)
    assert _call(target).id == "R-3"


def _swap(database: Path, item: ReviewItem, args: dict[str, object]) -> None:
    """Write ``args`` into ``item``'s row behind the queue and its audit log."""
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE reviews SET body = ? WHERE num = ?",
                     (item.model_copy(update={"args": args}).model_dump_json(),
                      int(item.id.removeprefix("R-"))))


@pytest.mark.attack
def test_arguments_swapped_in_the_row_are_flagged_and_cannot_be_approved(
        tmp_path: Path) -> None:
    """Arguments swapped in a pending row before a person looks: the queue names the row as
    not what was submitted and refuses approving or editing it (rejecting stays possible);
    a decision written past the queue, straight to the store, releases nothing either: the
    approval's audit entry chains the digest of the row, not of what the runtime held."""
    database = tmp_path / "state.db"
    store = SQLiteStore(database)
    queue = ReviewQueue(store=store)
    held, honest, other = _call(queue, 600), _call(queue, 700), _call(queue, 800)
    large = {"order_id": "A-1001", "amount": 5000}
    for item in (held, honest, other):
        _swap(database, item, large)
    _swap(database, honest, dict(honest.args or {}))  # put back before the person looks
    unlike = queue.unlike_submitted(queue.items())
    assert sorted(unlike) == [held.id, other.id]
    assert "other arguments than its runtime submitted (audit entry 1)" in unlike[held.id]
    with pytest.raises(UnvouchedReview, match=f"{held.id} was not approved: the store's row "
                                              f"shows other arguments"):
        queue.approve(held.id, actor="alice", reason="ok")
    with pytest.raises(UnvouchedReview, match=f"{held.id} was not edited"):
        queue.edit(held.id, actor="alice", reason="less", args={"amount": 1})
    assert queue.get(held.id).status == "pending"
    assert queue.reject(other.id, actor="alice", reason="not what was held").status == \
        "rejected"
    store.decide_review(held.id, status="approved", actor="alice", reason="ok")
    with pytest.raises(GatesError, match="decided other arguments than were held"):
        queue.vouched(held)
    # The row still says approved, with the swapped arguments: only the log is trusted.
    assert queue.get(held.id).final_args == large
    queue.approve(honest.id, actor="bob", reason="fine")
    vouched = queue.vouched(honest)
    assert vouched.released and vouched.final_args == {"order_id": "A-1001", "amount": 700}
    assert (vouched.decided_by, vouched.decision_reason) == ("bob", "fine")


def test_an_item_whose_submission_records_no_digest_is_not_vouched_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An item queued by a reinstate that did not chain the held arguments' digest (a store
    of before) reads as before, but approving it is refused and a decision written
    straight to the store releases nothing, saying why."""
    from gates._store import backends
    old = backends.submit_detail
    monkeypatch.setattr(backends, "submit_detail", lambda item: {
        k: v for k, v in old(item).items() if k != "args_sha256"})
    store = SQLiteStore(tmp_path / "state.db")
    queue = ReviewQueue(store=store)
    item = _call(queue)
    monkeypatch.undo()
    with pytest.raises(UnvouchedReview, match=r"records no digest of what was held"):
        queue.approve(item.id, actor="alice", reason="ok")
    store.decide_review(item.id, status="approved", actor="alice", reason="ok")
    assert queue.get(item.id).released  # the queue reads it as ever
    with pytest.raises(GatesError, match=r"records no digest of what was held \(written by an "
                                         r"older reinstate\).*submit it again"):
        queue.vouched(item)


@pytest.mark.attack
@pytest.mark.slow
def test_a_postgres_row_approved_behind_the_log_releases_nothing(
        back_in_full: Workspace, postgres_url: str) -> None:
    """With every trigger in place, a pending row of reinstate.reviews updated to approved
    with arguments the permissions deny (no person, no audit entry) releases nothing
    through the guard: the held call comes back rejected and is logged blocked."""
    migrate_store(SQLiteStore(back_in_full.state_path), PostgresStore(postgres_url))
    config = back_in_full.root / "reinstate.toml"
    config.write_text(f'{config.read_text()}\n[state]\nurl = "{postgres_url}"\n')
    ws = Workspace.find(back_in_full.root)
    forged = {"order_id": "A-1002", "amount": 5000, "refund_to": "store_credit:C-7731"}
    queue = ReviewQueue(ws)

    def forger() -> None:
        while not (pending := queue.items()):
            time.sleep(0.05)
        item = pending[0].model_copy(update={
            "args": forged, "status": "approved", "decided_by": "rita",
            "decided_at": pending[0].submitted_at, "decision_reason": "ok"})
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE reinstate.reviews SET status = 'approved', body = %s "
                         "WHERE num = %s", (item.model_dump_json(), 1))

    forging = threading.Thread(target=forger)
    forging.start()
    guard = Guard(ws.root, AGENT, log=ws.root / "guard.jsonl")
    with guard.run("forged", goal="refund order A-1002") as run:
        held = held_refund(run)
        assert run.guard.decide(ToolCall(tool="issue_refund", arguments=forged),
                                run.history, run.context).effect == "deny"
        item = hold_for_review(queue, run, held, timeout_s=60, poll_s=0.05)
    forging.join(30)
    guard.close()
    assert not item.released and item.status == "rejected"
    assert "the audit log records no decision of R-1" in (item.decision_reason or "")
    assert item.final_args != forged
    [entry] = PostgresStore(postgres_url).audit(AGENT, actions=["review.release_refused"])
    assert entry.detail["review"] == "R-1"


@pytest.mark.attack
def test_audit_verify_names_review_rows_changed_behind_the_log(tmp_path: Path) -> None:
    """`reinstate audit verify` compares each review row with its entries: arguments
    swapped in a row, a row set approved with no decision entry, and a row with no
    submission entry are each named; untouched items are not."""
    from gates._store.audit import verify_audit

    store = SQLiteStore(tmp_path / "state.db")
    queue = ReviewQueue(store=store)
    swapped, forged, honest, decided = (_call(queue, amount) for amount in (600, 700, 800, 900))
    queue.approve(decided.id, actor="alice", reason="ok")
    assert verify_audit(store, [AGENT]) == []
    with sqlite3.connect(tmp_path / "state.db") as conn:
        rows = {
            swapped.id: swapped.model_copy(update={"args": {"order_id": "A-1", "amount": 5}}),
            forged.id: forged.model_copy(update={"status": "approved", "decided_by": "x",
                                                 "decision_reason": "ok",
                                                 "decided_at": forged.submitted_at})}
        for review, row in rows.items():
            conn.execute("UPDATE reviews SET body = ?, status = ? WHERE num = ?",
                         (row.model_dump_json(), row.status, int(review.removeprefix("R-"))))
        planted = honest.model_copy(update={"id": "R-13"})  # a row with no submission
        conn.execute("INSERT INTO reviews VALUES (13, ?, 'pending', ?, ?)",
                     (AGENT, planted.submitted_at.isoformat(), planted.model_dump_json()))
    problems = [p for p in verify_audit(store, [AGENT]) if p.startswith("reviews:")]
    assert [p.split(":")[1].split()[0] for p in problems] == [swapped.id, forged.id, "R-13"]
    assert "holds other arguments than its submission" in problems[0]
    assert "is approved, but the audit log records no decision" in problems[1]
    assert "has no review.submit entry" in problems[2]
    # What check asks (from the checkpoint) is not this: the runtime trusts no row anyway.
    assert not [p for p in verify_audit(store, [AGENT], incremental=True)
                if p.startswith("reviews:")]


@pytest.mark.attack
@pytest.mark.parametrize("decision", ["approve", "edit"])
def test_a_decision_written_in_place_of_an_unrelated_entry_releases_nothing(
        tmp_path: Path, decision: str) -> None:
    """An approval (or an edit) of a held call, copied from a store where a person made it
    and written in place of an entry no decision reads, hashed as the store hashes: it
    hashes to itself and names the digest of what was held, but the next entry no longer
    follows it, so the log does not verify up to the checkpoint and the runtime releases
    nothing; ``reinstate audit verify`` names it too."""
    import json
    import shutil

    from gates._store.audit import verify_audit
    from gates._store.backends import entry_hash

    database = tmp_path / "state.db"
    store = SQLiteStore(database)
    queue = ReviewQueue(store=store)
    item = _call(queue)
    for index in range(3):
        store.append(actor="ci", action="note", agent=AGENT, reason=f"note {index}")
    elsewhere = tmp_path / "elsewhere.db"
    shutil.copy(database, elsewhere)
    other = ReviewQueue(store=SQLiteStore(elsewhere))
    if decision == "approve":
        other.approve(item.id, actor="alice", reason="ok")
    else:
        other.edit(item.id, actor="alice", reason="less", args={"order_id": "A-1001",
                                                                "amount": 9000})
    made = SQLiteStore(elsewhere).audit(AGENT, actions=(f"review.{decision}",))[-1]
    target = store.audit(AGENT, actions=("note",))[1]
    detail = json.dumps(made.detail, sort_keys=True)
    digest = entry_hash(target.seq, made.at, made.actor, made.action, made.agent, made.reason,
                        made.detail, target.prev_hash)
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE audit SET at = ?, actor = ?, action = ?, reason = ?, detail = ?, "
                     "hash = ? WHERE seq = ?", (made.at.isoformat(), made.actor, made.action,
                                                made.reason, detail, digest, target.seq))
    conn.close()
    forged = store.audit(AGENT, actions=(f"review.{decision}",))
    assert [e.seq for e in forged] == [target.seq] and forged[0].hash == digest
    with pytest.raises(UnvouchedReview, match=r"does not follow the entry before it"):
        queue.vouched(item)
    assert verify_audit(store, [AGENT])


@pytest.mark.attack
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_id_is_never_given_out_again_after_its_row_is_deleted(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The last item's row deleted behind the store: the next submission takes a new id,
    so an earlier decision on the old id (in the log) can never stand for the new item."""
    if kind == "sqlite":
        database = tmp_path / "state.db"
        store: StateStore = SQLiteStore(database)
    else:
        url = request.getfixturevalue("postgres_url")
        store = PostgresStore(url)
    queue = ReviewQueue(store=store)
    _call(queue)
    second = _call(queue, 700)
    queue.approve(second.id, actor="alice", reason="fine")
    if kind == "sqlite":
        with sqlite3.connect(database) as conn:
            conn.execute("DELETE FROM reviews WHERE num = 2")
    else:
        with psycopg.connect(url, autocommit=True) as conn:  # its owner, past the trigger
            conn.execute("ALTER TABLE reinstate.reviews DISABLE TRIGGER USER")
            conn.execute("DELETE FROM reinstate.reviews WHERE num = 2")
    again = _call(queue, 9000)
    assert again.id == "R-3" and again.status == "pending" and not again.released
    assert [i.id for i in queue.items(status=None)] == ["R-1", "R-3"]
