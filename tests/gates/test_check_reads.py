"""What `check` verifies of the audit log now that it is flat in the log: the log's structure
up to the checkpoint, every entry after it, and every entry its decision reads, each
re-hashed and exactly those the store tallied as it wrote them.

Each attack edits, hides, removes, reorders or inserts an entry a decision reads (the
agent's containment, its restore, its last verdict entry), with and without the chain made
whole again after it, and brings the rest of the store in line (the modes row, the verdicts
table), so that only the log's tamper evidence stands between it and a clearance: check (in
process, its light path and the command) and restore must refuse, and `reinstate audit
verify` must name it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gates import ModeRecord, SQLiteStore, Workspace, check, restore_blockers, verify_audit
from gates._response.check_facts import remember_check_inputs
from gates._response.check_light import light_clearance
from gates._store.backends import entry_hash
from gates._store.chain_sql import dump_checkpoint
from regressions import utc_now
from tests.helpers import relinked

pytestmark = pytest.mark.slow

AGENT = "refund-agent"
COLUMNS = "seq, at, actor, action, agent, reason, detail, prev_hash, hash"
FULL = json.dumps({"mode": "full"}, sort_keys=True)

Attack = Callable[[sqlite3.Connection, int], None]


def _run(path: Path, attack: Attack, seq: int) -> None:
    with sqlite3.connect(path) as conn:
        attack(conn, seq)
    conn.close()


def _last(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT max(seq) FROM audit").fetchone()[0])


@pytest.fixture
def held_by_hand(back_in_full: Workspace) -> tuple[Workspace, int]:
    """The restored example, then put in review by hand (no incident: nothing but the log
    and the modes row holds it), and a few entries no decision reads after that: the
    workspace and the number of the containment's entry."""
    store = SQLiteStore(back_in_full.state_path)
    held = store.set_mode(ModeRecord(agent=AGENT, mode="review", since=utc_now(),
                                     actor="oncall", reason="watching it"))
    for index in range(3):
        store.append(actor="ci", action="note", agent=AGENT, reason=f"note {index}")
    store.append(actor="ci", action="note", agent=None, reason="about nobody")
    assert not check(back_in_full, AGENT).cleared
    remember_check_inputs(back_in_full, AGENT)  # so that check's light path is tried
    return back_in_full, held.seq


def _hidden(column: str, value: str) -> Attack:
    def attack(conn: sqlite3.Connection, seq: int) -> None:
        conn.execute(f"UPDATE audit SET {column} = ? WHERE seq = ?", (value, seq))
    return attack


def _rewritten_to_full(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("UPDATE audit SET detail = ?, reason = 'restore' WHERE seq = ?", (FULL, seq))


def _whole_again(attack: Attack, checkpoint: str = "moved") -> Attack:
    """``attack``, then the chain made whole again from the entry it edited on, and the
    checkpoint ``moved`` onto the new last entry, ``left`` as it was, or ``removed``."""
    def whole(conn: sqlite3.Connection, seq: int) -> None:
        attack(conn, seq)
        relinked(conn, seq, checkpoint=checkpoint == "moved")
        if checkpoint == "removed":
            conn.execute("DELETE FROM meta WHERE key = 'audit_checkpoint'")
    return whole


def _removed(conn: sqlite3.Connection, seq: int) -> None:
    """The containment deleted, every later entry numbered one down, the chain made whole."""
    conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    for number in range(seq + 1, _last(conn) + 1):
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (number - 1, number))
    relinked(conn, seq)


def _reordered(conn: sqlite3.Connection, seq: int) -> None:
    """The containment and the restore before it swapped, so that the restore is the last
    mode entry; the chain made whole from the earlier of the two."""
    (earlier,) = conn.execute("SELECT max(seq) FROM audit WHERE action = 'mode' AND agent = ? "
                              "AND seq < ?", (AGENT, seq)).fetchone()
    fields = "at, actor, action, agent, reason, detail"
    first = conn.execute(f"SELECT {fields} FROM audit WHERE seq = ?", (earlier,)).fetchone()
    second = conn.execute(f"SELECT {fields} FROM audit WHERE seq = ?", (seq,)).fetchone()
    update = ("UPDATE audit SET at = ?, actor = ?, action = ?, agent = ?, reason = ?, "
              "detail = ? WHERE seq = ?")
    conn.execute(update, (*second, earlier))
    conn.execute(update, (*first, seq))
    relinked(conn, earlier)


