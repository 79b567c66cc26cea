"""The fault-injection suite: each fault injected into a real child process, on real files
and a real SQLite store; what was recorded before is compared with what is there after.

Every test names the faults it injects (``faults.inject``); a fault counts as survived
when its test passes: the outcome was never ``pass``, nothing recorded before was lost or
corrupted, and the message said what happened. The session ends with the tally (counted
from the reports by the root conftest, so it holds under pytest-xdist too).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gates import AuditEntry, Workspace, run_gate, verify_chain
from gates._cli import main
from gates._demo import apply_fix, lay_out
from tests.conftest import built_once
from tests.helpers import captured, resolved

CHILD = Path(__file__).parent / "_child.py"


class Faults:
    """Counts the faults one test injects."""

    def __init__(self, node: pytest.Item) -> None:
        self._node = node

    def inject(self, name: str) -> None:
        """Note that the test injects the fault ``name``."""
        self._node.user_properties.append(("fault", name))


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Faults:
    """The test's fault counter."""
    assert isinstance(request.node, pytest.Item)
    return Faults(request.node)


def _prepare(root: Path, story: Callable[[Workspace], object], gate: bool) -> None:
    lay_out(root)
    config = root / "reinstate.toml"  # one trial per case keeps each gate fast
    config.write_text(config.read_text().replace("trials = 3", "trials = 1"))
    workspace = Workspace.find(root)
    story(workspace)
    if gate:
        run_gate(workspace, "refund-agent", actor="ci")


@pytest.fixture(scope="session")
def captured_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INC-1 contained and captured as INC-1-1, and a failing verdict on record."""
    return built_once(tmp_path_factory, "faults-captured",
                      lambda root: _prepare(root, captured, gate=True))


@pytest.fixture(scope="session")
def restorable_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INC-1 resolved with the fix merged, and a passing verdict: restore would succeed."""
    return built_once(tmp_path_factory, "faults-restorable",
                      lambda root: _prepare(root, lambda ws: resolved(ws, apply_fix),
                                            gate=True))


@pytest.fixture
def ws(captured_template: Path, tmp_path: Path) -> Workspace:
    """A copy of the captured workspace."""
    shutil.copytree(captured_template, tmp_path / "ws")
    return Workspace.find(tmp_path / "ws")


@pytest.fixture
def restorable(restorable_template: Path, tmp_path: Path) -> Workspace:
    """A copy of the restorable workspace."""
    shutil.copytree(restorable_template, tmp_path / "ws")
    return Workspace.find(tmp_path / "ws")


@dataclass(frozen=True)
class Recorded:
    """What a workspace has on record: definition files, modes, verdicts, the audit log."""

    files: dict[str, bytes]
    modes: dict[str, str]
    verdicts: list[str]
    audit: list[tuple[Any, ...]]


def recorded(workspace: Workspace, *, store: bool = True) -> Recorded:
    """Read what is on record, with plain file reads and a plain SQLite connection
    (the files alone when ``store`` is false)."""
    root = workspace.root
    files = {p.relative_to(root).as_posix(): p.read_bytes()
             for folder in ("incidents", "regressions", "evals", "agents")
             for p in sorted((root / folder).rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".tmp")}
    modes: dict[str, str] = {}
    verdicts: list[str] = []
    audit: list[tuple[Any, ...]] = []
    if store and workspace.state_path.exists():
        uri = f"{workspace.state_path.as_uri()}?mode=ro"
        with sqlite3.connect(uri, uri=True) as conn:
            modes = dict(conn.execute("SELECT agent, mode FROM modes").fetchall())
            verdicts = [r[0] for r in conn.execute("SELECT body FROM verdicts ORDER BY id")]
            audit = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
        conn.close()
    return Recorded(files, modes, verdicts, audit)


