"""The audit checkpoint and the tallies kept with it: check, restore and mode read the log
from it, check and restore verify what they read, and no hand edit of a row a decision
reads (nor a checkpoint or tally forged to match one) lets a forged restore through."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gates import (
    ModeRecord,
    SQLiteStore,
    Workspace,
    check,
    read_mode,
    restore_blockers,
    verify_audit,
)
from gates._store.chain_sql import CHECKPOINT_VERSION, GENESIS, Tally, fold_deciding
from gates._store.mode_light import light_reading
from regressions import utc_now
from tests.helpers import learned_mode, rehashed

AGENT = "refund-agent"
COLUMNS = "seq, at, actor, action, agent, reason, detail, prev_hash, hash"


def _mode(mode: str, reason: str = "test") -> ModeRecord:
    return ModeRecord(agent=AGENT, mode=mode, since=utc_now(), actor="oncall",  # type: ignore[arg-type]
                      reason=reason)


def _history(path: Path, notes: int = 20) -> SQLiteStore:
    """A contained agent (entry 1 names INC-1), then many entries about nothing it decides."""
    store = SQLiteStore(path)
    store.set_mode(_mode("suspended", "INC-1"), detail={"incident": "INC-1"})
    for index in range(notes):
        store.append(actor="ci", action="note", agent=AGENT, reason=f"note {index}")
    return store


def _sql(path: Path, statement: str, *values: object) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement, values)
    conn.close()


def _forge_tallies(path: Path) -> None:
    """What an attacker who read the code does after an edit: count the agents' tallies
    and set the checkpoint again from the rows as they are now (with the store's own
    code), so that they match the edited rows."""
    _sql(path, "DELETE FROM meta WHERE key = 'audit_checkpoint' OR key LIKE 'audit_tally:%'")
    store = SQLiteStore(path)
    with store._writing() as conn:
        store._advance_checkpoint(conn)


def _tally(path: Path, agent: str = AGENT) -> Tally | None:
    """The agent's tally as stored with the store's checkpoint."""
    store = SQLiteStore(path)
    point = store.held_checkpoint()
    recorded = store.tally(agent)
    return None if recorded is None or recorded[0] != point else recorded[1]


def _deciding(*entries: tuple[int, str]) -> tuple[int, str]:
    """A tally's count and digest of these (number, hash) deciding entries."""
    digest = GENESIS
    for seq, entry in entries:
        digest = fold_deciding(digest, seq, entry)
    return len(entries), digest


def _restore_forged(path: Path, rehash: bool) -> None:
    """Entry 1 rewritten to a restore of INC-1 (and the modes row to match), its hash
    recomputed when ``rehash``."""
    detail = {"mode": "full", "incidents": ["INC-1"]}
    _sql(path, "UPDATE audit SET detail = ?, reason = 'restore' WHERE seq = 1",
         json.dumps(detail, sort_keys=True))
    _sql(path, "UPDATE modes SET mode = 'full'")
    if rehash:
        rehashed(path, 1)


def test_the_checkpoint_follows_every_write(tmp_path: Path) -> None:
    """After each write the checkpoint is the log's head, verified by content, and the
    agent's tally counts its mode entries and its last verdict entry up to it."""
    store = _history(tmp_path / "state.db", notes=3)
    assert store.held_checkpoint() == store.head() == (4, store.audit()[-1].hash)
    first = store.audit()[0]
    assert _tally(store.path) == Tally(_deciding((1, first.hash)), None)
    restored = store.set_mode(_mode("full"))
    assert store.held_checkpoint() == store.head() == (5, restored.hash)
    assert _tally(store.path) == Tally(_deciding((1, first.hash), (5, restored.hash)), None)
    assert verify_audit(store, [AGENT], incremental=True) == []
    # (a verdict entry with no verdict behind it: only its place in the tally matters here)
    gated = store.append(actor="ci", action="verdict", agent=AGENT, reason="gate pass")
    assert _tally(store.path) == Tally(_deciding((1, first.hash), (5, restored.hash)),
                                       (6, gated.hash))
    assert _tally(store.path, "another-agent") == Tally()  # none of its entries


