"""Backtest throughput on Ray at 1 and 2 workers, against the single-process engine.

The example's log is copied (run ids renamed) until it holds ``--steps`` recorded steps,
and ``gates.backtest`` decides every call and output of it with the fixed example's
controls against the baseline's: once in this process (the local engine, ``jobs=1``),
then with ``engine="ray"`` at 1 and 2 workers on a local Ray cluster this benchmark
starts (its start is timed once and reported apart: a deploy job pays it, a long-lived
cluster does not). Two Ray paths are measured: the Ray Dataset (what ``--engine ray`` takes
for native JSONL and Parquet: the log read in chunks, each chunk's runs decided in
``map_batches`` where it was read, the few runs crossing chunks put together by run) and
the shard tasks (what it takes for the other formats: each task reads the whole log and
decides its shard of the runs, as ``--jobs`` does, so the reading is repeated per worker
and only the deciding is split). Figures are steps decided per second, medians with their
spread, the ratio against the local engine measured in the same run, the fixed cost of a
dataset backtest (the example's 26 records), and what the 1 → 2 worker scaling measured
here extrapolates to, with the per-worker rate that assumes.

    python benchmarks/bench_ray.py [--steps N [N ...]] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import Figure, machine, timed

from gates import Workspace, backtest
from gates._backtest import run as run_module
from gates._demo import apply_fix, grow_example_log, lay_out

LOG = "logs/2026-11-25-refund-agent.jsonl"


def main() -> None:
    """Print the throughput figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.find(lay_out(Path(tmp) / "ws"))
        baseline = shutil.copytree(ws.root / "agents" / "refund-agent", ws.root / "baseline")
        apply_fix(ws)

        def run(log: Path, **engine: object) -> object:
            return backtest(ws, "refund-agent", [log], compare=str(baseline),
                            **engine)  # type: ignore[arg-type]

        def shards(log: Path, workers: int) -> object:
            # The shard tasks on the same log: the path other formats take.
            with mock.patch.object(run_module, "_on_dataset", return_value=None):
                return run(log, engine="ray", workers=workers)

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False)
        started = time.perf_counter() - start
        example = ws.root / LOG
        run(example, engine="ray", workers=2)  # the workers' first import of gates is not timed
        shards(example, 2)
        fixed = timed(lambda: run(example, engine="ray", workers=2), args.rounds)
        print(f"local Ray cluster start (2 CPUs): {started:.1f} s, once; a dataset backtest's "
              f"fixed cost (the example's 26 records, 2 workers): {fixed.median:.2f} s "
              f"[{fixed.low:.2f}–{fixed.high:.2f}]")
        for wanted in args.steps:
            log, steps = grow_example_log(ws, wanted)
            figures: dict[str, Figure] = {
                "local, 1 process": timed(partial(run, log), args.rounds),
                "dataset, 1 worker": timed(partial(run, log, engine="ray", workers=1),
                                           args.rounds),
                "dataset, 2 workers": timed(partial(run, log, engine="ray", workers=2),
                                            args.rounds),
                "shards, 1 worker": timed(partial(shards, log, 1), args.rounds),
                "shards, 2 workers": timed(partial(shards, log, 2), args.rounds),
            }
            _report(steps, args.rounds, figures)
        ray.shutdown()
    print(machine())


def _report(steps: int, rounds: int, figures: dict[str, Figure]) -> None:
    local = figures["local, 1 process"].median
    print(f"backtest of {steps:,} steps, {rounds} rounds each")
    for name, figure in figures.items():
        print(f"  {name:18} {steps / figure.median:9,.0f} steps/s "
              f"[{steps / figure.high:,.0f}–{steps / figure.low:,.0f}]  "
              f"x{local / figure.median:.2f} of local")
    one, two = (steps / figures[f"dataset, {n}"].median for n in ("1 worker", "2 workers"))
    efficiency = two / one / 2
    print(f"  dataset scaling 1 -> 2 workers: x{two / one:.2f} ({efficiency:.0%} of linear), "
          f"measured on 2 cores shared with other work: this machine cannot show more "
          f"than 2 workers.")
    print(f"  extrapolation, not a measurement: if every added worker keeps {efficiency:.0%} "
          f"of the 1-worker rate ({one:,.0f} steps/s each), N workers decide about "
          f"{one:,.0f} x N x {efficiency:.2f} steps/s (32 workers: "
          f"{one * 32 * efficiency:,.0f}/s), as long as the logs come in at least N chunks "
          f"and the driver, the storage and the runs crossing chunks keep up")


if __name__ == "__main__":
    main()
