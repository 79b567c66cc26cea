"""Shared fixtures: the bundled example laid out in a temp folder, and the CLI run for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from gates import Workspace
from gates._demo import apply_fix, lay_out
from tests import postgres_server

# The CLI runs in a child process exactly as a user or a CI job runs it.
CLI = [sys.executable, "-m", "gates"]


@pytest.fixture
def example(tmp_path: Path) -> Workspace:
    """The bundled example workspace (refund-agent 1.4.0, before any incident)."""
    return Workspace.find(lay_out(tmp_path / "ws"))


@pytest.fixture
def fixed() -> Callable[[Workspace], list[str]]:
    """Applies the example's fix (controls, eval cases, agent 1.5.0) to a workspace."""
    return apply_fix


def pytest_configure(config: pytest.Config) -> None:
    """JSON Schemas found valid are remembered in a folder of this test run (test modules
    check schemas as they are collected, and children started by the tests inherit it),
    not in the user's own cache."""
    os.environ["REINSTATE_CACHE_DIR"] = tempfile.mkdtemp(prefix="reinstate-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove this run's schema cache."""
    shutil.rmtree(os.environ.pop("REINSTATE_CACHE_DIR", ""), ignore_errors=True)


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object],
               ) -> Path:
    """The workspace ``build`` lays out at the path it is given, built once per test run.

    Under pytest-xdist every worker has its own session, so a session fixture would build
    it once per worker; the first worker to get here builds it in the run's shared temp
    folder, under a file lock, and the others wait and use it. Tests copy it (its state
    store holds no absolute path, so a copy works anywhere) and never change it.
    """
    base = factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "templates"
    folder.mkdir(exist_ok=True)
    root, done = folder / name, folder / f"{name}.built"
    with FileLock(folder / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed build left behind
            build(root)
            done.touch()
    return root


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres_server.Cluster]:
    """A throwaway PostgreSQL cluster for this test process, stopped at the end; skipped
    only where PostgreSQL is not installed and ``CI`` is unset (in CI that fails)."""
    binaries = postgres_server.bindir()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (no initdb): `nox -s tests` installs "
                        "Debian's postgresql package, or set REINSTATE_PG_BINDIR")
        pytest.skip("PostgreSQL is not installed (no initdb; Debian: apt-get install "
                    "postgresql)")
    with postgres_server.cluster(binaries) as running:
        yield running


@pytest.fixture
def postgres_url(postgres_cluster: postgres_server.Cluster) -> str:
    """The URL of a new, empty database on the test cluster."""
    return postgres_cluster.new_database()


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli() -> RunCli:
    """Runs ``reinstate ARGS`` in a child process; ``cwd`` is the workspace."""
    def run(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "REINSTATE_ACTOR": "test.engineer", "COLUMNS": "200",
                    **(env or {})}
        full_env.pop("REINSTATE_WORKSPACE", None)
        return subprocess.run([*CLI, *args], cwd=cwd, env=full_env, capture_output=True,
                              text=True, timeout=120, check=False, input=stdin)
    return run


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes, to show that nothing was written."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


# The tallies printed at the end. Each test leaves what it tried on its report (its
# ``attack`` keyword, or user properties: ``fault``, ``writers``, ``hostile inputs``), and
# only reports are counted here, in the root conftest: under pytest-xdist the controller
# sees every worker's reports but never runs the tests or loads the folders' conftests.
_ATTACKS = {"tried": 0, "refused": 0}
_FAULTS = {"injected": 0, "survived": 0, "writers": 0, "writes": 0, "writes_kept": 0}
_HOSTILE: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Tally each finished test: attacks refused, faults survived, hostile inputs tried."""
    if report.when == "teardown":
        for key, value in report.user_properties:
            if key == "hostile inputs":
                _HOSTILE[report.nodeid] = _HOSTILE.get(report.nodeid, 0) + value
        return
    if report.when != "call":
        return
    # Tests marked ``attack`` each try to clear an agent that must not be cleared, or to
    # change the evidence a verdict rests on; a passing one was refused.
    if "attack" in report.keywords:
        _ATTACKS["tried"] += 1
        _ATTACKS["refused"] += report.passed
    # A fault-injection test names each fault it injects; a passing one survived them.
    injected = sum(1 for key, _ in report.user_properties if key == "fault")
    _FAULTS["injected"] += injected
    if report.passed:
        _FAULTS["survived"] += injected
    for key, value in report.user_properties:
        if key == "writers":
            writers, writes = value
            _FAULTS["writers"] = max(_FAULTS["writers"], writers)
            _FAULTS["writes"] += writes
            _FAULTS["writes_kept"] += writes if report.passed else 0


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the tallies, so the figures can be quoted."""
    if _HOSTILE:
        terminalreporter.write_sep("-", "hostile input")
        terminalreporter.write_line(
            f"hostile inputs tried: {sum(_HOSTILE.values())} across {len(_HOSTILE)} tests "
            f"(each a clean error or a valid load; no traceback, nothing written)")
    if _FAULTS["injected"] or _FAULTS["writers"]:
        terminalreporter.write_sep("-", "fault injection")
    if _FAULTS["injected"]:
        terminalreporter.write_line(
            f"faults injected: {_FAULTS['injected']}, survived: {_FAULTS['survived']} "
            f"(never a pass, nothing recorded lost or corrupted)")
    if _FAULTS["writers"]:
        lost = _FAULTS["writes"] - _FAULTS["writes_kept"]
        terminalreporter.write_line(
            f"concurrent writers: {_FAULTS['writers']} processes, {_FAULTS['writes']} writes, "
            f"lost or corrupted: {lost}")
    if _ATTACKS["tried"]:
        terminalreporter.write_sep("-", "attacks on the verdict")
        terminalreporter.write_line(f"attacks tried: {_ATTACKS['tried']}, refused: "
                                    f"{_ATTACKS['refused']}")