def assert_kept(before: Recorded, after: Recorded, *, modes: bool = True,
                grown: frozenset[str] = frozenset()) -> None:
    """Everything recorded before is still there, byte for byte (an incident in ``grown``
    may have grown: its old history must start its new one); the log still verifies."""
    for path, data in before.files.items():
        assert path in after.files, f"{path} was lost"
        if path in grown:
            old, new = yaml.safe_load(data), yaml.safe_load(after.files[path])
            assert new["history"][:len(old["history"])] == old["history"], f"{path} lost history"
            continue
        assert after.files[path] == data, f"{path} was changed"
    assert after.verdicts[:len(before.verdicts)] == before.verdicts, "a verdict was lost"
    assert after.audit[:len(before.audit)] == before.audit, "an audit entry was lost"
    if modes:
        assert after.modes == before.modes
    assert verify_chain(_entries(after.audit)) == []


def _entries(rows: list[tuple[Any, ...]]) -> list[AuditEntry]:
    return [AuditEntry(seq=r[0], at=r[1], actor=r[2], action=r[3], agent=r[4], reason=r[5],
                       detail=json.loads(r[6]), prev_hash=r[7], hash=r[8]) for r in rows]


def temp_files(workspace: Workspace) -> list[Path]:
    """Temporary files of atomic writes left in the workspace."""
    return sorted(workspace.root.rglob("*.tmp"))


def _drop_dac() -> None:
    """Run as root without the power to ignore file permissions, as any other user would."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {**os.environ, "REINSTATE_ACTOR": "fault.tester", "COLUMNS": "200",
           "PYTHONUNBUFFERED": "1", **(extra or {})}
    env.pop("REINSTATE_WORKSPACE", None)
    return env


def _argv(fault: str, commands: tuple[list[str], ...]) -> list[str]:
    argv = [sys.executable, str(CHILD), fault]
    for command in commands:
        argv += ["--", *command]
    return argv


def reinstate(workspace: Workspace, *commands: list[str], fault: str = "none",
              env: dict[str, str] | None = None,
              as_other_user: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``reinstate`` commands in a child process with ``fault`` armed.

    ``as_other_user`` takes away root's power to read and write any file, so file
    permissions apply to the child as they would to anyone.
    """
    drop = _drop_dac if as_other_user and os.geteuid() == 0 else None
    return subprocess.run(_argv(fault, commands), cwd=workspace.root, env=_env(env),
                          capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=drop)


def killed_at(workspace: Workspace, fault: str, *commands: list[str]) -> int:
    """Run the commands until ``fault`` is reached, SIGKILL the process there; its status."""
    read, write = os.pipe()
    try:
        child = subprocess.Popen(_argv(fault, commands), cwd=workspace.root,
                                 env=_env({"FAULT_SIGNAL_FD": str(write)}), pass_fds=(write,),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(write)
        reached = os.read(read, 1)  # blocks until the fault is reached or the child exits
        if reached:
            child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=120)
    finally:
        os.close(read)
    assert reached, f"the process ended before reaching {fault}: {out}{err}"
    return child.returncode


@dataclass(frozen=True)
class Ran:
    """What one command did: its exit code and what it printed."""

    code: int
    out: str
    err: str


Cli = Callable[..., Ran]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Runs ``reinstate ARGS`` in this process against a workspace, as the console script
    does (one clean line and an exit code for every error), capturing its output."""
    monkeypatch.setenv("REINSTATE_ACTOR", "fault.tester")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("REINSTATE_WORKSPACE", raising=False)

    def run(workspace: Workspace, *args: str) -> Ran:
        capsys.readouterr()
        code = main(["-C", str(workspace.root), *args])
        out, err = capsys.readouterr()
        return Ran(code, out, err)
    return run


@pytest.fixture
def held_lock(ws: Workspace) -> Iterator[sqlite3.Connection]:
    """Another connection holding a write transaction on the workspace's state store."""
    conn = sqlite3.connect(ws.state_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    conn.execute("ROLLBACK")
    conn.close()
