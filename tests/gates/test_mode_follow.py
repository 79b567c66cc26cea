"""``reinstate mode AGENT --follow``: a runtime hears each mode change as it commits."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator

import psycopg
import pytest

from gates import ModeRecord, PostgresStore, Refused, Workspace, open_store
from gates._cli import main
from regressions import utc_now
from tests.conftest import CLI
from tests.gates.test_postgres_store import on_postgres
from tests.helpers import contained

AGENT = "refund-agent"

pytestmark = pytest.mark.slow


class Follower:
    """A ``reinstate mode --follow`` process and the lines it printed."""

    def __init__(self, ws: Workspace, *args: str) -> None:
        env = {**os.environ, "REINSTATE_ACTOR": "runtime"}
        env.pop("REINSTATE_WORKSPACE", None)
        self.process = subprocess.Popen([*CLI, "mode", AGENT, "--follow", *args], cwd=ws.root,
                                        env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def next(self) -> str:
        """The next line, waiting at most 30 s."""
        try:
            return self.lines.get(timeout=30)
        except queue.Empty:
            self.process.kill()
            raise AssertionError(f"no line; stderr: {self.process.communicate()[1]}") from None


@pytest.fixture
def follower(example: Workspace, postgres_url: str) -> Iterator[tuple[Workspace, Follower]]:
    """A workspace on PostgreSQL and a follower of its refund agent, stopped at the end."""
    ws = on_postgres(example, postgres_url)
    open_store(ws).create()
    running = Follower(ws)
    yield ws, running
    if running.process.poll() is None:
        running.process.kill()
        running.process.communicate()


def _mode(mode: str, agent: str = AGENT) -> ModeRecord:
    return ModeRecord(agent=agent, mode=mode, since=utc_now(),  # type: ignore[arg-type]
                      actor="oncall", reason=f"to {mode}")


def test_follower_prints_each_change_of_its_agent(
        follower: tuple[Workspace, Follower], postgres_url: str) -> None:
    """The mode now, then one line per committed change of this agent: none for another
    agent's change, none for a compare-and-set that was refused."""
    ws, running = follower
    assert running.next() == "full"
    contained(ws)
    assert running.next() == "review"
    store = PostgresStore(postgres_url)
    store.set_mode(_mode("suspended", agent="billing-agent"))
    stale = store.mode(AGENT)
    store.set_mode(_mode("suspended"))
    assert running.next() == "suspended"
    with pytest.raises(Refused):
        store.replace_mode(_mode("full"), expected=stale)
    store.tighten_mode(_mode("review"))  # stays suspended, and says so again
    assert running.next() == "suspended"
    assert running.lines.empty()


def test_a_lost_connection_prints_suspended_and_exits_3(
        follower: tuple[Workspace, Follower], postgres_url: str) -> None:
    """When the server drops the follower's connection it fails closed: suspended, exit 3."""
    _ws, running = follower
    assert running.next() == "full"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'reinstate' AND pid <> pg_backend_pid()")
    assert running.next() == "suspended"
    assert running.process.wait(timeout=30) == 3
    assert "cannot follow the state store" in running.process.communicate()[1]


def test_follow_needs_a_postgresql_store(example: Workspace,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """On the SQLite store ``--follow`` is one line saying what it needs, exit 2."""
    assert main(["-C", str(example.root), "mode", AGENT, "--follow"]) == 2
    err = capsys.readouterr().err
    assert "--follow" in err and "postgresql://" in err and "Traceback" not in err
