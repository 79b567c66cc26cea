"""Start-up of the commands deploy jobs, runtimes and test runners call, as whole processes.

Each command runs as a fresh child process, the way a CI step, a deploy hook or a pytest
worker meets it, in the example workspace after a passing gate (so ``check`` and ``mode``
answer in full). The baseline, in the same run, is ``python -c pass`` (the interpreter
alone); ``pytest --version`` is shown beside it as a test runner's start-up. Rounds are
interleaved (one of each command, then the next round) so that a burst of load on a shared
machine falls on every command alike. For each command it prints the median wall time with
its spread, the ratio to ``python -c pass`` and the milliseconds over it; the target for
``--version``, ``mode`` and ``check`` is at most 300 ms over. (No peak RSS: a child's
high-water mark counts this parent's pages from before its exec, and this parent has run a
gate, so it would say nothing about a command's own memory.)

    python benchmarks/bench_startup.py [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _figures import Figure, machine, process

from gates import Workspace, run_gate
from gates._demo import apply_fix, lay_out

TARGET_OVER_PYTHON_S = 0.3
"""What ``--version``, ``mode`` and ``check`` may add to the interpreter's own start-up."""


def _prepared() -> Path:
    """The example workspace, fixed and gated, so check and mode answer fully."""
    root = lay_out(Path(tempfile.mkdtemp(prefix="reinstate-bench-")) / "ws")
    workspace = Workspace.find(root)
    apply_fix(workspace)
    run_gate(workspace, "refund-agent", actor="bench")
    return root


def _reinstate() -> list[str]:
    """The ``reinstate`` console script beside this interpreter, as a user runs it."""
    script = shutil.which("reinstate", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "gates"]


def _interleaved(commands: dict[str, list[str]], rounds: int, cwd: Path) -> dict[str, Figure]:
    """Each command ``rounds`` times, one round of all of them after another."""
    env = {"REINSTATE_ACTOR": "bench"}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # a first run writes the bytecode a user's has
        process(command, 1, cwd=cwd, env=env)
    for _ in range(rounds):
        for name, command in commands.items():
            samples[name].extend(process(command, 1, cwd=cwd, env=env).samples)
    return {name: Figure(tuple(samples[name])) for name in commands}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    root = _prepared()
    py, reinstate = sys.executable, _reinstate()
    targeted = {"reinstate --version", "reinstate mode refund-agent",
                "reinstate check refund-agent"}
    commands = {
        "python -c pass": [py, "-c", "pass"],
        "pytest --version": [py, "-m", "pytest", "--version", "-p", "no:reinstate"],
        "reinstate --version": [*reinstate, "--version"],
        "reinstate --help": [*reinstate, "--help"],
        "reinstate mode refund-agent": [*reinstate, "mode", "refund-agent"],
        "reinstate check refund-agent": [*reinstate, "check", "refund-agent"],
        "import gates.pytest_plugin": [py, "-c", "import gates.pytest_plugin"],
        "from gates import agent_mode": [
            py, "-c", "from gates import agent_mode; agent_mode('refund-agent')"],
    }
    figures = _interleaved(commands, args.rounds, root)
    python = figures["python -c pass"].median
    print(f"start-up, whole process, wall time: median [lowest–highest] of {args.rounds} "
          f"interleaved rounds; ratio and ms over `python -c pass`")
    print(machine())
    for name, figure in figures.items():
        over = figure.median - python
        mark = ""
        if name in targeted:
            mark = "  within target" if over <= TARGET_OVER_PYTHON_S else "  OVER target"
        print(f"  {name:<30} {figure.ms()}  {figure.median / python:5.1f}x  "
              f"+{over * 1000:6.0f} ms{mark}")
    print(f"target: --version, mode and check at most {TARGET_OVER_PYTHON_S * 1000:.0f} ms "
          f"over python -c pass")


if __name__ == "__main__":
    main()
