"""The state store contract, passed by every store, and the audit log's tamper evidence."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from gates import (
    AuditEntry,
    EvalsResult,
    Fingerprint,
    MemoryStore,
    ModeRecord,
    PostgresStore,
    Refused,
    SQLiteStore,
    StateStore,
    StoreUnavailable,
    Verdict,
    verify_chain,
)
from regressions import utc_now


def _verdict(outcome: str = "pass", agent: str = "refund-agent") -> Verdict:
    return Verdict(
        agent=agent, outcome=outcome, created_at=utc_now(),  # type: ignore[arg-type]
        fingerprint=Fingerprint(agent_version="1.4.0", controls="c", eval_suite="e",
                                regression_set="r", agent="a", files={"agents/x.yaml": "1"}),
        checks=[EvalsResult(outcome=outcome, summary="s")],  # type: ignore[arg-type]
    )


def _mode(mode: str, agent: str = "refund-agent") -> ModeRecord:
    return ModeRecord(agent=agent, mode=mode, since=utc_now(),  # type: ignore[arg-type]
                      actor="oncall", reason=f"to {mode}")


def test_mode_is_unset_until_written(store: StateStore) -> None:
    """An agent never contained has no recorded mode."""
    if isinstance(store, SQLiteStore | PostgresStore):
        store.create()
    assert store.mode("refund-agent") is None


def test_tighten_mode_keeps_the_stricter_mode(store: StateStore) -> None:
    """A containment asking for review leaves a suspended agent suspended, and says so."""
    store.set_mode(_mode("suspended"))
    entry, mode = store.tighten_mode(_mode("review"), detail={"incident": "INC-2"})
    assert mode == "suspended" and entry.detail == {"mode": "suspended", "incident": "INC-2"}
    record = store.mode("refund-agent")
    assert record is not None and record.mode == "suspended"


def test_replace_mode_refuses_a_mode_changed_since_it_was_read(store: StateStore) -> None:
    """Compare-and-set: a restore based on a stale reading is refused and writes nothing."""
    store.set_mode(_mode("review"))
    seen = store.mode("refund-agent")
    store.set_mode(_mode("suspended"))
    with pytest.raises(Refused, match="it is now suspended"):
        store.replace_mode(_mode("full"), expected=seen)
    record = store.mode("refund-agent")
    assert record is not None and record.mode == "suspended"
    assert len(store.audit()) == 2
    current = store.mode("refund-agent")
    store.replace_mode(_mode("full"), expected=current)
    restored = store.mode("refund-agent")
    assert restored is not None and restored.mode == "full"


def test_head_follows_every_write(store: StateStore) -> None:
    """The recorded head is the last entry's number and hash after each kind of write."""
    for write in (lambda: store.set_mode(_mode("review")),
                  lambda: store.save_verdict(_verdict(), actor="ci"),
                  lambda: store.append(actor="oncall", action="note", agent=None, reason="x")):
        entry = write()
        assert store.head() == (entry.seq, entry.hash)


def test_verdict_is_stamped_with_the_head_before_it(store: StateStore) -> None:
    """A stored verdict carries the log's last entry before its own, and reads back equal."""
    first = store.set_mode(_mode("review"))
    verdict = _verdict()
    store.save_verdict(verdict, actor="ci")
    assert verdict.audit_head is not None
    assert (verdict.audit_head.seq, verdict.audit_head.hash) == (first.seq, first.hash)
    assert store.latest_verdict("refund-agent") == verdict


def test_set_mode_is_read_back_and_audited(store: StateStore) -> None:
    """A mode change is visible at once and leaves an audit entry with actor and reason."""
    entry = store.set_mode(_mode("review"), detail={"incident": "INC-1"})
    record = store.mode("refund-agent")
    assert record is not None and record.mode == "review" and record.actor == "oncall"
    assert (entry.action, entry.agent, entry.reason) == ("mode", "refund-agent", "to review")
    assert entry.detail == {"mode": "review", "incident": "INC-1"}
    assert entry.at.utcoffset() == timedelta(0)


