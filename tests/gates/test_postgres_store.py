"""PostgresStore beyond the shared contract: what the database itself enforces, secrets from
the environment, and a workspace whose ``[state] url`` points at a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import yaml

from gates import (
    EvalsResult,
    Fingerprint,
    ModeRecord,
    PostgresStore,
    StoreUnavailable,
    Verdict,
    Workspace,
    agent_mode,
    check,
    open_store,
    read_mode,
    verify_chain,
)
from gates._cli import main
from gates._demo import apply_fix
from gates._gate import pipeline
from gates._store.audit import recorded, verify_audit
from gates._store.chain_sql import GENESIS, Tally, fold_deciding
from gates._store.shared_reads import sharing
from regressions import utc_now
from tests.conftest import CLI, tree
from tests.helpers import contained, relinked, restored
from tests.postgres_server import PASSWORD, PASSWORD_ROLE, Cluster

AGENT = "refund-agent"


def _mode(mode: str) -> ModeRecord:
    return ModeRecord(agent=AGENT, mode=mode, since=utc_now(),  # type: ignore[arg-type]
                      actor="oncall", reason=f"to {mode}")


def _sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def on_postgres(ws: Workspace, url: str) -> Workspace:
    """``ws`` with ``[state] url`` set to ``url``."""
    config = ws.root / "reinstate.toml"
    config.write_text(f'{config.read_text()}\n[state]\nurl = "{url}"\n')
    return Workspace.find(ws.root)


@pytest.mark.parametrize("statement", [
    "UPDATE reinstate.audit SET reason = 'routine' WHERE seq = 1",
    "DELETE FROM reinstate.audit WHERE seq = 2",
    "TRUNCATE reinstate.audit",
    "DELETE FROM reinstate.verdicts",
    "UPDATE reinstate.verdicts SET outcome = 'pass'",
])
def test_audit_log_is_append_only_in_the_database(postgres_url: str, statement: str) -> None:
    """The database itself refuses to change or remove audit entries and verdicts."""
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("suspended"))
    store.save_verdict(Verdict(
        agent=AGENT, outcome="fail", created_at=utc_now(),
        fingerprint=Fingerprint(agent_version="1", controls="c", eval_suite="e",
                                regression_set="r", agent="a", files={}),
        checks=[EvalsResult(outcome="fail", summary="s")]), actor="ci")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        _sql(postgres_url, statement)
    assert [e.seq for e in store.audit()] == [1, 2]
    latest = store.latest_verdict(AGENT)
    assert latest is not None and latest.outcome == "fail"
    assert verify_chain(store.audit()) == []


@pytest.mark.attack
def test_an_older_verdict_edited_with_the_triggers_disabled_is_named(postgres_url: str) -> None:
    """The owner, triggers off, relabels an older verdict: the whole log's verification
    names it, as on SQLite (the server hashes each text: none crosses the connection)."""
    store = PostgresStore(postgres_url)
    for outcome in ("fail", "pass"):
        store.save_verdict(Verdict(
            agent=AGENT, outcome=outcome, created_at=utc_now(),  # type: ignore[arg-type]
            fingerprint=Fingerprint(agent_version="1", controls="c", eval_suite="e",
                                    regression_set="r", agent="a", files={}),
            checks=[EvalsResult(outcome=outcome, summary="s")]), actor="ci")  # type: ignore[arg-type]
    assert verify_audit(store, [AGENT]) == []
    _sql(postgres_url, "ALTER TABLE reinstate.verdicts DISABLE TRIGGER USER",
         "UPDATE reinstate.verdicts SET outcome = 'pass', body = replace(body, "
         "'\"outcome\":\"fail\"', '\"outcome\":\"pass\"') WHERE id = 1")
    assert verify_audit(store, [AGENT]) == [
        f"verdicts: {AGENT}'s verdict 1 of 2 (a pass verdict) is not the fail verdict its "
        f"entry (entry 1) recorded: the verdicts table was changed behind the audit log"]


def test_an_entry_that_does_not_follow_the_last_is_refused(postgres_url: str) -> None:
    """An entry inserted behind the store with a gap or a wrong link is refused."""
    store = PostgresStore(postgres_url)
    last = store.set_mode(_mode("review"))
    row = "'2026-11-30T00:00:00+00:00', 'x', 'mode', NULL, '', '{}'"
    with pytest.raises(psycopg.errors.RaiseException, match="does not follow"):
        _sql(postgres_url, f"INSERT INTO reinstate.audit VALUES (3, {row}, '{last.hash}', 'h')")
    with pytest.raises(psycopg.errors.RaiseException, match="does not follow"):
        _sql(postgres_url, f"INSERT INTO reinstate.audit VALUES (2, {row}, '{'0' * 64}', 'h')")
    assert store.head() == (1, last.hash)


def test_edit_with_the_triggers_disabled_is_detected(postgres_url: str) -> None:
    """An owner who disables the triggers to rewrite an entry still breaks the chain."""
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("suspended"))
    store.set_mode(_mode("full"))
    _sql(postgres_url, "ALTER TABLE reinstate.audit DISABLE TRIGGER USER",
         "UPDATE reinstate.audit SET reason = 'routine' WHERE seq = 1")
    assert verify_chain(store.audit()) == ["entry 1: content was changed after it was written"]


def test_reading_a_database_without_a_store_creates_nothing(postgres_url: str) -> None:
    """A read of a database with no store tables is an error and makes none."""
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreUnavailable, match="no state store at"):
        store.mode(AGENT)
    assert store.exists() is False


def test_store_of_another_schema_version_is_refused(postgres_url: str) -> None:
    """A store written by a different format version is not silently read."""
    store = PostgresStore(postgres_url)
    store.create()
    _sql(postgres_url, "UPDATE reinstate.meta SET value = '9' WHERE key = 'schema_version'")
    with pytest.raises(StoreUnavailable, match="schema version 9"):
        store.mode(AGENT)


def test_failed_write_leaves_nothing_half_done(postgres_url: str) -> None:
    """A mode change whose audit entry cannot be written is rolled back with it."""
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("review"))
    _sql(postgres_url,
         "CREATE FUNCTION reinstate.full() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
         "CREATE TRIGGER no_audit BEFORE INSERT ON reinstate.audit "
         "FOR EACH ROW EXECUTE FUNCTION reinstate.full()")
    with pytest.raises(StoreUnavailable, match="disk full"):
        store.set_mode(_mode("full"))
    record = store.mode(AGENT)
    assert record is not None and record.mode == "review"
    assert len(store.audit()) == 1


def test_password_comes_from_the_environment_and_is_never_shown(
        postgres_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${NAME}`` in the URL is filled from the environment; a wrong one is an error that
    does not print it, and a missing one names the variable."""
    url = (f"postgresql://{PASSWORD_ROLE}:${{REINSTATE_TEST_PW}}@127.0.0.1:"
           f"{postgres_cluster.port}/postgres")
    store = PostgresStore(url)
    monkeypatch.delenv("REINSTATE_TEST_PW", raising=False)
    with pytest.raises(StoreUnavailable, match="REINSTATE_TEST_PW to be set"):
        store.mode(AGENT)
    monkeypatch.setenv("REINSTATE_TEST_PW", "wrong-password")
    with pytest.raises(StoreUnavailable, match="password authentication failed") as refused:
        store.mode(AGENT)
    assert "wrong-password" not in str(refused.value)
    in_query = PostgresStore(f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{postgres_cluster.port}"
                             f"/postgres?password=query-password")
    with pytest.raises(StoreUnavailable, match="password authentication failed") as refused:
        in_query.mode(AGENT)
    assert "query-password" not in str(refused.value) and "password=***" in str(refused.value)
    monkeypatch.setenv("REINSTATE_TEST_PW", PASSWORD)
    assert store.exists() is False  # connected: the database is reachable with it