def _forged_row(seq: int, prev: str) -> tuple[object, ...]:
    at = utc_now()
    digest = entry_hash(seq, at, "mallory", "mode", AGENT, "restore", {"mode": "full"}, prev)
    return (seq, at.isoformat(), "mallory", "mode", AGENT, "restore", FULL, prev, digest)


def _inserted(conn: sqlite3.Connection, seq: int) -> None:
    """A restore inserted right after the containment, every later entry numbered one up,
    the chain made whole."""
    for number in range(_last(conn), seq, -1):
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (number + 1, number))
    conn.execute(f"INSERT INTO audit ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 _forged_row(seq + 1, "0" * 64))
    relinked(conn, seq + 1)


def _appended(moved: bool) -> Attack:
    """A restore appended at the end, hashed as the store hashes, the head moved onto it
    (and the checkpoint, when ``moved``; the tallies are not counted again)."""
    def attack(conn: sqlite3.Connection, seq: int) -> None:
        last = _last(conn)
        (prev,) = conn.execute("SELECT hash FROM audit WHERE seq = ?", (last,)).fetchone()
        row = _forged_row(last + 1, prev)
        conn.execute(f"INSERT INTO audit ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'",
                     (f"{last + 1}:{row[8]}",))
        if moved:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_checkpoint'",
                         (dump_checkpoint(last + 1, str(row[8])),))
    return attack


CONTAINMENT_ATTACKS: dict[str, Attack] = {
    "hidden (action edited)": _hidden("action", "note"),
    "hidden (agent edited)": _hidden("agent", "another-agent"),
    "hidden (action edited), chain made whole": _whole_again(_hidden("action", "note")),
    "hidden (agent edited), chain made whole": _whole_again(_hidden("agent", "another-agent")),
    "hidden, chain made whole, the checkpoint left as it was":
        _whole_again(_hidden("action", "note"), checkpoint="left"),
    "hidden, chain made whole, the checkpoint removed":
        _whole_again(_hidden("action", "note"), checkpoint="removed"),
    "rewritten to a restore": _rewritten_to_full,
    "rewritten to a restore, chain made whole": _whole_again(_rewritten_to_full),
    "removed, later entries renumbered, chain made whole": _removed,
    "swapped with the restore before it, chain made whole": _reordered,
    "a restore inserted after it, later entries renumbered, chain made whole": _inserted,
    "a restore appended behind the store": _appended(moved=False),
    "a restore appended, the checkpoint moved onto it": _appended(moved=True),
}