def test_latest_verdict_is_per_agent(store: StateStore) -> None:
    """The latest verdict of each agent is kept apart from other agents'."""
    store.save_verdict(_verdict("fail"), actor="ci")
    store.save_verdict(_verdict("pass", agent="billing-agent"), actor="ci")
    store.save_verdict(_verdict("pass"), actor="ci")
    latest = store.latest_verdict("refund-agent")
    assert latest is not None and latest.outcome == "pass" and latest.agent == "refund-agent"
    assert store.latest_verdict("nobody") is None


def test_verdict_texts_back_from_the_latest_are_the_agents_own(store: StateStore) -> None:
    """``latest_verdict_text(agent, back)`` is the agent's verdict that many before its
    latest, as its entry records it, and None past its first (what the ratchet walks back
    through when the last gate recorded no terms)."""
    store.save_verdict(_verdict("fail"), actor="ci")
    store.save_verdict(_verdict("pass", agent="billing-agent"), actor="ci")
    store.save_verdict(_verdict("pass"), actor="ci")
    entries = store.audit("refund-agent", actions={"verdict"})
    texts = [store.latest_verdict_text("refund-agent", back) for back in range(3)]
    assert texts[2] is None and texts[0] == store.latest_verdict_text("refund-agent")
    assert [hashlib.sha256(str(t).encode()).hexdigest() for t in texts[:2]] == [
        e.detail["sha256"] for e in reversed(entries)]


def test_latest_verdict_sha256_is_the_digest_of_the_stored_text(store: StateStore) -> None:
    """The latest verdict's digest, read without the verdict, is its stored text's SHA-256
    and the one its audit entry records."""
    store.save_verdict(_verdict("fail"), actor="ci")
    store.save_verdict(_verdict("pass", agent="billing-agent"), actor="ci")
    verdict = _verdict("pass")
    store.save_verdict(verdict, actor="ci")
    latest = store.latest_verdict("refund-agent")
    assert latest is not None
    digest = store.latest_verdict_sha256("refund-agent")
    assert digest == hashlib.sha256(latest.stored_text().encode()).hexdigest()
    assert digest == hashlib.sha256(verdict.model_dump_json().encode()).hexdigest()
    assert digest != store.latest_verdict_sha256("billing-agent")
    assert store.audit("refund-agent", actions={"verdict"})[-1].detail["sha256"] == digest
    assert store.latest_verdict_sha256("nobody") is None


def test_latest_verdict_sha256_covers_a_long_text_beyond_ascii(store: StateStore) -> None:
    """The digest of a stored verdict of many kilobytes, written in more than ASCII, is its
    whole text's UTF-8 SHA-256, as its audit entry records."""
    verdict = _verdict("fail")
    verdict.checks = [EvalsResult(outcome="fail", summary="café ✓ 日本 " * 20_000)]
    store.save_verdict(verdict, actor="ci")
    text = store.latest_verdict_text("refund-agent")
    assert text is not None and len(text.encode()) > 300_000
    digest = store.latest_verdict_sha256("refund-agent")
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    assert digest == hashlib.sha256(verdict.model_dump_json().encode()).hexdigest()
    assert store.audit("refund-agent", actions={"verdict"})[-1].detail["sha256"] == digest


def test_last_passing_verdict_skips_failures_and_other_agents(store: StateStore) -> None:
    """The last passing verdict is the newest pass of that agent, before a time when given."""
    first = _verdict("pass")
    store.save_verdict(first, actor="ci")
    second = _verdict("pass").model_copy(update={"created_at": first.created_at
                                                 + timedelta(minutes=1)})
    store.save_verdict(second, actor="ci")
    store.save_verdict(_verdict("pass", agent="billing-agent").model_copy(
        update={"created_at": first.created_at + timedelta(minutes=2)}), actor="ci")
    failing = _verdict("fail").model_copy(update={"created_at": first.created_at
                                                  + timedelta(minutes=3)})
    store.save_verdict(failing, actor="ci")
    assert store.last_passing_verdict("refund-agent") == second
    assert store.last_passing_verdict("refund-agent", before=second.created_at) == first
    assert store.last_passing_verdict("refund-agent", before=first.created_at) is None
    assert store.last_passing_verdict("nobody") is None


