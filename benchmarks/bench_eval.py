"""The eval engine's cost next to the agent's own: per-case overhead and concurrency.

1. Per-case overhead: 10,000 cases against an instant agent (one sandboxed tool call,
   two expectations), with the run file written, against a hand-written loop in the same
   run that calls the same agent with the same sandbox, applies the same scorers and
   writes the same result file, and does nothing else (no concurrency, no timeouts, no
   retries).
2. Concurrency: 1,000 cases x 3 trials of an agent that takes 50 ms, at concurrency 64,
   against the ideal wall time cases x trials x latency / concurrency.
3. Isolation: the same instant agent through the Python adapter's default, a confined
   child process per trial in flight (sandbox start included), against ``isolation:
   in-process``, at concurrency 8.

Parts 1 and 2 measure the engine, so they call the agent in-process.

    python benchmarks/bench_eval.py [--cases N] [--isolated-cases N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _figures import Figure, machine

from evalsuite import (
    AgentSession,
    AgentSpec,
    Behaviour,
    Engine,
    EvalCase,
    EvalRunHeader,
    Output,
    Run,
    RunFileWriter,
    RunSettings,
    TrialResult,
    UserInput,
    build_adapter,
    judge_expectations,
    run_cases,
)
from regressions import utc_now

AGENT = textwrap.dedent('''
    import asyncio

    def instant(session):
        session.call_tool("lookup_order", {"order_id": session.context["order"]})
        return "ok, your order is on its way"

    async def instant_async(session):
        return instant(session)

    async def slow(session):
        await asyncio.sleep(0.05)
        return instant(session)
''')


def cases(count: int) -> list[EvalCase]:
    """Cases like an eval suite's: one fixture, a tool expectation, an output expectation."""
    return [EvalCase.model_validate({
        "id": f"case-{i}", "agent": "bench", "tags": ["order_status"],
        "input": {"messages": [{"role": "user", "content": f"Where is A-{i}?"}],
                  "context": {"order": f"A-{i}"}},
        "tools": [{"tool": "lookup_order", "result": {"status": "shipped"}}],
        "expect": [{"kind": "tool_called", "tool": "lookup_order"},
                   {"kind": "output_contains", "text": "on its way"}],
    }) for i in range(count)]


def adapter(folder: Path, target: str, isolation: str = "in-process") -> object:
    """The bench agent through the Python adapter, in-process unless asked otherwise."""
    spec = AgentSpec.model_validate({"name": "bench", "version": "1", "adapter": {
        "kind": "python", "target": f"bench_agent:{target}", "isolation": isolation}})
    return build_adapter(spec, folder / "agent.yaml")


def header() -> EvalRunHeader:
    return EvalRunHeader(agent="bench", started_at=utc_now(), settings={})


def hand_loop(all_cases: list[EvalCase], folder: Path) -> float:
    """The least that does the same work: sandbox, agent, scorers, result file."""
    sys.path.insert(0, str(folder))
    from bench_agent import instant  # type: ignore[import-not-found]

    writer = RunFileWriter(folder / "hand.jsonl", header())
    start = time.perf_counter()
    for case in all_cases:
        session = AgentSession(case)
        answer = instant(session)
        run = Run.model_construct(
            schema_version=1, run_id=f"{case.id}#1", agent="bench", agent_version="1",
            started_at=None, context=case.input.context, outcome=None, usage=None,
            metadata={}, steps=[UserInput(content=case.input.messages[-1].content),
                                *session.steps, Output(content=answer)])
        judgements = judge_expectations(case.expect, Behaviour.of_run(run))
        writer.trial(case, TrialResult(trial=1, passed=all(j.passed for j in judgements),
                                       run=run, judgements=judgements))
    writer.finish()
    return time.perf_counter() - start


def engine_run(all_cases: list[EvalCase], folder: Path, target: str, trials: int,
               concurrency: int, name: str, isolation: str = "in-process",
               ) -> tuple[float, int]:
    """The engine, as the gate runs it, with its run file."""
    writer = RunFileWriter(folder / f"{name}.jsonl", header())
    engine = Engine(adapter(folder, target, isolation),  # type: ignore[arg-type]
                    RunSettings(trials=trials, concurrency=concurrency, timeout_s=60))
    start = time.perf_counter()
    results = run_cases(engine, all_cases, record=writer.trial)
    writer.finish()
    elapsed = time.perf_counter() - start
    return elapsed, sum(t.passed for r in results for t in r.trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--isolated-cases", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="reinstate-bench-eval-"))
    (folder / "bench_agent.py").write_text(AGENT)
    suite = cases(args.cases)
    hand_loop(suite[:500], folder)  # warm imports and caches for both
    engine_run(suite[:500], folder, "instant_async", 1, 64, "warm")

    hands: list[float] = []
    engines: dict[str, list[float]] = {"instant_async": [], "instant": []}
    for _ in range(args.rounds):  # taking turns, so a busy moment hits each alike
        hands.append(hand_loop(suite, folder))
        for target, seconds in engines.items():
            elapsed, passed = engine_run(suite, folder, target, 1, 64, target)
            assert passed == args.cases, f"{target}: only {passed} trials passed"
            seconds.append(elapsed)
    hand = Figure(tuple(hands))
    print(f"per-case overhead: {args.cases:,} cases, instant agent, run file written; "
          f"median [lowest–highest] of {args.rounds} rounds")
    print(machine())
    print(f"  hand-written loop:            {hand.median / args.cases * 1e6:8.1f} µs/case")
    for target, label in (("instant_async", "engine, async agent:"),
                          ("instant", "engine, sync agent (thread):")):
        figure = Figure(tuple(engines[target]))
        ratios = Figure(tuple(e / h for e, h in zip(engines[target], hands, strict=True)))
        per_case = figure.median / args.cases
        print(f"  {label:<29} {per_case * 1e6:8.1f} µs/case "
              f"[{figure.low / args.cases * 1e6:.1f}–{figure.high / args.cases * 1e6:.1f}]   "
              f"ratio to the loop {ratios.median:.2f} [{ratios.low:.2f}–{ratios.high:.2f}]   "
              f"{1.3e-3 / per_case:5.0f}x below 1.3 ms, {4e-3 / per_case:5.0f}x below 4 ms")

    slow_cases = cases(1000)
    elapsed, passed = engine_run(slow_cases, folder, "slow", 3, 64, "slow")
    assert passed == 3000, f"only {passed} of 3000 trials passed"
    ideal = 1000 * 3 * 0.05 / 64
    print("concurrency: 1,000 cases x 3 trials, 50 ms agent, concurrency 64")
    print(f"  wall {elapsed:.2f} s, ideal {ideal:.2f} s: {(elapsed / ideal - 1) * 100:+.1f} % "
          f"over the ideal")

    count = args.isolated_cases
    some = cases(count)
    timed = {mode: min(engine_run(some, folder, "instant", 1, 8, mode.replace("-", "_"),
                                  mode) for _ in range(2))
             for mode in ("in-process", "process")}
    for mode, (_, passed) in timed.items():
        assert passed == count, f"{mode}: only {passed} of {count} trials passed"
    inside, child = timed["in-process"][0], timed["process"][0]
    print(f"isolation: {count:,} cases, instant sync agent, concurrency 8")
    print(f"  in-process:                   {inside / count * 1e6:8.1f} µs/case")
    print(f"  child process (default):      {child / count * 1e6:8.1f} µs/case   "
          f"ratio to in-process {child / inside:.2f}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