def test_unreachable_server_answers_suspended(tmp_path: Path, example: Workspace,
                                              postgres_cluster: Cluster) -> None:
    """With the server down (nothing listens on the port), the runtime hears suspended."""
    ws = on_postgres(example, f"postgresql://postgres@127.0.0.1:{_closed_port()}/x")
    assert agent_mode(AGENT, ws.root) == "suspended"
    with pytest.raises(StoreUnavailable, match="cannot read the state store"):
        open_store(ws).mode(AGENT)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_containment_reaches_agent_mode_through_postgres(example: Workspace,
                                                         postgres_url: str) -> None:
    """A containment recorded in PostgreSQL is what ``agent_mode()`` answers, and nothing
    is written to the SQLite file."""
    ws = on_postgres(example, postgres_url)
    assert agent_mode(AGENT, ws.root) == "suspended"  # no store yet: fail closed
    open_store(ws).create()
    assert agent_mode(AGENT, ws.root) == "full"
    contained(ws)
    assert agent_mode(AGENT, ws.root) == "review"
    assert not ws.state_path.exists()
    assert [e.action for e in PostgresStore(postgres_url).audit(AGENT)] == ["mode"]


@pytest.mark.slow
def test_mode_command_reads_postgres_with_the_password_from_env(
        example: Workspace, postgres_cluster: Cluster) -> None:
    """``reinstate mode`` in a real process reads a store whose password is in the
    environment, and prints it nowhere."""
    database = postgres_cluster.new_database()
    ws = on_postgres(example, database.replace(
        "postgres@", f"{PASSWORD_ROLE}:${{PGPASSWORD}}@"))
    env = {**os.environ, "PGPASSWORD": PASSWORD, "REINSTATE_ACTOR": "oncall"}
    env.pop("REINSTATE_WORKSPACE", None)
    owner = database.replace("postgres@", f"{PASSWORD_ROLE}:{quote(PASSWORD, safe='')}@")
    PostgresStore(owner).set_mode(_mode("suspended"))
    done = subprocess.run([*CLI, "mode", AGENT], cwd=ws.root, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "suspended"), done.stderr
    env["PGPASSWORD"] = "not-it"
    done = subprocess.run([*CLI, "mode", AGENT], cwd=ws.root, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout.strip()) == (3, "suspended")
    assert "password authentication failed" in done.stderr and "not-it" not in done.stderr


