"""Growth: what the gate, ``check`` and ``mode`` cost as a workspace and its history grow.

1. The gate at 10, 100 and 1,000 regression cases (copies of the example's captured case,
   each its own file), as a whole ``reinstate gate`` process: total wall and CPU time and
   the cost per added case over the smallest size, which stays flat when the gate is
   linear; and each stage of the gate (``pipeline.STAGES``) in process, by CPU time. On a
   shared machine wall time per case grows with the load during the longer runs; CPU time
   is the figure to read for linearity.
2. ``reinstate check``, ``reinstate mode`` and ``reinstate gate`` after 1, 100 and 1,000
   stored gates (history written through the public API: a current verdict saved again,
   one audit entry each), as whole processes against ``python -c pass`` in the same run
   and in process (CPU time): flat when none re-reads the whole history. ``mode`` tests
   the checkpoint by two lookups; ``check`` also tests the log's links up to it inside
   SQLite (a fraction of a microsecond an entry: the one part that grows) and re-hashes
   only the entries the decision reads, as the store tallied them; ``reinstate audit
   verify`` keeps the pass over every row. The gate's cost at each history over its cost
   at the first is printed with its spread.
3. The bytes one verdict adds to the state store at 1,000 and 10,000 regression cases
   (the stored body; the gate at 10,000 runs with ``--trials 1``).
4. ``reinstate eval --cases ONE`` at 10,000 eval case files (``bench_cli.py``'s workspace:
   instant agent, one trial), as whole processes beside ``reinstate eval`` of every case
   in the same run: with the case-id cache cold (``REINSTATE_CACHE_DIR`` empty: every
   file's id parsed) and warm (ids found by each file's digest). Flat when choosing one
   case costs far less than running all.

    python benchmarks/bench_scaling.py [--rounds N] [--cases 10,100,1000]
        [--history 1,100,1000] [--verdict-cases 1000,10000] [--select-cases 10000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from _figures import Figure, machine, process, timed
from bench_cli import workspace as eval_workspace

from gates import SQLiteStore, Workspace, check, read_mode, run_gate
from gates._demo import apply_fix, lay_out
from gates._gate.pipeline import STAGES, GateRun

# The suite's walk to restoration is the workspace measured here; the checkout's root is
# not on the path of a script run as `python benchmarks/…` under a non-editable install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import restored

AGENT = "refund-agent"
CAPTURED = "INC-1-1"
REINSTATE = [sys.executable, "-m", "gates"]
ENV = {"REINSTATE_ACTOR": "bench", "COLUMNS": "120"}


def restored_workspace(into: Path) -> Workspace:
    """The example workspace walked to restoration: one incident, one captured case."""
    workspace = Workspace.find(lay_out(into))
    restored(workspace, apply_fix)
    return workspace


def with_cases(template: Path, into: Path, count: int) -> Workspace:
    """A copy of ``template`` whose regression set holds ``count`` cases, each a copy of
    the captured one under its own id and file."""
    shutil.copytree(template, into)
    folder = into / "regressions" / AGENT
    text = (folder / f"{CAPTURED}.yaml").read_text()
    for index in range(1, count):
        case_id = f"BENCH-{index:05d}"
        (folder / f"{case_id}.yaml").write_text(text.replace(f"id: {CAPTURED}\n",
                                                             f"id: {case_id}\n", 1))
    return Workspace.find(into)


def gate_growth(template: Path, sizes: list[int], rounds: int, scratch: Path) -> None:
    print(f"\n1. reinstate gate {AGENT} by regression cases ({rounds} round(s) each)")
    figures: dict[int, Figure] = {}
    stages: dict[int, dict[str, Figure]] = {}
    for size in sizes:
        ws = with_cases(template, scratch / f"gate-{size}", size)
        figures[size] = process([*REINSTATE, "-C", str(ws.root), "gate", AGENT], rounds,
                                env=ENV)
        print(f"   {size:>6} cases: {figures[size].ms()} wall, {figures[size].cpu.ms()} CPU, "
              f"{figures[size].cpu.ms(per=size)} CPU per case, peak RSS "
              f"{figures[size].peak_rss_mib:.0f} MiB", flush=True)
        stages[size] = stage_times(ws, rounds)
    base = sizes[0]
    print(f"   per case added over {base} cases (linear when it stays the same as cases grow):")
    for size in sizes[1:]:
        wall = _added(figures[size], figures[base], size - base)
        cpu = _added(figures[size].cpu, figures[base].cpu, size - base)
        print(f"     to {size:>6}: {wall} wall, {cpu} CPU")
    print(f"   in process, CPU per case added over {base} cases, by stage of the gate:")
    for name in stages[base]:
        added = ", ".join(f"to {size}: " + _added(stages[size][name], stages[base][name],
                                                   size - base)
                          for size in sizes[1:])
        print(f"     {name:<12} {added}")


def stage_times(workspace: Workspace, rounds: int) -> dict[str, Figure]:
    """CPU time of each of the gate's stages (``pipeline.STAGES``), run in this process."""
    samples: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    for _ in range(rounds):
        run = GateRun(workspace=workspace, agent=AGENT, actor="bench")
        for name, stage in STAGES:
            start = time.process_time()
            run = stage(run)
            samples[name].append(time.process_time() - start)
    return {name: Figure(tuple(times)) for name, times in samples.items()}


