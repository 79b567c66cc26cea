"""Permission decisions per second on replayed calls, against plain JSON Schema validation.

Replays every tool call of the example's good eval runs and its captured harmful run
through the fixed controls (argument schemas, a CEL rule over the run history, review
conditions), with the history each call had. The baseline, in the same run, validates
the same arguments against the same tools' argument schemas with jsonschema and does
nothing else.

    python benchmarks/bench_permissions.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _figures import Figure, machine
from jsonschema import Draft202012Validator

from evalsuite import ToolCall
from gates import Workspace, decide_call, load_inputs, run_evals
from gates._demo import apply_fix, lay_out


def replayed_calls(workspace: Workspace) -> list[tuple[ToolCall, list[Any], dict[str, Any]]]:
    """(call, history, context) for every call of every good eval run."""
    inputs = load_inputs(workspace, "refund-agent")
    evidence = run_evals(inputs, trials=1)
    calls = []
    for _, run in evidence.good_runs():
        for index, step in enumerate(run.steps):
            if isinstance(step, ToolCall):
                calls.append((step, run.steps[:index], run.context))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = lay_out(Path(tempfile.mkdtemp(prefix="reinstate-bench-")) / "ws")
    workspace = Workspace.find(root)
    apply_fix(workspace)
    controls = workspace.controls("refund-agent")
    sample = replayed_calls(workspace)
    work = [sample[i % len(sample)] for i in range(args.calls)]
    schemas = {name: Draft202012Validator(p.arguments or {})
               for name, p in controls.permissions.tools.items()}

    def baseline() -> float:
        start = time.perf_counter()
        for call, _, _ in work:
            for _ in schemas[call.tool].iter_errors(call.arguments):
                break
        return time.perf_counter() - start

    def decisions() -> float:
        start = time.perf_counter()
        for call, history, context in work:
            decide_call(controls, call, history, context)
        return time.perf_counter() - start

    baseline()
    decisions()  # warm both: compiled schemas and expressions are cached on first use
    base_s, ours_s = [], []
    for _ in range(args.rounds):  # taking turns, so a busy moment hits both alike
        base_s.append(baseline())
        ours_s.append(decisions())
    base, ours = Figure(tuple(base_s)), Figure(tuple(ours_s))
    ratios = Figure(tuple(b / o for b, o in zip(base_s, ours_s, strict=True)))
    with_history = sum(1 for c, _, _ in work if controls.permissions.tools[c.tool].deny_when)
    print(f"permission decisions: {len(work):,} replayed calls ({len(sample)} distinct, "
          f"{with_history:,} through a CEL rule over the run history); median "
          f"[lowest–highest] of {args.rounds} rounds")
    print(machine())
    print(f"  baseline, jsonschema only: {len(work) / base.median:12,.0f} calls/s "
          f"[{len(work) / base.high:,.0f}–{len(work) / base.low:,.0f}]")
    print(f"  reinstate decide_call:     {len(work) / ours.median:12,.0f} calls/s "
          f"[{len(work) / ours.high:,.0f}–{len(work) / ours.low:,.0f}]")
    print(f"  ratio (reinstate / baseline throughput): {ratios.median:.2f} "
          f"[{ratios.low:.2f}–{ratios.high:.2f}]")

if __name__ == "__main__":
    main()