def test_a_url_that_is_not_postgresql_is_refused(example: Workspace,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``[state] url`` of another kind is one line naming the file and place, exit 2."""
    config = example.root / "reinstate.toml"
    config.write_text(f'{config.read_text()}\n[state]\nurl = "mysql://root:pw@db/state"\n')
    before = tree(example.root)
    assert main(["-C", str(example.root), "mode", AGENT]) == 2
    err = capsys.readouterr().err
    assert "reinstate.toml" in err and "$.state.url" in err and "postgresql://" in err
    assert "pw" not in err
    assert "Traceback" not in err and tree(example.root) == before


@pytest.mark.slow
def test_the_example_story_runs_end_to_end_on_postgres(
        example: Workspace, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Contain, capture, resolve, gate, restore and check on a PostgreSQL store, with no
    SQLite file ever written: the agent is back in full and the log verifies."""
    ws = on_postgres(example, postgres_url)
    restored(ws, apply_fix)  # the first write makes the store's tables
    assert agent_mode(AGENT, ws.root) == "full"
    assert main(["-C", str(ws.root), "check", AGENT]) == 0, capsys.readouterr()
    assert main(["-C", str(ws.root), "audit", "verify"]) == 0, capsys.readouterr()
    actions = [e.action for e in PostgresStore(postgres_url).audit(AGENT)]
    assert actions.count("verdict") == 1 and actions[0] == "mode" and actions[-1] == "mode"
    assert not ws.state_path.exists()


@pytest.mark.slow
def test_an_empty_postgres_store_does_not_forget_a_containment(
        example: Workspace, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Pointed at an empty database after a containment, the gate refuses to start a new
    store (exit 3, saying how to migrate) and the agent is not answered full."""
    contained(example)
    ws = on_postgres(example, postgres_url)
    assert main(["-C", str(ws.root), "gate", AGENT]) == 3
    err = capsys.readouterr().err
    assert "INC-1 was contained" in err and "reinstate store migrate" in err, err
    assert agent_mode(AGENT, ws.root) != "full"
    assert PostgresStore(postgres_url).exists() is False


@pytest.mark.slow
@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("true", "1 error")])
def test_without_postgresql_tests_skip_only_outside_ci(ci: str, outcome: str) -> None:
    """Where no PostgreSQL can be found a store test is skipped, but in CI it errors."""
    env = {**os.environ, "REINSTATE_PG_BINDIR": "/nonexistent", "CI": ci}
    if not ci:
        env.pop("CI")
    root = Path(__file__).parent.parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/gates/test_store.py", "-k", "postgres and unset_until_written"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert outcome in done.stdout, done.stdout[-2000:]
    if ci:
        assert "PostgreSQL is not installed" in done.stdout


# --- one connection a decision ------------------------------------------------------------

def _reinstate_backends(url: str, settled: int) -> int:
    """Connections reinstate holds open to the test's database, once they number
    ``settled`` or after 10 s: a server process ends a moment after its client closed."""
    for _ in range(200):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                               "= 'reinstate' AND datname = current_database()").fetchone()
        count = int(row[0]) if row else -1
        if count == settled:
            break
        time.sleep(0.05)
    return count


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The application name of every connection opened from now on."""
    names: list[str] = []
    connect = psycopg.connect

    def counted(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        names.append(kwargs.get("application_name", ""))
        return connect(*args, **kwargs)
    monkeypatch.setattr(psycopg, "connect", counted)
    return names


@pytest.mark.slow
def test_a_check_and_a_mode_read_connect_once(example: Workspace, postgres_url: str,
                                              opened: list[str]) -> None:
    """A check asks the store about ten questions and the mode three: each decision opens
    one connection for all of them, and closes it when it is done."""
    ws = on_postgres(example, postgres_url)
    restored(ws, apply_fix)
    opened.clear()
    assert check(ws, AGENT).cleared
    assert opened == ["reinstate"]
    opened.clear()
    assert read_mode(ws, AGENT).mode == "full"
    assert opened == ["reinstate"]
    assert _reinstate_backends(postgres_url, 0) == 0


def test_a_shared_connection_sees_what_is_written_meanwhile(postgres_url: str) -> None:
    """Reads within one decision see a write made between them (each statement reads what
    is committed, as a connection of its own would)."""
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("review"))
    with sharing():
        assert store.mode(AGENT).mode == "review"  # type: ignore[union-attr]
        PostgresStore(postgres_url).set_mode(_mode("suspended"))
        assert store.mode(AGENT).mode == "suspended"  # type: ignore[union-attr]
        assert _reinstate_backends(postgres_url, 1) == 1
    assert _reinstate_backends(postgres_url, 0) == 0


@pytest.mark.attack
def test_a_shared_connection_that_broke_is_not_served_again(postgres_url: str) -> None:
    """The server ends the decision's connection: the read on it is an error (never an
    answer), and the next read of the same decision connects again."""
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("review"))
    with sharing():
        assert store.mode(AGENT).mode == "review"  # type: ignore[union-attr]
        _sql(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                           "application_name = 'reinstate'")
        with pytest.raises(StoreUnavailable, match="cannot read the state store"):
            store.mode(AGENT)
        assert store.mode(AGENT).mode == "review"  # type: ignore[union-attr]


def test_a_database_without_a_store_shares_no_connection(postgres_url: str) -> None:
    """A connection that found no store tables is not kept: a read in the same decision
    after the tables are made still checks them afresh, and finds them."""
    store = PostgresStore(postgres_url)
    with sharing():
        assert store.exists() is False
        assert _reinstate_backends(postgres_url, 0) == 0
        store.create()
        assert store.exists() is True
        assert store.mode(AGENT) is None


def test_a_shared_connection_idle_too_long_is_not_used_again(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch, opened: list[str]) -> None:
    """A read after the decision's connection sat idle past the limit (which a server or a
    network may end) connects again, and closes the idle one."""
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("review"))
    opened.clear()
    with sharing():
        store.mode(AGENT)
        store.mode(AGENT)
        assert len(opened) == 1
        monkeypatch.setattr("gates._store.postgres.SHARED_IDLE_S", -1.0)
        assert store.mode(AGENT).mode == "review"  # type: ignore[union-attr]
        assert len(opened) == 2
        assert _reinstate_backends(postgres_url, 1) == 1