def _assert_refused(ws: Workspace, inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """check refuses in process, light and as a command, naming the log; restore's
    conditions name it; `reinstate audit verify` names it."""
    clearance = check(ws, AGENT)
    assert not clearance.cleared
    assert any(r.startswith("the audit log does not verify") for r in clearance.reasons), \
        clearance.reasons
    assert light_clearance(AGENT, ws.root) is None
    code, out, err = inline_cli(ws, "check", AGENT)
    assert code == 1, out + err
    store = SQLiteStore(ws.state_path)
    assert any(b.startswith("the audit log does not verify")
               for b in restore_blockers(ws, AGENT, store))
    code, out, err = inline_cli(ws, "audit", "verify")
    assert code == 1, out + err


@pytest.mark.attack
@pytest.mark.parametrize("attack", list(CONTAINMENT_ATTACKS))
def test_a_containment_taken_out_of_the_log_does_not_clear(
        held_by_hand: tuple[Workspace, int], attack: str,
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """The agent's containment (the last mode entry, which the modes row must match) hidden
    from its decisions, rewritten, removed, put before a restore, or followed by a forged
    restore, with the modes row set to full to match: check refuses."""
    ws, seq = held_by_hand
    _run(ws.state_path, CONTAINMENT_ATTACKS[attack], seq)
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute("UPDATE modes SET mode = 'full', reason = 'restore' WHERE agent = ?",
                     (AGENT,))
    conn.close()
    _assert_refused(ws, inline_cli)


@pytest.mark.parametrize("recounted", [True, False], ids=["recounted", "removed"])
def test_a_log_rewritten_with_its_tallies_is_caught_by_an_anchor(
        held_by_hand: tuple[Workspace, int], recounted: bool) -> None:
    """The boundary: whoever rewrites the chain after the containment and counts the
    checkpoint and the tallies again with the store's own code (the chain has no secret),
    or removes them (a store then looks made before tallies), clears the agent, as before
    check was flat in the log; an anchor kept elsewhere (a verdict, a CI log) names the
    rewrite."""
    ws, seq = held_by_hand
    store = SQLiteStore(ws.state_path)
    anchor = (seq, store.audit()[seq - 1].hash)
    _run(ws.state_path, _whole_again(_hidden("action", "note")), seq)
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute("UPDATE modes SET mode = 'full' WHERE agent = ?", (AGENT,))
        conn.execute("DELETE FROM meta WHERE key = 'audit_checkpoint' OR "
                     "key LIKE 'audit_tally:%'")
    conn.close()
    if recounted:
        with store._writing() as conn:
            store._advance_checkpoint(conn)
    assert check(ws, AGENT).cleared
    assert verify_audit(store, [AGENT]) == []
    problems = verify_audit(store, [AGENT], anchors=[anchor])
    assert problems == [f"entry {seq}: hash {store.audit()[seq - 1].hash[:12]}… differs from "
                        f"its anchor {anchor[1][:12]}…: the log was rewritten"]


# --- the verdict: a failing gate after a passing one, taken out of the log ----------------


@pytest.fixture
def failed_after_pass(back_in_full: Workspace) -> tuple[Workspace, int]:
    """The restored example whose latest gate failed on today's files (after the passing
    one): the workspace and the number of the failing verdict's entry."""
    store = SQLiteStore(back_in_full.state_path)
    passed = store.latest_verdict(AGENT)
    assert passed is not None
    failed = store.save_verdict(passed.model_copy(deep=True, update={"outcome": "fail"}), "ci")
    assert not check(back_in_full, AGENT).cleared
    remember_check_inputs(back_in_full, AGENT)
    return back_in_full, failed.seq


def _verdict_row_removed(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM verdicts WHERE id = (SELECT max(id) FROM verdicts)")


def _verdict_hidden(whole: bool) -> Attack:
    def attack(conn: sqlite3.Connection, seq: int) -> None:
        _verdict_row_removed(conn)
        conn.execute("UPDATE audit SET action = 'note' WHERE seq = ?", (seq,))
        if whole:
            relinked(conn, seq)
    return attack


def _verdict_entry_removed(conn: sqlite3.Connection, seq: int) -> None:
    """The failing verdict and its entry (the log's last) deleted, the head and the
    checkpoint put back on the entry before (its tally left as it is)."""
    _verdict_row_removed(conn)
    conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    (prev,) = conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq - 1,)).fetchone()
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{seq - 1}:{prev}",))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_checkpoint'",
                 (dump_checkpoint(seq - 1, prev),))


def _verdict_rewritten(conn: sqlite3.Connection, seq: int) -> None:
    """The failing verdict's row given the passing verdict's text and its entry the passing
    verdict's record (outcome and digest), the chain made whole."""
    (passed,) = conn.execute("SELECT detail FROM audit WHERE action = 'verdict' AND seq < ? "
                             "ORDER BY seq DESC LIMIT 1", (seq,)).fetchone()
    (text,) = conn.execute("SELECT body FROM verdicts WHERE id = (SELECT max(id) - 1 FROM "
                           "verdicts)").fetchone()
    conn.execute("UPDATE verdicts SET body = ?, outcome = 'pass' WHERE id = (SELECT max(id) "
                 "FROM verdicts)", (text,))
    conn.execute("UPDATE audit SET detail = ?, reason = 'gate pass' WHERE seq = ?",
                 (passed, seq))
    relinked(conn, seq)


VERDICT_ATTACKS: dict[str, Attack] = {
    "hidden (action edited)": _verdict_hidden(whole=False),
    "hidden (action edited), chain made whole": _verdict_hidden(whole=True),
    "removed from the end, head and checkpoint put back": _verdict_entry_removed,
    "rewritten to the passing one's, chain made whole": _verdict_rewritten,
}


@pytest.mark.attack
@pytest.mark.parametrize("attack", list(VERDICT_ATTACKS))
def test_a_failing_verdict_taken_out_of_the_log_does_not_clear(
        failed_after_pass: tuple[Workspace, int], attack: str,
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """The latest (failing) verdict removed from the verdicts table and its entry hidden,
    removed or rewritten, so that the passing verdict before it looks like the latest:
    check refuses."""
    ws, seq = failed_after_pass
    _run(ws.state_path, VERDICT_ATTACKS[attack], seq)
    _assert_refused(ws, inline_cli)