def test_audit_log_is_numbered_and_chained(store: StateStore) -> None:
    """Entries are numbered from 1 without gaps and each links to the one before."""
    store.set_mode(_mode("review"))
    store.save_verdict(_verdict(), actor="ci")
    store.append(actor="oncall", action="note", agent=None, reason="handover")
    entries = store.audit()
    assert [e.seq for e in entries] == [1, 2, 3]
    assert verify_chain(entries) == []
    assert [e.action for e in store.audit("refund-agent")] == ["mode", "verdict"]


def _tampered(entries: list[AuditEntry], how: str) -> list[AuditEntry]:
    if how == "edited":
        return [entries[0], entries[1].model_copy(update={"reason": "gate pass"}), entries[2]]
    if how == "removed":
        return [entries[0], entries[2]]
    return [entries[1], entries[0], entries[2]]


@pytest.mark.parametrize(("how", "names"), [
    ("edited", "entry 2: content was changed"),
    ("removed", "entry 3: expected number 2"),
    ("reordered", "entry 2: expected number 1"),
])
def test_tampering_with_the_audit_log_is_named(how: str, names: str) -> None:
    """An edited, removed or reordered entry is detected and the entry named."""
    store = MemoryStore()
    store.set_mode(_mode("review"))
    store.save_verdict(_verdict("fail"), actor="ci")
    store.set_mode(_mode("full"))
    problems = verify_chain(_tampered(store.audit(), how))
    assert any(p.startswith(names) for p in problems), problems


def test_sqlite_edit_behind_the_store_is_detected(tmp_path: Path) -> None:
    """Rewriting an audit row with sqlite directly breaks the chain."""
    store = SQLiteStore(tmp_path / "state.db")
    store.set_mode(_mode("suspended"))
    store.set_mode(_mode("full"))
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("UPDATE audit SET reason = 'routine' WHERE seq = 1")
    assert verify_chain(store.audit()) == ["entry 1: content was changed after it was written"]


def test_reading_a_missing_store_never_creates_it(tmp_path: Path) -> None:
    """A read of a store that does not exist is an error and leaves no file behind."""
    store = SQLiteStore(tmp_path / "state.db")
    with pytest.raises(StoreUnavailable, match="no state store"):
        store.mode("refund-agent")
    assert not (tmp_path / "state.db").exists()


def test_corrupt_store_is_unavailable(tmp_path: Path) -> None:
    """A file that is not a SQLite database is reported as unavailable, not as no data."""
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    store = SQLiteStore(path)
    with pytest.raises(StoreUnavailable):
        store.mode("refund-agent")
    with pytest.raises(StoreUnavailable):
        store.set_mode(_mode("review"))


def test_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    """A store written by a different format version is not silently read."""
    store = SQLiteStore(tmp_path / "state.db")
    store.create()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    with pytest.raises(StoreUnavailable, match="schema version 9"):
        store.mode("refund-agent")


def test_failed_write_leaves_nothing_half_done(tmp_path: Path) -> None:
    """A mode change whose audit entry cannot be written is rolled back with it."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    store.set_mode(_mode("review"))
    with sqlite3.connect(path) as conn:  # make the next audit insert fail inside the transaction
        conn.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN "
                     "SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(StoreUnavailable, match="disk full"):
        store.set_mode(_mode("full"))
    record = store.mode("refund-agent")
    assert record is not None and record.mode == "review"