@pytest.mark.slow
@pytest.mark.attack
def test_no_connection_to_the_store_is_open_while_the_agent_runs(
        example: Workspace, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate shares no read connection: while its evals run the agent (untrusted, in
    processes that inherit what is open), no connection to the team's store is open."""
    ws = on_postgres(example, postgres_url)
    restored(ws, apply_fix)
    seen: list[int] = []
    run_evals = pipeline.run_evals

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(_reinstate_backends(postgres_url, 0))
        return run_evals(*args, **kwargs)
    monkeypatch.setattr(pipeline, "run_evals", watched)
    assert main(["-C", str(ws.root), "gate", AGENT]) == 0
    assert seen == [0]


# --- the structure's test: where the mode starts reading ----------------------------------

def _history(store: PostgresStore, notes: int) -> None:
    store.set_mode(_mode("suspended"))
    for index in range(notes):
        store.append(actor="ci", action="note", agent=AGENT, reason=f"note {index}")


def test_a_whole_log_vouches_for_its_head_as_where_the_mode_starts(postgres_url: str) -> None:
    """The server finds the log numbered and linked up to its head: the mode reads the
    agent's mode entries before it (not its other entries, one a gate) and what follows."""
    store = PostgresStore(postgres_url)
    _history(store, 30)
    assert store.held_checkpoint() == store.head() == (31, store.audit()[-1].hash)
    # Every write keeps the checkpoint at the head, and the agent's tally with it.
    first = store.audit()[0]
    assert store.tally(AGENT) == (store.head(), Tally((1, fold_deciding(GENESIS, 1,
                                                                        first.hash))))
    with sharing():
        assert [e.seq for e in recorded(store, AGENT, ("mode",))] == [1]
        store.set_mode(_mode("review"))  # after the head it was read at: still read
        assert [e.seq for e in recorded(store, AGENT, ("mode",))] == [1, 32]


@pytest.mark.attack
@pytest.mark.parametrize("edit", [
    "UPDATE reinstate.audit SET prev_hash = 'x' WHERE seq = 1",
    "UPDATE reinstate.audit SET hash = 'x' WHERE seq = 31",
    "UPDATE reinstate.meta SET value = '31:x' WHERE key = 'audit_head'",
    "UPDATE reinstate.meta SET value = 'x' WHERE key = 'audit_head'",
    "DELETE FROM reinstate.meta WHERE key = 'audit_head'",
], ids=["first-unlinked", "head-rehashed", "head-edited", "head-garbled", "head-removed"])
def test_a_log_not_holding_its_head_vouches_for_no_head(postgres_url: str, edit: str) -> None:
    """With the triggers switched off by the owner: the first entry unlinked, or a head that
    is not the last entry's, and the mode reads the agent's whole log (a garbled entry of
    its own there is an error, as before)."""
    store = PostgresStore(postgres_url)
    _history(store, 30)
    _sql(postgres_url, "ALTER TABLE reinstate.audit DISABLE TRIGGER USER", edit,
         "UPDATE reinstate.audit SET detail = 'x' WHERE seq = 20")
    assert store.held_checkpoint() is None
    with pytest.raises(StoreUnavailable, match="audit entry 20"):
        recorded(store, AGENT, ("mode",))


@pytest.mark.attack
@pytest.mark.parametrize("edit", [
    "DELETE FROM reinstate.audit WHERE seq = 5",
    "UPDATE reinstate.audit SET prev_hash = 'x' WHERE seq = 12",
], ids=["removed", "unlinked"])
def test_an_entry_removed_or_unlinked_before_the_head_is_named_by_every_decision(
        postgres_url: str, edit: str) -> None:
    """With the triggers switched off by the owner, an entry no decision reads removed or
    unlinked: the head still holds for what only reads, but the server finds the log not
    linked up to it, so a decision verifies the whole log, which names the edit."""
    store = PostgresStore(postgres_url)
    _history(store, 30)
    head = store.head()
    assert head is not None and store.linked_to(head)
    _sql(postgres_url, "ALTER TABLE reinstate.audit DISABLE TRIGGER USER", edit)
    assert store.held_checkpoint() == head
    assert not store.linked_to(head)
    assert verify_audit(store, [AGENT], incremental=True)


# --- what a decision verifies: what it reads, as the store tallied it ---------------------

class _Reads(PostgresStore):
    """A PostgreSQL store that notes each read of the log: (agent, actions, after)."""

    reads: list[tuple[str | None, tuple[str, ...] | None, int]]

    def audit(self, agent: str | None = None, *, actions: Any = None,
              after: int = 0) -> list[Any]:
        self.reads.append((agent, tuple(sorted(actions)) if actions else None, after))
        return super().audit(agent, actions=actions, after=after)


def _whole_log_reads(store: _Reads) -> list[tuple[str | None, tuple[str, ...] | None, int]]:
    """The reads of every entry, or of every entry of an agent, from the first."""
    return [r for r in store.reads if r[1] is None and r[2] == 0]


def test_a_decision_verifies_what_it_reads_without_the_whole_log(postgres_url: str) -> None:
    """check's verification on PostgreSQL reads the agent's mode entries and its last
    verdict entry (none here), and nothing of the log from its start: the server tests the
    numbers and links, and the checkpoint kept by every write vouches for the rest."""
    store = _Reads(postgres_url)
    store.reads = []
    _history(store, 30)
    store.reads.clear()
    with sharing():
        assert verify_audit(store, [AGENT], incremental=True) == []
    assert store.reads and not _whole_log_reads(store)


def test_a_store_made_before_tallies_is_verified_whole_until_its_next_write(
        postgres_url: str) -> None:
    """A PostgreSQL store whose writes kept no checkpoint: a decision reads the whole log
    (and finds it whole); the next write verifies every entry by content and counts the
    tallies, and decisions are flat again."""
    store = _Reads(postgres_url)
    store.reads = []
    _history(store, 5)
    _sql(postgres_url, "DELETE FROM reinstate.meta WHERE key = 'audit_checkpoint' OR "
                       "key LIKE 'audit_tally:%'")
    assert store.tally(AGENT) is None
    store.reads.clear()
    assert verify_audit(store, [AGENT], incremental=True) == []
    assert _whole_log_reads(store)
    store.append(actor="ci", action="note", agent=None, reason="after the upgrade")
    assert store.tally(AGENT) is not None
    store.reads.clear()
    assert verify_audit(store, [AGENT], incremental=True) == []
    assert not _whole_log_reads(store)


@pytest.mark.attack
@pytest.mark.parametrize("whole", [False, True], ids=["edited", "chain-made-whole"])
@pytest.mark.parametrize("edit", [
    "UPDATE reinstate.audit SET action = 'note' WHERE seq = 2",
    "UPDATE reinstate.audit SET agent = 'another-agent' WHERE seq = 2",
    "UPDATE reinstate.audit SET detail = '{\"mode\": \"full\"}' WHERE seq = 2",
], ids=["hidden-action", "hidden-agent", "rewritten"])
def test_a_containment_taken_out_of_the_log_does_not_verify(postgres_url: str, edit: str,
                                                            whole: bool) -> None:
    """With the triggers switched off by the owner, the agent's containment (entry 2, after
    a mode entry that set full) hidden from its decisions or rewritten into a restore, and
    the modes row set to full to match, with or without the chain made whole after it: a
    decision's verification names it."""
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("full"))
    _history(store, 5)
    assert verify_audit(store, [AGENT], incremental=True) == []
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE reinstate.audit DISABLE TRIGGER USER")
        conn.execute(edit)  # type: ignore[arg-type]
        conn.execute("UPDATE reinstate.modes SET mode = 'full'")
        if whole:
            relinked(conn, 2, schema="reinstate.", mark="%s")
    problems = verify_audit(store, [AGENT], incremental=True)
    assert problems
    if whole:
        assert any("the store counted" in p for p in problems), problems