def test_a_store_without_a_checkpoint_gets_one_at_its_next_write(tmp_path: Path) -> None:
    """A store written before checkpoints were kept is verified whole until its next write,
    which verifies the log by content and sets the checkpoint at the head."""
    store = _history(tmp_path / "state.db", notes=3)
    _sql(store.path, "DELETE FROM meta WHERE key = 'audit_checkpoint'")
    assert store.held_checkpoint() is None
    store.append(actor="ci", action="note", agent=None, reason="after the upgrade")
    assert store.held_checkpoint() == store.head()
    assert _tally(store.path) == Tally(_deciding((1, store.audit()[0].hash)), None)


@pytest.mark.parametrize("earlier", ["without-tallies", "tallies-without-reviews"])
def test_a_checkpoint_an_earlier_reinstate_wrote_is_read_from_but_not_verified_from(
        tmp_path: Path, earlier: str) -> None:
    """A checkpoint written before tallies were kept, or with tallies that do not count
    review entries: it still serves what only reads; a decision verifies the whole log
    (the earlier tallies are neither trusted nor taken for a removed checkpoint), and the
    next write counts every tally from the log's first entry."""
    store = _history(tmp_path / "state.db", notes=3)
    head = store.head()
    assert head is not None
    first = store.audit()[0].hash
    if earlier == "without-tallies":
        _sql(store.path, "UPDATE meta SET value = ? WHERE key = 'audit_checkpoint'",
             json.dumps({"seq": head[0], "hash": head[1], "rows": "0" * 64}))
        _sql(store.path, "DELETE FROM meta WHERE key LIKE 'audit_tally:%'")
    else:  # as reinstate wrote them before review entries were counted
        _sql(store.path, "UPDATE meta SET value = ? WHERE key = 'audit_checkpoint'",
             json.dumps({"version": 2, "seq": head[0], "hash": head[1]}))
        _sql(store.path, "UPDATE meta SET value = ? WHERE key = ?",
             json.dumps({"deciding": list(_deciding((1, first))), "verdict": None}),
             f"audit_tally:{AGENT}")
    assert store.held_checkpoint() == head
    assert store.tally(AGENT) is None
    assert verify_audit(store, [AGENT], incremental=True) == []
    assert verify_audit(store, [AGENT]) == []
    store.append(actor="ci", action="note", agent=None, reason="after the upgrade")
    assert _tally(store.path) == Tally(_deciding((1, first)), None)
    assert verify_audit(store, [AGENT], incremental=True) == []


def test_a_log_edited_behind_the_store_holds_the_checkpoint_back(tmp_path: Path) -> None:
    """Entries after the checkpoint that do not verify keep it where it was, so every later
    check verifies them again and names them."""
    store = _history(tmp_path / "state.db", notes=3)
    _sql(store.path, "UPDATE audit SET reason = 'edited' WHERE seq = 4")
    _sql(store.path, "DELETE FROM meta WHERE key = 'audit_checkpoint'")
    store.append(actor="ci", action="note", agent=None, reason="later")
    assert store.held_checkpoint() is None
    assert "entry 4: content was changed after it was written" in verify_audit(
        store, [AGENT], incremental=True)


def test_incremental_reads_skip_what_no_decision_needs(tmp_path: Path) -> None:
    """The store filters by action and position, so a reader of a few entries gets those."""
    store = _history(tmp_path / "state.db", notes=5)
    assert [e.seq for e in store.audit(AGENT, actions=("mode",))] == [1]
    assert [e.seq for e in store.audit(after=4)] == [5, 6]


def test_an_edited_row_no_decision_reads_is_named_by_the_whole_verification(
        tmp_path: Path) -> None:
    """A hand edit of a row no decision reads (a note before the checkpoint), its hash left
    as it was: the structure stays whole, so what check and restore verify (what they
    read) does not see it; `reinstate audit verify` (the whole log) names it.

    Until check was made flat in the log this edit dropped the checkpoint and check named
    it too: check then passed over every stored row's bytes."""
    store = _history(tmp_path / "state.db")
    _sql(store.path, "UPDATE audit SET reason = 'routine' WHERE seq = 3")
    assert store.held_checkpoint() == store.head()
    assert verify_audit(store, [AGENT], incremental=True) == []
    assert verify_audit(store, [AGENT]) == ["entry 3: content was changed after it was written"]