def _added(larger: Figure, smaller: Figure, cases: int) -> str:
    """What each case added costs: the medians' difference over the cases added, with
    the spread from the rounds' extremes (smallest difference to largest)."""
    per = 1000 / cases
    return (f"{(larger.median - smaller.median) * per:.2f} ms "
            f"[{(larger.low - smaller.high) * per:.2f}–{(larger.high - smaller.low) * per:.2f}]")


def history_growth(template: Path, sizes: list[int], rounds: int, scratch: Path) -> None:
    print(f"\n2. check, mode and the gate by stored gates ({rounds} rounds each)")
    python = process([sys.executable, "-c", "pass"], rounds)
    print(f"   python -c pass: {python.ms()}")
    gates: dict[int, tuple[Figure, Figure]] = {}
    reads: dict[str, dict[int, Figure]] = {}
    for size in sizes:
        root = scratch / f"history-{size}"
        shutil.copytree(template, root)
        store = SQLiteStore(root / ".reinstate" / "state.db")
        verdict = store.latest_verdict(AGENT)
        assert verdict is not None
        # The gate's own verdict again, so it stays current and check still clears.
        for _ in range(size - 1):
            store.save_verdict(verdict.model_copy(deep=True), "bench")
        entries = len(store.audit())
        ws = Workspace.find(root)
        for name, call in (("check()", lambda ws=ws: check(ws, AGENT)),
                           ("read_mode()", lambda ws=ws: read_mode(ws, AGENT))):
            figure = timed(call, max(rounds, 5), clock=time.process_time)
            reads.setdefault(name, {})[size] = figure
            print(f"   {size:>5} gates ({entries:>5} audit entries) {name:<11} in process: "
                  f"{figure.ms()} CPU", flush=True)
        for name, args in (("check", ["check", AGENT]), ("mode", ["mode", AGENT])):
            figure = process([*REINSTATE, "-C", str(root), *args], rounds, env=ENV)
            reads.setdefault(f"{name} process CPU", {})[size] = figure.cpu
            over = figure.median - python.median
            print(f"   {size:>5} gates ({entries:>5} audit entries) {name:<11} process:    "
                  f"{figure.ms()} wall, {figure.cpu.ms()} CPU "
                  f"({over * 1000:.0f} ms wall over python -c pass)", flush=True)
        # Last: each gate stores one more verdict (a handful over the rounds).
        in_process = timed(lambda ws=ws: run_gate(ws, AGENT, actor="bench"), max(rounds, 5),
                           clock=time.process_time)
        whole = process([*REINSTATE, "-C", str(root), "gate", AGENT], rounds, env=ENV)
        gates[size] = (in_process, whole.cpu)
        print(f"   {size:>5} gates ({entries:>5} audit entries) run_gate()  in process: "
              f"{in_process.ms()} CPU; gate process: {whole.ms()} wall, {whole.cpu.ms()} CPU",
              flush=True)
    first = sizes[0]
    for size in sizes[1:]:
        # The mode reads test the checkpoint by two lookups; check() also tests the links up
        # to it in SQLite (~0.4 us an entry) and re-hashes only the entries it decides on.
        print(f"   at {size} stored gates over at {first}: "
              + ", ".join(f"{name} {_ratio(figures[size], figures[first])}"
                          for name, figures in reads.items())
              + " (flat: 1x)")
        print(f"   one gate at {size} stored gates over one at {first}: "
              + ", ".join(f"{name} {_ratio(gates[size][i], gates[first][i])}"
                          for i, name in enumerate(("in process", "process CPU")))
              + " (flat: 1x)")