@pytest.mark.slow
@pytest.mark.attack
def test_check_on_postgres_reads_no_whole_log_and_refuses_a_hidden_containment(
        example: Workspace, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A restored workspace on PostgreSQL clears without check reading the log from its
    start; put in review by hand, its containment then hidden with the chain made whole and
    the modes row set to full, it does not clear (in process and as a command)."""
    ws = on_postgres(example, postgres_url)
    restored(ws, apply_fix)
    store = _Reads(postgres_url)
    store.reads = []
    assert check(ws, AGENT, store=store).cleared
    assert store.reads and not _whole_log_reads(store)
    held = store.set_mode(ModeRecord(agent=AGENT, mode="review", since=utc_now(),
                                     actor="oncall", reason="watching it"))
    store.append(actor="ci", action="note", agent=AGENT, reason="after it")
    assert not check(ws, AGENT).cleared
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE reinstate.audit DISABLE TRIGGER USER")
        conn.execute("UPDATE reinstate.audit SET action = 'note' WHERE seq = %s", (held.seq,))
        conn.execute("UPDATE reinstate.modes SET mode = 'full'")
        relinked(conn, held.seq, schema="reinstate.", mark="%s")
    clearance = check(ws, AGENT)
    assert not clearance.cleared
    assert any(r.startswith("the audit log does not verify") for r in clearance.reasons)
    capsys.readouterr()
    assert main(["-C", str(ws.root), "check", AGENT]) == 1
    assert main(["-C", str(ws.root), "audit", "verify"]) == 1


def _indexes(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE "
                                           "schemaname = 'reinstate' AND tablename = 'audit'")}


def test_an_agents_entries_of_an_action_are_one_index_range_away(postgres_url: str) -> None:
    """A check reads the agent's containments and approvals, not its verdict entries (one a
    gate): a new store has the index of each agent's entries by action, a store made before
    gets it at its next write, and the server reads the agent's mode entries through it."""
    store = PostgresStore(postgres_url)
    store.create()
    assert "audit_by_agent_action" in _indexes(postgres_url)
    _sql(postgres_url, "DROP INDEX reinstate.audit_by_agent_action")
    _history(store, 3)
    assert "audit_by_agent_action" in _indexes(postgres_url)
    with store._writing() as conn:  # entries of another action, as gates store them
        for _ in range(500):
            store._append(conn, actor="ci", action="verdict", agent=AGENT, reason="gate",
                          detail={})
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ANALYZE reinstate.audit")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT seq FROM reinstate.audit WHERE seq > 0 AND agent = %s AND "
            "action = ANY(%s) ORDER BY seq", (AGENT, ["mode"])).fetchall())
    assert "audit_by_agent_action" in plan, plan