@pytest.mark.attack
@pytest.mark.parametrize("rehash", [False, True], ids=["content", "content-and-hash"])
def test_a_forged_restore_before_a_forged_checkpoint_is_caught(tmp_path: Path,
                                                               rehash: bool) -> None:
    """A containment rewritten into a restore, with the checkpoint and tallies counted
    again to match, still fails verification: every mode entry is re-hashed, and its
    link to the next is checked."""
    store = _history(tmp_path / "state.db")
    _restore_forged(store.path, rehash)
    _forge_tallies(store.path)
    problems = verify_audit(store, [AGENT], incremental=True)
    named = "entry 2: does not follow" if rehash else "entry 1: content was changed"
    assert any(p.startswith(named) for p in problems), problems


@pytest.mark.attack
def test_a_checkpoint_moved_past_a_row_written_behind_the_store_is_refused(
        tmp_path: Path) -> None:
    """A mode entry inserted behind the store after the checkpoint, with the checkpoint
    moved onto it, is caught: the checkpoint's digest no longer matches the rows."""
    store = _history(tmp_path / "state.db", notes=2)
    last = store.audit()[-1]
    _sql(store.path, f"INSERT INTO audit ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
         last.seq + 1, utc_now().isoformat(), "intruder", "mode", AGENT, "restore",
         json.dumps({"incidents": ["INC-1"], "mode": "full"}), last.hash, "f" * 64)
    _sql(store.path, "UPDATE meta SET value = ? WHERE key = 'audit_checkpoint'",
         json.dumps({"version": CHECKPOINT_VERSION, "seq": last.seq + 1, "hash": "f" * 64}))
    _sql(store.path, "UPDATE meta SET value = ? WHERE key = 'audit_head'",
         f"{last.seq + 1}:{'f' * 64}")
    # Its structure is whole: the entry follows the last and holds the hash it names.
    assert store.held_checkpoint() == (last.seq + 1, "f" * 64)
    problems = verify_audit(store, [AGENT], incremental=True)
    assert f"entry {last.seq + 1}: content was changed after it was written" in problems


