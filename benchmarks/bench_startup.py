"""Start-up of the commands deploy jobs, runtimes and test runners call, as whole processes.

Each command runs as a fresh child process, the way a CI step, a deploy hook or a pytest
worker meets it, in the example workspace after a passing gate. The baselines, in the same
run: ``python -c pass`` (the interpreter alone) and ``python -m pytest --version`` (a test
runner's start-up). It prints the median wall time of ``--rounds`` runs of each and its
ratio to both baselines, and the import cost of the pytest plugin in an xdist worker
(``import gates.pytest_plugin``).

    python benchmarks/bench_startup.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gates import Workspace, run_gate
from gates._demo import apply_fix, lay_out


def _prepared() -> Path:
    """The example workspace, fixed, gated and restored, so check and mode answer fully."""
    root = lay_out(Path(tempfile.mkdtemp(prefix="reinstate-bench-")) / "ws")
    workspace = Workspace.find(root)
    apply_fix(workspace)
    run_gate(workspace, "refund-agent", actor="bench")
    return root


def _median(command: list[str], cwd: Path, rounds: int) -> float:
    env = {**os.environ, "REINSTATE_ACTOR": "bench"}
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    root = _prepared()
    py = sys.executable
    baselines = {
        "python -c pass": [py, "-c", "pass"],
        "pytest --version": [py, "-m", "pytest", "--version", "-p", "no:reinstate"],
    }
    commands = {
        "reinstate --help": [py, "-m", "gates", "--help"],
        "reinstate mode refund-agent": [py, "-m", "gates", "mode", "refund-agent"],
        "reinstate check refund-agent": [py, "-m", "gates", "check", "refund-agent"],
        "import gates.pytest_plugin": [py, "-c", "import gates.pytest_plugin"],
        "import gates (agent_mode)": [py, "-c", "from gates import agent_mode"],
    }
    base = {name: _median(cmd, root, args.rounds) for name, cmd in baselines.items()}
    print(f"start-up, median of {args.rounds} runs (whole process, wall time)")
    for name, seconds in base.items():
        print(f"  {name:<32} {seconds * 1000:8.0f} ms   (baseline)")
    python_s, pytest_s = base["python -c pass"], base["pytest --version"]
    for name, cmd in commands.items():
        seconds = _median(cmd, root, args.rounds)
        print(f"  {name:<32} {seconds * 1000:8.0f} ms   {seconds / python_s:5.1f}x python, "
              f"{seconds / pytest_s:4.1f}x pytest")


if __name__ == "__main__":
    main()