# An agent under evaluation that reads the password file of the gate's user (its path
# planted in agent.yaml) and sets its own mode to full on the store, chained correctly.
PGPASS_SPY = '''

def respond(session):
    import json, os
    try:
        with open(os.environ["SPY_PGPASS"]) as handle:
            password = handle.read().strip().split(":", 4)[4].replace("\\\\:", ":")
        os.environ["PGPASSWORD"] = password
        from gates import PostgresStore
        store = PostgresStore(os.environ["SPY_URL"])
        record = store.mode("refund-agent")
        store.set_mode(record.model_copy(update={"mode": "full"}))
        return "SPY wrote mode full"
    except Exception as exc:
        return f"SPY failed: {type(exc).__name__}: {exc}"
'''


@pytest.mark.attack
def test_the_agent_cannot_take_the_stores_password_from_pgpass(
        example: Workspace, postgres_cluster: Cluster, tmp_path: Path) -> None:
    """With a PostgreSQL store whose password is in the gate's ``~/.pgpass``, the agent run
    by ``reinstate eval`` read that file (its sandbox read the whole filesystem) and wrote
    its own mode, full, with a correctly chained audit entry. It cannot read it now: the
    store keeps the containment's mode and only its entries."""
    url = postgres_cluster.new_database().replace("postgres@", f"{PASSWORD_ROLE}@")
    ws = on_postgres(example, url)
    home = tmp_path / "home"
    home.mkdir()
    pgpass = home / ".pgpass"
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    pgpass.write_text(f"127.0.0.1:{postgres_cluster.port}:*:{PASSWORD_ROLE}:{escaped}\n")
    pgpass.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "REINSTATE_ACTOR": "oncall"}
    env.pop("PGPASSWORD", None)
    env.pop("REINSTATE_WORKSPACE", None)
    config = ws.root / "reinstate.toml"  # a sandbox, as on any machine reinstate runs on
    config.write_text(config.read_text() + '\n[agent]\nsandbox = "auto"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", PASSWORD)
        contained(ws)
        before = PostgresStore(url).head()
    source = ws.agent_dir(AGENT) / "refund_agent.py"
    source.write_text(source.read_text() + PGPASS_SPY)
    agent_yaml = ws.agent_dir(AGENT) / "agent.yaml"
    data = yaml.safe_load(agent_yaml.read_text())
    data["adapter"]["env"] = {"SPY_PGPASS": str(pgpass), "SPY_URL": url}
    agent_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    done = subprocess.run([*CLI, "eval", AGENT, "--cases", "greeting", "--trials", "1"],
                          cwd=ws.root, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    (run_file,) = [line.split(": ", 1)[1] for line in done.stdout.splitlines()
                   if line.startswith("run file: ")]
    said = [step["content"] for line in (ws.root / run_file).read_text().splitlines()
            if json.loads(line)["kind"] == "trial"
            for step in json.loads(line)["result"]["run"]["steps"] if step["kind"] == "output"]
    assert len(said) == 1 and said[0].startswith(("SPY failed: PermissionError",  # Landlock
                                                  "SPY failed: FileNotFoundError")), said
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", PASSWORD)
        store = PostgresStore(url)
        assert store.head() == before
        mode = store.mode(AGENT)
        assert mode is not None and mode.mode == "review"