@pytest.mark.slow
@pytest.mark.attack
def test_check_refuses_a_restore_forged_before_the_checkpoint(
        back_in_full: Workspace, inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """`reinstate check` refuses a containment entry rewritten by hand before
    the checkpoint with the checkpoint and tallies counted again to match."""
    with sqlite3.connect(back_in_full.state_path) as conn:
        seq = conn.execute("SELECT min(seq) FROM audit WHERE action = 'mode'").fetchone()[0]
    conn.close()
    assert inline_cli(back_in_full, "check", AGENT)[0] == 0
    _sql(back_in_full.state_path, "UPDATE audit SET reason = 'nothing happened' WHERE seq = ?",
         seq)
    _forge_tallies(back_in_full.state_path)
    code, out, err = inline_cli(back_in_full, "check", AGENT)
    assert code == 1
    assert f"entry {seq}: content was changed after it was written" in out + err
    assert read_mode(back_in_full, AGENT).mode == "full"  # the runtime reads, it does not verify


class _CountingStore(SQLiteStore):
    """The workspace's store, counting how often its checkpoint is tested."""

    tested = 0

    def held_checkpoint(self) -> tuple[int, str] | None:
        self.tested += 1
        return super().held_checkpoint()


@pytest.mark.slow
def test_one_check_reads_the_history_before_the_checkpoint_once(
        back_in_full: Workspace) -> None:
    """A check tests the checkpoint (a pass over the numbers and links up to it) once, not
    once per question it asks the log, so its cost per stored entry does not triple."""
    store = _CountingStore(back_in_full.state_path)
    assert check(back_in_full, AGENT, store=store).cleared
    assert store.tested == 1
    assert restore_blockers(back_in_full, AGENT, store) == []
    assert store.tested == 2


@pytest.mark.slow
@pytest.mark.attack
def test_a_row_edited_between_two_checks_is_caught_by_the_second(
        back_in_full: Workspace) -> None:
    """The checkpoint's test is shared within one decision only: a row edited before the
    checkpoint after one check is named by the next check on the same store object."""
    store = SQLiteStore(back_in_full.state_path)
    assert check(back_in_full, AGENT, store=store).cleared
    with sqlite3.connect(store.path) as conn:
        seq = conn.execute("SELECT min(seq) FROM audit WHERE action = 'mode'").fetchone()[0]
    conn.close()
    _sql(store.path, "UPDATE audit SET reason = 'nothing happened' WHERE seq = ?", seq)
    clearance = check(back_in_full, AGENT, store=store)
    assert not clearance.cleared
    assert any(f"entry {seq}: content was changed after it was written" in r
               for r in clearance.reasons), clearance.reasons


# --- the checkpoint's test: what every reader starts from --------------------------------

@pytest.mark.attack
@pytest.mark.parametrize("edit", [
    "DELETE FROM audit WHERE seq = 1",
    "UPDATE audit SET seq = 0 WHERE seq = 1",
    "UPDATE audit SET prev_hash = 'x' WHERE seq = 1",
    "UPDATE audit SET hash = 'x' WHERE seq = 21",
    "DELETE FROM audit WHERE seq = 21",
], ids=["first-removed", "renumbered-to-0", "first-unlinked", "checkpoint-rehashed",
        "checkpoint-removed"])
def test_a_log_not_starting_at_entry_1_or_not_holding_its_checkpoint_is_read_whole(
        tmp_path: Path, edit: str) -> None:
    """The log no longer starting at entry 1, or the checkpoint's entry gone or holding
    another hash: the checkpoint vouches for nothing, and a decision verifies the whole
    log, which names the edit."""
    store = _history(tmp_path / "state.db")
    assert store.held_checkpoint() == (21, store.audit()[-1].hash)
    _sql(store.path, edit)
    assert store.held_checkpoint() is None
    assert verify_audit(store, [AGENT], incremental=True)


@pytest.mark.attack
@pytest.mark.parametrize("edit", [
    "DELETE FROM audit WHERE seq = 5",
    "DELETE FROM audit WHERE seq BETWEEN 5 AND 9",
    "DELETE FROM audit WHERE seq = 20",
    "UPDATE audit SET prev_hash = 'x' WHERE seq = 12",
], ids=["removed", "run-removed", "last-but-one-removed", "unlinked"])
def test_an_entry_removed_or_unlinked_before_the_checkpoint_is_named_by_every_decision(
        tmp_path: Path, edit: str) -> None:
    """An entry no decision reads, removed or unlinked before the checkpoint: the checkpoint
    still holds for what only reads, but the log's numbers and links up to it are not whole,
    so a decision verifies the whole log, which names the edit."""
    store = _history(tmp_path / "state.db")
    point = store.held_checkpoint()
    assert point is not None and store.linked_to(point)
    _sql(store.path, edit)
    assert store.held_checkpoint() == point
    assert not store.linked_to(point)
    assert verify_audit(store, [AGENT], incremental=True)


@pytest.mark.attack
def test_an_entry_renumbered_past_the_checkpoint_is_read_by_every_decision(
        tmp_path: Path) -> None:
    """An entry renumbered past the checkpoint is among those every decision reads and
    verifies after it: it is named there."""
    store = _history(tmp_path / "state.db")
    _sql(store.path, "UPDATE audit SET seq = 100 WHERE seq = 5")
    problems = verify_audit(store, [AGENT], incremental=True)
    assert any(p.startswith("entry 100:") for p in problems), problems


@pytest.mark.attack
def test_a_rewritten_and_rehashed_entry_no_decision_reads_is_named_by_every_decision(
        tmp_path: Path) -> None:
    """An entry no decision reads, rewritten with its hash recomputed: its link to the next
    entry breaks, so the log is not linked up to the checkpoint and a decision verifies
    the whole log, which names it."""
    store = _history(tmp_path / "state.db")
    _sql(store.path, "UPDATE audit SET reason = 'routine' WHERE seq = 3")
    rehashed(store.path, 3)
    assert verify_audit(store, [AGENT], incremental=True) == [
        "entry 4: does not follow the entry before it"]


@pytest.mark.attack
@pytest.mark.parametrize("seq", [1, 12])
def test_a_containment_written_in_place_of_another_entry_is_not_as_tallied(
        tmp_path: Path, seq: int) -> None:
    """A restore written over the containment (entry 1), or in place of an entry no decision
    reads (entry 12), each hashed as the store hashes: the agent's mode entries are no
    longer those tallied, so the decision verifies the whole log and names it."""
    store = _history(tmp_path / "state.db")
    detail = json.dumps({"mode": "full", "incidents": ["INC-1"]}, sort_keys=True)
    _sql(store.path, "UPDATE audit SET action = 'mode', detail = ?, reason = 'restore' "
                     "WHERE seq = ?", detail, seq)
    rehashed(store.path, seq)
    problems = verify_audit(store, [AGENT], incremental=True)
    assert any(f"mode and approval entries of {AGENT}" in p for p in problems), problems


def _audit_indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE "
                                            "type = 'index' AND tbl_name = 'audit'")}
    conn.close()
    return names


