"""The runtime guard's cost per decision, against the bare replay decision, and its reload cost.

Replays every tool call, tool result and output of the example's logged runs through the
fixed controls in the same process: bare, with the layers the guard asks
(``replay(step, "stopped")`` then ``replay(step, "acceptance")``) over a ``History`` kept
by hand; and through a :class:`gates.Guard`, which on top asks whether the mode's files
changed before each decision (one read of the kernel's watch on Linux, else stats of the
store, its WAL and the incidents folder; the control files every ``controls_recheck_s``, and
also before each decision in the ``controls_recheck_s=0`` row: how the guard looked before),
keeps the history and writes the run log line by line. Then, when the OpenTelemetry SDK is
installed, the guard with a ``TracerProvider`` set (spans built and handed to an exporter
that drops them), against the bare replay again. Then the reload: what ``refresh()`` costs
when nothing changed (the stat check), when a control file was touched but not changed (a
digest), and when it changed (a full parse of the four control files, read once).

    python benchmarks/bench_guard.py [--runs N] [--rounds R]

CPU time (``time.process_time``) of this process, so other work on a busy machine counts
less than in wall time; figures are medians over rounds with the lowest and highest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _figures import Figure, machine

from evalsuite import History, Output, Run, Step, ToolCall, ToolResult, UserInput, read_log_runs
from gates import Guard, Workspace, run_gate
from gates._controls.replay import replay
from gates._demo import LOG, apply_fix, lay_out

AGENT = "refund-agent"


def cpu(function: Callable[[], object], rounds: int) -> Figure:
    """CPU seconds of ``function`` over ``rounds`` calls."""
    return interleaved([function], rounds)[0]


def interleaved(functions: list[Callable[[], object]], rounds: int) -> list[Figure]:
    """CPU seconds of each function over ``rounds`` calls, the functions taking turns each
    round, so a machine that gets busier or quieter weighs on all of them alike."""
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            start = time.process_time()
            function()
            samples[index].append(time.process_time() - start)
    return [Figure(tuple(s)) for s in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="runs replayed per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    root = lay_out(Path(tempfile.mkdtemp(prefix="reinstate-bench-guard-")) / "ws")
    workspace = Workspace.find(root)
    apply_fix(workspace)
    # A gate passed on these controls, as where the guard runs in production: mode full,
    # and every reload of changed controls looks for the verdict that proves them.
    assert run_gate(workspace, AGENT, actor="bench"), "the example's gate failed"
    logged = [r for r in read_log_runs(root / LOG) if r.steps]
    work = [logged[i % len(logged)] for i in range(args.runs)]
    decisions = sum(isinstance(s, ToolCall | Output) for r in work for s in r.steps)
    guard = Guard(workspace, AGENT, log=root / "bench-guard.jsonl")
    # The bare replay decides on the guard's own Controls object, not on a second load of
    # the same files: the same controls, and the same warm caches of their compiled rules.
    controls = guard._controls
    assert controls is not None, guard._controls_problem
    assert not guard._enforced[1], guard._enforced  # the controls decide, not review
    eager = Guard(workspace, AGENT, log=root / "bench-guard-eager.jsonl", controls_recheck_s=0)
    lazy = Guard(workspace, AGENT, log=root / "bench-guard-lazy.jsonl", recheck_s=0.1)

    def bare() -> None:
        for run in work:
            history = History()
            for step in run.steps:
                if isinstance(step, ToolCall | Output):
                    decision = replay(step, "stopped", controls, history=history,
                                      context=run.context)
                    if not decision.stopped:
                        replay(step, "acceptance", controls, history=history,
                               context=run.context)
                history.append(step)

    def decided() -> None:
        for run in work:
            history = History()
            for step in run.steps:
                if isinstance(step, ToolCall | Output):
                    guard.decide(step, history, run.context)
                history.append(step)

    def guarded() -> None:
        for number, run in enumerate(work):
            _through_guard(guard, run, f"bench-{number}")

    def guarded_eager() -> None:
        for number, run in enumerate(work):
            _through_guard(eager, run, f"bench-{number}")

    def guarded_lazy() -> None:
        for number, run in enumerate(work):
            _through_guard(lazy, run, f"bench-{number}")

    print(f"{len(work)} runs, {decisions} decisions a round (calls and outputs), "
          f"{args.rounds} rounds")
    bare_figure, decide_figure, guard_figure, eager_figure, lazy_figure = interleaved(
        [bare, decided, guarded, guarded_eager, guarded_lazy], args.rounds)
    print(f"  bare replay       {bare_figure.ms(per=decisions)} per decision")
    print(f"  guard.decide      {decide_figure.ms(per=decisions)} per decision (stat check, "
          f"mode, no log)")
    print(f"  through the guard {guard_figure.ms(per=decisions)} per decision "
          f"(log: {(root / 'bench-guard.jsonl').stat().st_size / 2**20:.1f} MiB)")
    print(f"  controls_recheck_s=0 {eager_figure.ms(per=decisions)} per decision (control "
          f"files stat'ed before every decision too, as before)")
    print(f"  recheck_s=0.1     {lazy_figure.ms(per=decisions)} per decision (mode looked "
          f"at every 0.1 s, not every decision)")
    print(f"  ratio guard / bare: {guard_figure.median / bare_figure.median:.2f}x (aim <= "
          f"1.2x); controls_recheck_s=0 {eager_figure.median / bare_figure.median:.2f}x; "
          f"recheck_s=0.1 {lazy_figure.median / bare_figure.median:.2f}x; decide alone / "
          f"bare: {decide_figure.median / bare_figure.median:.2f}x")

    permissions = workspace.agent_dir(AGENT) / "permissions.yaml"
    text = permissions.read_text()
    flips = iter(range(10**9))

    def unchanged() -> None:
        guard.refresh()

    def touched() -> None:
        permissions.touch()
        guard._controls_stamp = None  # as if the stamp moved, not the content
        guard.refresh()

    def changed() -> None:
        permissions.write_text(text + f"# edit {next(flips)}\n")
        guard._controls_stamp = None  # not waiting out the settle time
        guard.refresh()

    rounds = args.rounds * 20
    still = cpu(unchanged, rounds)
    same = cpu(touched, rounds)
    before = guard.reloads
    edited = cpu(changed, rounds)
    assert guard.reloads - before == rounds, "every edit must reload"
    print(f"reload, {rounds} rounds each:")
    print(f"  nothing changed (stat check) {still.ms()}")
    print(f"  touched, same content (digest) {same.ms()}")
    print(f"  changed (parse the controls) {edited.ms()}")
    guard.close()
    eager.close()
    lazy.close()
    _with_spans(workspace, root, work, bare, decisions, args.rounds)
    print(machine())


def _with_spans(workspace: Workspace, root: Path, work: list[Run],
                bare: Callable[[], object], decisions: int, rounds: int) -> None:
    """The guard with the OpenTelemetry SDK configured, against the bare replay; last, as
    a tracer provider once set stays set for every guard of the process."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        print("with spans: skipped (opentelemetry-sdk is not installed)")
        return

    class Dropped(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)
    traced = Guard(workspace, AGENT, log=root / "bench-guard-spans.jsonl")

    def guarded_traced() -> None:
        for number, run in enumerate(work):
            _through_guard(traced, run, f"bench-{number}")

    bare_figure, traced_figure = interleaved([bare, guarded_traced], rounds)
    print(f"with spans (SDK configured, spans dropped by the exporter), {rounds} rounds:")
    print(f"  bare replay       {bare_figure.ms(per=decisions)} per decision")
    print(f"  through the guard {traced_figure.ms(per=decisions)} per decision, "
          f"{traced_figure.median / bare_figure.median:.2f}x bare")
    traced.close()


def _through_guard(guard: Guard, run: Run, run_id: str) -> None:
    goal = next((s.content for s in run.steps if isinstance(s, UserInput)), "")
    ids: dict[str | None, str] = {}
    with guard.run(run_id, goal=goal, context=run.context):
        for step in run.steps:
            _one(guard, step, ids)


def _one(guard: Guard, step: Step, ids: dict[str | None, str]) -> None:
    if isinstance(step, ToolCall):
        decision = guard.call(step.tool, step.arguments)
        if decision.effect != "deny" and decision.call_id is not None:
            ids[step.call_id] = decision.call_id
    elif isinstance(step, ToolResult):
        call_id = ids.pop(step.call_id, None)
        if call_id is not None:
            guard.result(call_id, step.result, error=step.error)
    elif isinstance(step, Output):
        guard.output(step.content)


if __name__ == "__main__":
    main()