def _ratio(larger: Figure, smaller: Figure) -> str:
    """``median x [lowest–highest]`` of one figure over another."""
    return (f"{larger.median / smaller.median:.2f}x "
            f"[{larger.low / smaller.high:.2f}–{larger.high / smaller.low:.2f}]")


def verdict_bytes(template: Path, sizes: list[int], scratch: Path) -> None:
    print("\n3. bytes one verdict adds to the state store")
    for size in sizes:
        ws = with_cases(template, scratch / f"verdict-{size}", size)
        db = ws.state_path
        trials = 3 if size <= 1000 else 1
        run_gate(ws, AGENT, actor="bench", trials=trials)
        with sqlite3.connect(db) as conn:
            text = conn.execute("SELECT body FROM verdicts ORDER BY id DESC "
                                "LIMIT 1").fetchone()[0]
        body = len(text.encode() if isinstance(text, str) else text)
        print(f"   {size:>6} cases (trials {trials}): {body / 1e6:.3f} MB stored, "
              f"{body / size:.0f} bytes per case ({_parts(text)})", flush=True)


def eval_selection(sizes: list[int], rounds: int, scratch: Path) -> None:
    print(f"\n4. reinstate eval {AGENT} --cases ONE by eval case files ({rounds} rounds each)")
    for size in sizes:
        root = eval_workspace(scratch / f"select-{size}", size)
        one = f"bench-{size // 2:05d}"
        cache = scratch / f"select-{size}-cache"
        every = process([*REINSTATE, "-C", str(root), "eval", AGENT], rounds,
                        env={**ENV, "REINSTATE_CACHE_DIR": str(cache)})
        selected = [*REINSTATE, "-C", str(root), "eval", AGENT, "--cases", one]
        cold = process(selected, rounds, env={**ENV, "REINSTATE_CACHE_DIR": ""})  # ids parsed
        cached = {**ENV, "REINSTATE_CACHE_DIR": str(cache)}
        process(selected, 1, env=cached)  # fills the cache (the run the cold row times)
        warm = process(selected, rounds, env=cached)
        for name, figure in (("every case", every), ("--cases ONE, ids cold", cold),
                             ("--cases ONE, ids cached", warm)):
            print(f"   {size:>6} cases, {name:<24} {figure.ms()} "
                  f"({figure.median / every.median:.3f}x every case), peak RSS "
                  f"{figure.peak_rss_mib:.0f} MiB", flush=True)


def _parts(body: str | bytes) -> str:
    """The megabytes of a stored verdict's largest parts: the fingerprint and each check."""
    verdict = json.loads(body)
    parts = {"fingerprint": verdict["fingerprint"],
             **{check["name"]: check for check in verdict["checks"]}}
    sizes = {name: len(json.dumps(part, separators=(",", ":")).encode())
             for name, part in parts.items()}
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:4]
    return ", ".join(f"{name} {size / 1e6:.3f}" for name, size in largest)


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", type=_sizes, default=[10, 100, 1000])
    parser.add_argument("--history", type=_sizes, default=[1, 100, 1000])
    parser.add_argument("--verdict-cases", type=_sizes, default=[1000, 10000])
    parser.add_argument("--select-cases", type=_sizes, default=[10000])
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="reinstate-bench-") as tmp:
        scratch = Path(tmp)
        template = restored_workspace(scratch / "template").root
        if args.history:
            history_growth(template, args.history, args.rounds, scratch)
        if args.verdict_cases:
            verdict_bytes(template, args.verdict_cases, scratch)
        if args.cases:
            gate_growth(template, args.cases, args.rounds, scratch)
        if args.select_cases:
            eval_selection(args.select_cases, args.rounds, scratch)
    print(machine())


if __name__ == "__main__":
    main()