def test_a_store_made_before_the_indexes_gets_them_at_its_next_write(tmp_path: Path) -> None:
    """A new store has its indexes; without them (a store made before) the test of its
    links answers the same, reading the table, and the next write adds them."""
    fresh = SQLiteStore(tmp_path / "fresh.db")
    fresh.create()
    assert _audit_indexes(fresh.path) == {"audit_chain", "audit_by_agent"}
    store = _history(tmp_path / "state.db", notes=3)
    _sql(store.path, "DROP INDEX audit_chain")
    _sql(store.path, "DROP INDEX audit_by_agent")
    head = store.head()
    assert head is not None and store.held_checkpoint() == head and store.linked_to(head)
    assert _audit_indexes(store.path) == set()
    store.append(actor="ci", action="note", agent=None, reason="after the upgrade")
    assert _audit_indexes(store.path) == {"audit_chain", "audit_by_agent"}
    head = store.head()
    assert head is not None and store.held_checkpoint() == head and store.linked_to(head)


@pytest.mark.attack
def test_an_index_of_the_chain_indexs_name_over_other_columns_is_not_relied_on(
        tmp_path: Path) -> None:
    """An index named as the store names its own but over other columns is not named in the
    test's query (SQLite would refuse it): the test reads the table and still sees a
    broken link."""
    store = _history(tmp_path / "state.db", notes=3)
    _sql(store.path, "DROP INDEX audit_chain")
    _sql(store.path, "CREATE INDEX audit_chain ON audit (agent)")
    head = store.head()
    assert head is not None and store.linked_to(head)
    _sql(store.path, "UPDATE audit SET prev_hash = 'x' WHERE seq = 3")
    assert not store.linked_to(head)


@pytest.mark.slow
def test_the_mode_never_passes_over_the_rows_before_the_checkpoint(
        back_in_full: Workspace, sql_statements: list[str]) -> None:
    """Neither the mode's full read nor its light one reads the text of the entries before
    the checkpoint beyond the agent's mode entries: after more gates, the statements they
    run read no more rows."""
    statements = sql_statements
    store = SQLiteStore(back_in_full.state_path)
    verdict = store.latest_verdict(AGENT)
    assert verdict is not None
    for _ in range(5):
        store.save_verdict(verdict.model_copy(deep=True), "ci")
    learned_mode(back_in_full)
    statements.clear()
    assert read_mode(back_in_full, AGENT).mode == "full"
    light = light_reading(AGENT, back_in_full.root)
    assert light is not None and light["mode"] == "full"
    fold_pass = re.compile(r"FROM audit WHERE seq <= \d+ ORDER BY seq")
    every_own_entry = re.compile(rf"WHERE \(?agent = '{AGENT}'\)? OR seq >")
    assert statements
    assert not [s for s in statements if fold_pass.search(s) or every_own_entry.search(s)]
    # Nor does any pass over the numbers and links of the whole log (the mode verifies
    # nothing), nor does SQLite read the table row by row for any of them (as it answers
    # an OR of two index searches).
    assert not [s for s in statements if "JOIN audit" in s]
    with sqlite3.connect(back_in_full.state_path) as conn:
        scans = [s for s in statements if s.lstrip().upper().startswith("SELECT")
                 and any("SCAN audit" in row[3]
                         for row in conn.execute(f"EXPLAIN QUERY PLAN {s}"))]
    conn.close()
    assert not scans
