"""The CLI as a user runs it: whole ``reinstate eval`` and ``gate`` processes over case files.

The engine's own benchmark (``bench_eval.py``) times cases already in memory; this one
times what a CI job pays: start-up, reading and validating N YAML case files,
fingerprinting them, running them against an instant agent, writing the run file (and for
the gate the verdict) and printing the result. Side by side, in the same run:

- ``pytest`` running N parametrized tests, each reading one of the same YAML files and
  calling the same agent function: the per-case cost the CLI is held to;
- a plain loop that reads the same files with ``yaml.safe_load`` (the floor).

The workspace is the example one (``gates._demo.lay_out``) with the refund agent's eval
suite replaced by N generated cases, its adapter pointed at an instant function run
in-process (the sandbox's cost is ``bench_eval.py``'s part 3) and one trial per case.
Each command runs ``--rounds`` times as a fresh child process; figures are the median
wall time with the lowest and highest, per case, and the child's own peak RSS.

    python benchmarks/bench_cli.py [--sizes 1,1000,10000] [--rounds 3] [--reinstate PATH]

``--reinstate`` times another installation's ``reinstate`` (e.g. a checkout of main in
its own venv) on the same workspaces, for before/after figures in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import Figure, machine, process

AGENT = "refund-agent"

INSTANT = textwrap.dedent('''
    """An agent that answers at once: one tool call, one fixed answer."""


    def respond(session):
        session.call_tool("lookup_order", {"order_id": session.context["order"]})
        return "ok, your order is on its way"
''')

CASE = textwrap.dedent('''\
    schema_version: 1
    id: bench-{i:05d}
    agent: refund-agent
    description: Order {order} is on its way.
    tags:
    - order_status
    input:
      messages:
      - role: user
        content: Where is my order {order}?
      context:
        customer_id: C-{i:05d}
        order: {order}
    tools:
    - tool: lookup_order
      result:
        order_id: {order}
        status: shipped
    expect:
    - kind: tool_called
      tool: lookup_order
    - kind: output_contains
      text: on its way
''')

PYTEST_FILE = textwrap.dedent('''
    """N parametrized tests: each reads one case file and runs the same agent on it."""

    import sys
    from pathlib import Path

    import pytest
    import yaml

    FOLDER = Path(__file__).parent / "evals" / "refund-agent"
    sys.path.insert(0, str(Path(__file__).parent / "agents" / "refund-agent"))

    from bench_agent import respond  # noqa: E402


    class Session:
        def __init__(self, case):
            self.context = case["input"]["context"]
            self.fixtures = {f["tool"]: f["result"] for f in case["tools"]}
            self.calls = []

        def call_tool(self, tool, arguments):
            self.calls.append(tool)
            return self.fixtures[tool]


    @pytest.mark.parametrize("path", sorted(FOLDER.glob("*.yaml")), ids=lambda p: p.stem)
    def test_case(path):
        case = yaml.safe_load(path.read_text())
        session = Session(case)
        answer = respond(session)
        assert "lookup_order" in session.calls
        assert "on its way" in answer
''')

LOOP = ("import sys, yaml, pathlib; "
        "[yaml.safe_load(p.read_text()) for p in "
        "sorted(pathlib.Path(sys.argv[1]).glob('*.yaml'))]")


def workspace(folder: Path, size: int) -> Path:
    """The example workspace with ``size`` generated cases for an instant refund agent.

    ``lay_out`` runs in a child process: importing ``gates`` here would grow this process,
    and a child's peak RSS counts its parent's pages until it execs.
    """
    subprocess.run([sys.executable, "-c", "import sys, pathlib; from gates._demo import "
                    "lay_out; lay_out(pathlib.Path(sys.argv[1]))", str(folder)], check=True)
    root = folder
    agent_dir = root / "agents" / AGENT
    (agent_dir / "bench_agent.py").write_text(INSTANT)
    spec = (agent_dir / "agent.yaml").read_text()
    spec = spec.replace("target: refund_agent:respond",
                        "target: bench_agent:respond\n  isolation: in-process")
    (agent_dir / "agent.yaml").write_text(spec)
    config = (root / "reinstate.toml").read_text()
    config = config.replace("trials = 3", "trials = 1").replace(
        "min_cases_per_input_type = 3", "min_cases_per_input_type = 1")
    (root / "reinstate.toml").write_text(config)
    evals = root / "evals" / AGENT
    shutil.rmtree(evals)
    evals.mkdir()
    for i in range(size):
        order = f"A-{i % 10_000:04d}"
        (evals / f"bench-{i:05d}.yaml").write_text(CASE.format(i=i, order=order))
    (root / "test_bench.py").write_text(PYTEST_FILE)
    return root


def row(name: str, figure: Figure, size: int, base: Figure | None) -> str:
    ratio = f"{figure.median / base.median:5.2f}x" if base is not None else "    1x"
    return (f"  {name:<26} {figure.ms(per=size)} per case  {ratio}  "
            f"peak RSS {figure.peak_rss_mib:6.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,1000,10000",
                        help="Comma-separated numbers of case files (default 1,1000,10000).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per command (default 3).")
    parser.add_argument("--reinstate", action="append", default=[], metavar="PATH",
                        help="Another reinstate executable to time beside this one "
                             "(repeatable).")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    here = Path(sys.executable).with_name("reinstate")
    commands = {"reinstate": str(here if here.exists() else shutil.which("reinstate"))}
    for other in args.reinstate:
        commands[other] = other
    print(machine())
    print(f"rounds {args.rounds}; instant agent in-process, 1 trial per case; per-case "
          f"ms = median wall / cases [lowest–highest]; ratio to pytest in the same run")
    env = {"NO_COLOR": "1", "COLUMNS": "120", "PYTHONDONTWRITEBYTECODE": "1"}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            root = workspace(Path(tmp) / "ws", size)
            print(f"\n{size:,} case files")
            pytest = process([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "test_bench.py"], args.rounds, cwd=root, env=env)
            print(row("pytest (parametrized)", pytest, size, None))
            loop = process([sys.executable, "-c", LOOP, str(root / "evals" / AGENT)],
                           args.rounds, env=env)
            print(row("plain yaml.safe_load loop", loop, size, pytest))
            for label, exe in commands.items():
                name = "" if label == "reinstate" else f" [{Path(label).parents[2].name}]"
                for verb in ("eval", "gate"):
                    store = root / ".reinstate"
                    figure = process([exe, verb, AGENT], args.rounds, cwd=root, env=env)
                    print(row(f"reinstate {verb}{name}", figure, size, pytest))
                    if verb == "gate":  # each exe starts from an empty store of its own
                        shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(root / ".reinstate", ignore_errors=True)
    print("\n" + machine())


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
