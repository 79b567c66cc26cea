"""Faults of the PostgreSQL state store: the connection lost inside a write, and processes
on different connections writing at once. What was recorded before is compared with what
is there after, read with a plain psycopg connection."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from gates import PostgresStore, Workspace, verify_chain
from tests.faults.conftest import (
    Cli,
    Faults,
    Recorded,
    _argv,
    _env,
    assert_kept,
    recorded,
    reinstate,
)
from tests.gates.test_postgres_store import on_postgres

pytestmark = pytest.mark.slow

AGENT = "refund-agent"
CONTAIN = ["contain", "INC-2", "--mode", "suspended", "--notify", "legal,compliance,eng-lead",
           "--scope", "one refund"]


@pytest.fixture
def pg(ws: Workspace, cli: Cli, postgres_url: str) -> tuple[Workspace, str]:
    """The captured workspace moved onto PostgreSQL (its SQLite file gone), with a second
    incident opened and not yet contained."""
    moved = cli(ws, "store", "migrate", "--from", f"sqlite:{ws.state_path}", "--to",
                postgres_url)
    assert moved.code == 0, moved.err
    shutil.rmtree(ws.state_path.parent)
    on = on_postgres(ws, postgres_url)
    opened = cli(on, "incident", "open", AGENT, "--severity", "sev3", "--summary", "another")
    assert opened.code == 0, opened.err
    return on, postgres_url


def recorded_pg(ws: Workspace, url: str) -> Recorded:
    """The workspace's files, and the store's rows as a plain connection reads them."""
    with psycopg.connect(url) as conn:
        modes = dict(conn.execute("SELECT agent, mode FROM reinstate.modes").fetchall())
        verdicts = [r[0] for r in conn.execute("SELECT body FROM reinstate.verdicts ORDER BY id")]
        audit = [tuple(r) for r in conn.execute("SELECT * FROM reinstate.audit ORDER BY seq")]
    return Recorded(recorded(ws, store=False).files, modes, verdicts, audit)


def test_connection_lost_mid_write_is_exit_3_and_nothing_half_written(
        pg: tuple[Workspace, str], faults: Faults) -> None:
    """The server drops the connection after the rows are written, before the commit: the
    containment and the gate exit 3, the agent is said NOT contained, nothing of either is
    in the store, and the mode still reads as it was."""
    faults.inject("PostgreSQL connection lost inside the containment transaction")
    faults.inject("PostgreSQL connection lost inside the verdict transaction")
    ws, url = pg
    before = recorded_pg(ws, url)
    done = reinstate(ws, CONTAIN, ["gate", AGENT], ["mode", AGENT], fault="pg-connection-lost")
    printed, _, codes = done.stdout.rpartition("exit codes:")
    assert codes.split() == ["3", "3", "0"], done.stdout + done.stderr
    assert f"{AGENT} is NOT contained" in done.stderr
    assert "cannot write the state store" in done.stderr
    assert printed.strip().splitlines()[-1] == "review"
    after = recorded_pg(ws, url)
    assert after.audit == before.audit and after.verdicts == before.verdicts
    assert_kept(before, after, grown=frozenset({"incidents/INC-2.yaml"}))


def _at_once(ws: Workspace, gun: Path, commands: list[list[str]]) -> list[tuple[int, str]]:
    """Start one process per command, wait until all are ready, release them together."""
    read, write = os.pipe()
    with gun.open("wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = [subprocess.Popen(
            _argv("start-gun", (command,)), cwd=ws.root, pass_fds=(write,),
            env=_env({"FAULT_SIGNAL_FD": str(write), "START_GUN": str(gun)}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for command in commands]
        os.close(write)
        ready = b""
        while len(ready) < len(commands):
            chunk = os.read(read, len(commands))
            assert chunk, "a process died before it was ready"
            ready += chunk
        os.close(read)
        fcntl.flock(held, fcntl.LOCK_UN)
    return [(p.wait(timeout=300), p.communicate()[0]) for p in started]


def test_two_gates_and_a_containment_at_once(pg: tuple[Workspace, str], faults: Faults,
                                             cli: Cli, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    """Two gates and a containment from three processes at once: the containment lands
    once, each gate either stores its verdict once (exit 1) or, when the containment came
    while it ran, stores none (exit 3), all on one unbroken chain, and audit verify
    passes."""
    faults.inject("two gates and a containment on PostgreSQL at once")
    ws, url = pg
    before = recorded_pg(ws, url)
    results = _at_once(ws, tmp_path / "start.gun", [["gate", AGENT], ["gate", AGENT], CONTAIN])
    codes = [output.strip().splitlines()[-1] for _, output in results]
    assert codes[2] == "exit codes: 0", results
    stored = 0
    for code, (_, output) in zip(codes[:2], results, strict=False):
        # Which of the two a gate meets depends on when the containment landed.
        assert code in ("exit codes: 1", "exit codes: 3"), results
        if code == "exit codes: 3":
            assert "was contained while its gate ran" in output, output
        stored += code == "exit codes: 1"
    after = recorded_pg(ws, url)
    assert len(after.verdicts) == len(before.verdicts) + stored
    assert len(after.audit) == len(before.audit) + stored + 1
    assert after.modes[AGENT] == "suspended"
    assert_kept(before, after, modes=False, grown=frozenset({"incidents/INC-2.yaml"}))
    assert cli(ws, "audit", "verify").code == 0
    assert PostgresStore(url).head() == (after.audit[-1][0], after.audit[-1][8])
    request.node.user_properties.append(("writers", (3, stored + 1)))


_WRITER = """
import sys
from gates import ModeRecord, PostgresStore
from regressions import utc_now
store = PostgresStore(sys.argv[1])
for n in range(int(sys.argv[3])):
    mode = ("suspended", "review", "full")[n % 3]
    record = ModeRecord(agent=sys.argv[2], mode=mode, since=utc_now(), actor=sys.argv[2],
                        reason=str(n))
    if n % 2:
        store.tighten_mode(record)
    else:
        store.set_mode(record)
    store.append(actor=sys.argv[2], action="note", agent=None, reason=str(n))
"""


def test_many_writers_keep_one_unbroken_chain(postgres_url: str, faults: Faults,
                                              request: pytest.FixtureRequest) -> None:
    """Six processes, each on its own connections, make the store's tables and write 60
    entries at once: every entry lands once, numbered without gaps, on a chain that
    verifies up to the recorded head."""
    faults.inject("six writers on one PostgreSQL store at once")
    writers, rounds = 6, 5
    started = [subprocess.Popen([sys.executable, "-c", _WRITER, postgres_url, f"agent-{n}",
                                 str(rounds)], stderr=subprocess.PIPE, text=True)
               for n in range(writers)]
    for process in started:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    store = PostgresStore(postgres_url)
    entries = store.audit()
    assert [e.seq for e in entries] == list(range(1, writers * rounds * 2 + 1))
    assert verify_chain(entries) == []
    assert store.head() == (entries[-1].seq, entries[-1].hash)
    for n in range(writers):
        mine = [e for e in entries if e.actor == f"agent-{n}"]
        assert [e.reason for e in mine] == [str(r) for r in range(rounds) for _ in (1, 2)]
    request.node.user_properties.append(("writers", (writers, writers * rounds * 2)))
