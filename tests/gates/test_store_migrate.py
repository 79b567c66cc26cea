"""``reinstate store migrate``: a team's SQLite history onto PostgreSQL, chain intact."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gates import ModeRecord, PostgresStore, SQLiteStore, Workspace, read_mode
from gates._cli import main
from regressions import utc_now
from tests.gates.test_postgres_store import on_postgres

AGENT = "refund-agent"

pytestmark = pytest.mark.slow


def _run(capsys: pytest.CaptureFixture[str], ws: Workspace, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["-C", str(ws.root), *args])
    out, err = capsys.readouterr()
    return code, out + err


def _verified_head(capsys: pytest.CaptureFixture[str], ws: Workspace) -> dict[str, object]:
    code, out = _run(capsys, ws, "audit", "verify", "--json")
    assert code == 0, out
    found: dict[str, object] = json.loads(out)
    return found


def _source(ws: Workspace) -> str:
    return f"sqlite:{ws.state_path}"


def test_migration_keeps_the_chain_and_everything_the_store_holds(
        back_in_full: Workspace, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A restored workspace's modes, verdicts, audit log and head arrive unchanged: audit
    verify on PostgreSQL prints the SQLite head, and every reading is the same."""
    before = _verified_head(capsys, back_in_full)
    sqlite = SQLiteStore(back_in_full.state_path)
    code, out = _run(capsys, back_in_full, "store", "migrate", "--from", _source(back_in_full),
                     "--to", postgres_url)
    assert code == 0, out
    assert f"head {before['head']}" in out
    moved = on_postgres(back_in_full, postgres_url)
    assert _verified_head(capsys, moved) == before
    target = PostgresStore(postgres_url)
    assert target.audit() == sqlite.audit() and target.head() == sqlite.head()
    assert target.latest_verdict(AGENT) == sqlite.latest_verdict(AGENT)
    assert target.last_passing_verdict(AGENT) == sqlite.last_passing_verdict(AGENT)
    assert target.mode(AGENT) == sqlite.mode(AGENT)
    assert read_mode(moved, AGENT) == read_mode(back_in_full, AGENT, store=sqlite)
    # The copy is verified by content as it is written: the target's checkpoint and the
    # agent's tally are the source's, so check on it verifies from there.
    assert target.tally(AGENT) is not None and target.tally(AGENT) == sqlite.tally(AGENT)


def test_migrating_again_copies_only_what_is_new(
        back_in_full: Workspace, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """After the source grew, a second migration copies the new entries onto the same chain;
    a third copies nothing. Without ``--to`` the target is the workspace's ``[state] url``."""
    source = _source(back_in_full)
    assert _run(capsys, back_in_full, "store", "migrate", "--from", source, "--to",
                postgres_url)[0] == 0
    SQLiteStore(back_in_full.state_path).set_mode(ModeRecord(
        agent=AGENT, mode="review", since=utc_now(), actor="oncall", reason="again"))
    argv = ("store", "migrate", "--from", source)
    on_postgres(back_in_full, postgres_url)
    code, out = _run(capsys, back_in_full, *argv)
    assert code == 0 and "1 audit entries, 0 verdicts" in out, out
    code, out = _run(capsys, back_in_full, *argv)
    assert code == 0 and "0 audit entries, 0 verdicts" in out, out
    mode = PostgresStore(postgres_url).mode(AGENT)
    assert mode is not None and mode.mode == "review"
    tally = PostgresStore(postgres_url).tally(AGENT)
    assert tally is not None and tally == SQLiteStore(back_in_full.state_path).tally(AGENT)


def test_a_target_with_another_history_is_refused(
        back_in_full: Workspace, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A database that already holds another team's log is refused, exit 1, and left as it
    was."""
    other = PostgresStore(postgres_url)
    other.append(actor="someone", action="note", agent=None, reason="another store")
    held = other.audit()
    code, out = _run(capsys, back_in_full, "store", "migrate", "--from",
                     _source(back_in_full), "--to", postgres_url)
    assert code == 1 and "entry 1 of the target differs" in out, out
    assert other.audit() == held and other.mode(AGENT) is None


def test_a_tampered_source_is_not_migrated(
        back_in_full: Workspace, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A SQLite log edited behind the store is refused before anything is written."""
    with sqlite3.connect(back_in_full.state_path) as conn:
        conn.execute("UPDATE audit SET reason = 'routine' WHERE seq = 1")
    conn.close()
    code, out = _run(capsys, back_in_full, "store", "migrate", "--from",
                     _source(back_in_full), "--to", postgres_url)
    assert code == 1 and "entry 1: content was changed" in out, out
    assert PostgresStore(postgres_url).exists() is False


@pytest.mark.parametrize(("args", "code", "says"), [
    (("--from", "sqlite:nowhere.db", "--to", "postgresql://x@127.0.0.1:1/x"), 3,
     "--from: no SQLite state store at nowhere.db"),
    (("--from", "sqlite:.reinstate/state.db", "--to", "mysql://x/y"), 2,
     "--to: expected a postgresql:// URL"),
])
def test_bad_arguments_are_one_line(example: Workspace, capsys: pytest.CaptureFixture[str],
                                    args: tuple[str, ...], code: int, says: str) -> None:
    """A missing source or a target of another kind is one clean line and its exit code."""
    got, out = _run(capsys, example, "store", "migrate", *args)
    assert got == code and says in out and "Traceback" not in out, out
