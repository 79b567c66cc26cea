"""Shared fixtures: the bundled example laid out in a temp folder, and the CLI run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gates import Workspace
from gates._demo import apply_fix, lay_out

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


# Tests marked ``attack`` each try to clear an agent that must not be cleared, or to change
# the evidence a verdict rests on; a passing one was refused.
_ATTACKS = {"tried": 0, "refused": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Tally the attacks of each finished test."""
    if report.when == "call" and "attack" in report.keywords:
        _ATTACKS["tried"] += 1
        _ATTACKS["refused"] += report.passed


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the tally, so the figure can be quoted."""
    if _ATTACKS["tried"]:
        terminalreporter.write_sep("-", "attacks on the verdict")
        terminalreporter.write_line(f"attacks tried: {_ATTACKS['tried']}, refused: "
                                    f"{_ATTACKS['refused']}")
