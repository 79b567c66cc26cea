"""Backtest decisions per second on a million recorded steps, against plain JSON Schema.

What a backtest does to months of logs: every recorded step, with the history its run had
at that point, replayed through the fixed example's ``permissions``, ``review`` and
``acceptance`` layers by ``gates._controls.replay.replay`` (argument schemas, a CEL rule over the
run history, review rules, acceptance criteria). The runs are made from the example's
recorded runs (its log and the eval suite's runs: user turns, reasoning, tool calls with
their results, outputs), strung together into conversations of varying length, some of
them hundreds of steps long, and streamed one at a time so memory stays flat. Each layer
builds its run's history incrementally (:class:`evalsuite.History`), as a streaming backtest
does. The baseline, in the same run over the same steps, validates every tool call's
arguments against its tool's argument schema with jsonschema and does nothing else.

    python benchmarks/bench_backtest.py [--steps N] [--seed S]

The default is 200,000 steps so that ``nox -s bench`` stays near two minutes on a shared
two-core machine; the issue's figure is ``--steps 1000000`` (about five times as long).
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _figures import Figure, machine
from jsonschema import Draft202012Validator

from evalsuite import History, Output, Run, Step, ToolCall, UserInput, read_log_runs
from gates import Workspace, load_inputs, run_evals
from gates._controls.replay import ReplayLayer, replay
from gates._demo import apply_fix, lay_out

LAYERS: tuple[ReplayLayer, ...] = ("permissions", "review", "acceptance")


def recorded_turns(workspace: Workspace) -> list[tuple[list[Step], dict[str, Any]]]:
    """Each recorded exchange (a user turn up to the agent's answer) with its run's context,
    from the example's log and from one trial of every eval and regression case."""
    runs: list[Run] = []
    for log in sorted((workspace.root / "logs").glob("*.jsonl")):
        runs.extend(read_log_runs(log))
    evidence = run_evals(load_inputs(workspace, "refund-agent"), trials=1, record=False)
    runs.extend(run for r in evidence.results for t in r.trials
                if (run := t.recorded_run) is not None)
    turns: list[tuple[list[Step], dict[str, Any]]] = []
    for run in runs:
        turn: list[Step] = []
        for step in run.steps:
            if isinstance(step, UserInput) and turn:
                turns.append((turn, run.context))
                turn = []
            turn.append(step)
        if turn:
            turns.append((turn, run.context))
    return turns


def conversations(turns: Sequence[tuple[list[Step], dict[str, Any]]], steps: int,
                  seed: int) -> Iterator[tuple[list[Step], dict[str, Any]]]:
    """Runs of recorded turns, ``steps`` steps in all, made one at a time.

    Most runs are a few turns long; one in twenty is a long session of 40 to 80 turns
    (200 to 400 steps), where a rule over ``history`` has the most to read. Every step is
    its own object, as it would be when read from a log.
    """
    rng = random.Random(seed)
    left = steps
    while left > 0:
        length = rng.randint(40, 80) if rng.random() < 0.05 else rng.randint(1, 6)
        run: list[Step] = []
        context: dict[str, Any] = {}
        for _ in range(length):
            turn, context = rng.choice(turns)
            run.extend(s.model_copy() for s in turn)
        run = run[:left]
        left -= len(run)
        yield run, dict(context)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    root = lay_out(Path(tempfile.mkdtemp(prefix="reinstate-bench-")) / "ws")
    workspace = Workspace.find(root)
    apply_fix(workspace)
    controls = workspace.controls("refund-agent")
    turns = recorded_turns(workspace)
    schemas = {name: Draft202012Validator(p.arguments or {})
               for name, p in controls.permissions.tools.items()}
    any_object = Draft202012Validator({"type": "object"})

    def baseline(run: list[Step]) -> int:
        checked = 0
        for step in run:
            if isinstance(step, ToolCall):
                for _ in schemas.get(step.tool, any_object).iter_errors(step.arguments):
                    break
                checked += 1
        return checked

    def layer(name: ReplayLayer) -> Callable[[list[Step], dict[str, Any]], int]:
        def decide(run: list[Step], context: dict[str, Any]) -> int:
            history = History()
            stopped = 0
            for step in run:
                stopped += replay(step, name, controls, history=history, context=context).stopped
                history.append(step)
            return stopped
        return decide

    timed: dict[str, float] = dict.fromkeys(("baseline", *LAYERS), 0.0)
    stopped: dict[str, int] = dict.fromkeys(LAYERS, 0)
    deciders = {name: layer(name) for name in LAYERS}
    warm = next(conversations(turns, 2_000, args.seed + 1))
    baseline(warm[0])
    for decide in deciders.values():
        decide(*warm)  # compiled schemas and expressions are cached on first use
    rss_start = peak_rss_mib()
    total = calls = outputs = runs = longest = 0
    rss_at_tenth = 0.0
    # The stream is cut into five parts by steps, each timed on its own: the spread of
    # the five says how steady the figure is without holding or replaying the runs twice.
    parts = [dict.fromkeys(timed, 0.0) for _ in range(5)]
    part_steps = [0] * 5
    for run, context in conversations(turns, args.steps, args.seed):
        part = min(4, total * 5 // args.steps)
        start = time.perf_counter()
        calls += baseline(run)
        spent = time.perf_counter() - start
        timed["baseline"] += spent
        parts[part]["baseline"] += spent
        for name, decide in deciders.items():
            start = time.perf_counter()
            stopped[name] += decide(run, context)
            spent = time.perf_counter() - start
            timed[name] += spent
            parts[part][name] += spent
        part_steps[part] += len(run)
        runs += 1
        total += len(run)
        outputs += sum(isinstance(s, Output) for s in run)
        longest = max(longest, len(run))
        if not rss_at_tenth and total >= args.steps // 10:
            rss_at_tenth = peak_rss_mib()

    print(machine())
    print(f"backtest decisions: {total:,} recorded steps in {runs:,} runs (longest "
          f"{longest:,} steps; {calls:,} tool calls, {outputs:,} outputs), history built "
          f"incrementally per run")
    base = timed["baseline"]
    print(f"  baseline, jsonschema on every call's arguments: {total / base:12,.0f} steps/s")
    for name in LAYERS:
        spread = Figure(tuple(p["baseline"] / p[name] for p in parts if p[name]))
        print(f"  replay {name + ':':<42} {total / timed[name]:12,.0f} steps/s  "
              f"ratio {base / timed[name]:.2f} (five parts: median {spread.median:.2f} "
              f"[{spread.low:.2f}–{spread.high:.2f}])  ({stopped[name]:,} stopped)")
    every = sum(timed[n] for n in LAYERS)
    print(f"  all three layers per step:{'':23}{total / every:12,.0f} steps/s  "
          f"ratio {base / every:.2f}")
    print(f"  peak RSS: {rss_start:.0f} MiB after warm-up, {rss_at_tenth:.0f} MiB at a tenth "
          f"of the steps, {peak_rss_mib():.0f} MiB at the end")


if __name__ == "__main__":
    main()
