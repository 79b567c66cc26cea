"""Fixtures the gates tests share: a workspace walked all the way to restoration."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gates import MemoryStore, PostgresStore, SQLiteStore, StateStore, Workspace, run_gate
from gates._cli import main
from gates._demo import apply_fix, lay_out
from tests.conftest import built_once
from tests.helpers import ACTOR, commit_all, copied, git, resolved, restored


@pytest.fixture(scope="session")
def restored_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace gated green before the incident, then fixed, gated again and restored.

    Built once a run, shared by the xdist workers (it runs the evals three times); tests
    get copies.
    """
    def build(root: Path) -> None:
        ws = Workspace.find(lay_out(root))
        assert run_gate(ws, "refund-agent", actor="ci")
        restored(ws, apply_fix)
    return built_once(tmp_path_factory, "restored", build)


@pytest.fixture
def back_in_full(restored_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the restored workspace."""
    return copied(restored_template, tmp_path / "ws")


@pytest.fixture(scope="session")
def gated_green_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose incident is resolved and gated green, not yet restored (built once
    a run, shared by the xdist workers)."""
    def build(root: Path) -> None:
        ws = Workspace.find(lay_out(root))
        resolved(ws, apply_fix)
        assert run_gate(ws, "refund-agent", actor="ci")
    return built_once(tmp_path_factory, "restorable", build)


@pytest.fixture
def restorable(gated_green_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the restorable workspace: `reinstate restore` would succeed."""
    return copied(gated_green_template, tmp_path / "ws")


@pytest.fixture
def inline_cli(capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """``reinstate -C WS ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "200")

    def run(workspace: Workspace, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["-C", str(workspace.root), "--actor", ACTOR, *args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """Each store implementation in turn (PostgreSQL: a new database on the test cluster)."""
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        yield SQLiteStore(tmp_path / ".reinstate" / "state.db")
    else:
        yield PostgresStore(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sql_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement this process runs on SQLite from now on, values filled in, as
    the connections' trace shows them."""
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn
    monkeypatch.setattr(sqlite3, "connect", traced)
    return statements


@pytest.fixture(scope="module")
def repo_template(restored_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The restored example committed on ``main`` in a git repository, store left out."""
    root = tmp_path_factory.mktemp("git") / "repo"
    shutil.copytree(restored_template, root,
                    ignore=shutil.ignore_patterns(".reinstate", "__pycache__"))
    (root / ".gitignore").write_text(".reinstate/\n__pycache__/\n")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "the agent, restored after INC-1")
    git(root, "switch", "-q", "-c", "pull-request")
    return root


@pytest.fixture
def repo(repo_template: Path, tmp_path: Path) -> Path:
    """A fresh checkout of the pull request branch, as CI gets it: no state store."""
    root = tmp_path / "repo"
    shutil.copytree(repo_template, root)
    assert not (root / ".reinstate").exists()
    return root
