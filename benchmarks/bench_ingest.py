"""Ingest and scope-query throughput on logs of a million steps, against a same-run baseline.

Generates, in a temporary folder, a native JSONL log and an OTLP/JSON GenAI trace log of
``--steps`` steps each (default 1,000,000), and a quarter-size pair. For each log it
measures, each in a fresh child process so peak memory is the measurement's own:

- **baseline**: read the file line by line and parse every line with the JSON parser
  reinstate uses (pydantic-core's, via ``pydantic_core.from_json``), doing nothing else;
- **ingest**: what ``reinstate ingest FILE`` does: detect the format, parse and validate
  every record into the run record, count runs, steps and tool calls;
- **scope query**: what ``reinstate investigate`` does on its first pass: the same, plus
  matching a signature (a tool and a JSON Schema on its arguments) against every step.

Each is taken ``--rounds`` times (3 by default), baseline, ingest and scope query one
after the other in every round. It prints steps per second, the ratio of each to the
baseline (the aim is at least 0.5) as the median with the lowest and highest over the
rounds, by CPU time (``time.process_time`` in the child: comparable on a busy machine)
and by wall time, the peak RSS for both log sizes (the aim is memory that stays flat as
the log grows), and the machine's load when measured.

    python benchmarks/bench_ingest.py [--steps N] [--rounds N] [--logs both|native|otlp]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _figures import Figure, machine

STEPS_PER_RUN = 7  # user input, reasoning, 2 × (tool call, tool result), output
SIGNATURE = {"match": [{"kind": "tool_call", "tool": "issue_refund", "arguments": {
    "type": "object", "required": ["refund_to"],
    "properties": {"refund_to": {"type": "string", "pattern": "^store_credit:"}}}}]}


def _refund(n: int) -> dict[str, object]:
    destination = "store_credit:C-7731" if n % 97 == 0 else "original_payment_method"
    return {"order_id": f"A-{n % 10000:04d}", "amount": round(5 + n % 300 * 1.5, 2),
            "currency": "USD", "refund_to": destination}


def write_native(path: Path, steps: int) -> int:
    """A native log of about ``steps`` steps; returns the steps written."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        n = 0
        while written < steps:
            run = f"run-{n:08d}"
            t = f"2026-11-25T21:{n // 60 % 60:02d}:{n % 60:02d}"
            lines = [
                {"schema_version": 1, "kind": "run", "run_id": run, "agent": "refund-agent",
                 "agent_version": "1.4.0", "started_at": f"{t}Z",
                 "context": {"customer_id": f"C-{n % 5000}", "channel": "chat"}},
                {"run_id": run, "kind": "user_input", "at": f"{t}.100Z",
                 "content": f"Could you refund my order A-{n % 10000:04d}? It arrived broken."},
                {"run_id": run, "kind": "reasoning", "at": f"{t}.200Z",
                 "content": "intent=refund; look the order up, then refund it."},
                {"run_id": run, "kind": "tool_call", "tool": "lookup_order", "at": f"{t}.300Z",
                 "call_id": f"{run}-1", "arguments": {"order_id": f"A-{n % 10000:04d}"}},
                {"run_id": run, "kind": "tool_result", "tool": "lookup_order", "at": f"{t}.400Z",
                 "call_id": f"{run}-1", "result": {"total": 84.99, "status": "delivered",
                                                   "payment_method": "visa ending 4242"}},
                {"run_id": run, "kind": "tool_call", "tool": "issue_refund", "at": f"{t}.500Z",
                 "call_id": f"{run}-2", "arguments": _refund(n)},
                {"run_id": run, "kind": "tool_result", "tool": "issue_refund", "at": f"{t}.600Z",
                 "call_id": f"{run}-2", "result": {"refund_id": f"R-{n}", "status": "issued"}},
                {"run_id": run, "kind": "output", "at": f"{t}.700Z",
                 "content": "I've issued your refund; it takes 5-10 business days."},
            ]
            out.write("".join(json.dumps(line) + "\n" for line in lines))
            written += STEPS_PER_RUN
            n += 1
    return written


def _attrs(values: dict[str, object]) -> list[dict[str, object]]:
    out = []
    for key, value in values.items():
        if isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})
        else:
            out.append({"key": key, "value": {"stringValue": value}})
    return out


def write_otlp(path: Path, steps: int) -> int:
    """An OTLP/JSON log (one trace a line) of about ``steps`` steps; returns the steps."""
    written = 0
    base = 1_795_000_000_000_000_000
    with path.open("w", encoding="utf-8") as out:
        n = 0
        while written < steps:
            trace = f"{n:032x}"
            root = f"{n % (1 << 40):016x}"
            t0 = base + n * 10_000_000_000
            user = [{"role": "user", "parts": [{"type": "text", "content":
                     f"Could you refund my order A-{n % 10000:04d}? It arrived broken."}]}]
            common = {"gen_ai.provider.name": "openai", "gen_ai.agent.name": "refund-agent",
                      "gen_ai.conversation.id": f"conv-{n:08d}"}

            def span(i: int, name: str, start: int, end: int, attrs: dict[str, object],
                     parent: str | None = root, *, trace: str = trace, t0: int = t0,
                     root: str = root) -> dict[str, object]:
                body: dict[str, object] = {
                    "traceId": trace, "spanId": f"{i:02x}{root[2:]}", "name": name,
                    "kind": 1, "startTimeUnixNano": str(t0 + start * 1_000_000),
                    "endTimeUnixNano": str(t0 + end * 1_000_000), "attributes": _attrs(attrs)}
                if parent:
                    body["parentSpanId"] = parent
                return body

            call1 = {"type": "tool_call", "id": f"call_{n}_1", "name": "lookup_order",
                     "arguments": {"order_id": f"A-{n % 10000:04d}"}}
            call2 = {"type": "tool_call", "id": f"call_{n}_2", "name": "issue_refund",
                     "arguments": _refund(n)}
            chat = {**common, "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 400, "gen_ai.usage.output_tokens": 40}
            spans = [
                span(1, "chat gpt-4o", 10, 400, {**chat, "gen_ai.input.messages": json.dumps(user),
                     "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                         {"type": "reasoning", "content": "Look the order up first."}, call1],
                         "finish_reason": "tool_call"}])}),
                span(2, "execute_tool lookup_order", 410, 500, {
                    **common, "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "lookup_order", "gen_ai.tool.call.id": f"call_{n}_1",
                    "gen_ai.tool.call.arguments": json.dumps(call1["arguments"]),
                    "gen_ai.tool.call.result": json.dumps({"total": 84.99,
                                                           "status": "delivered"})}),
                span(3, "chat gpt-4o", 510, 900, {**chat, "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [call2], "finish_reason": "tool_call"}])}),
                span(4, "execute_tool issue_refund", 910, 1000, {
                    **common, "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "issue_refund", "gen_ai.tool.call.id": f"call_{n}_2",
                    "gen_ai.tool.call.arguments": json.dumps(call2["arguments"]),
                    "gen_ai.tool.call.result": json.dumps({"refund_id": f"R-{n}"})}),
                span(5, "chat gpt-4o", 1010, 1400, {**chat, "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content":
                      "I've issued your refund; it takes 5-10 business days."}],
                      "finish_reason": "stop"}])}),
                span(0, "invoke_agent refund-agent", 0, 1500, {
                    **common, "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.version": "1.4.0", "gen_ai.input.messages": json.dumps(user),
                    "gen_ai.system_instructions": json.dumps(
                        [{"type": "text", "content": "You are Harbor Goods' support agent."}])},
                     parent=None),
            ]
            request = {"resourceSpans": [{"resource": {"attributes": _attrs(
                {"service.name": "refund-agent"})}, "scopeSpans": [{"scope": {
                    "name": "opentelemetry.instrumentation.openai_v2"}, "spans": spans}]}]}
            out.write(json.dumps(request) + "\n")
            written += STEPS_PER_RUN
            n += 1
    return written


def measure(kind: str, path: Path) -> dict[str, float]:
    """Run one measurement in this process: wall and CPU seconds, steps, peak RSS (MiB).

    Imports happen here, in the child, and before the clocks start: the parent only
    generates logs, and every figure is reading alone. CPU time (``time.process_time``)
    is this process's own, so it stays comparable when other work shares the machine.
    """
    import pydantic_core

    from evalsuite import Criterion, read_logs
    from gates import ingest
    from regressions import ScopeSearch, Signature

    steps = 0
    start, cpu = time.perf_counter(), time.process_time()
    if kind == "baseline":
        with path.open("rb") as handle:
            for line in handle:
                pydantic_core.from_json(line)
    elif kind == "ingest":
        done = ingest([path])
        steps = sum(f.steps for f in done.files)
    else:
        criteria: dict[str, Criterion] = {}
        search = ScopeSearch(Signature.model_validate(SIGNATURE), criteria)
        for part in read_logs([path]):
            search.feed(part)
        steps = search.scope().steps_searched
    cpu, seconds = time.process_time() - cpu, time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu": cpu, "steps": steps, "rss_mib": rss}


def child(kind: str, path: Path) -> dict[str, float]:
    """One measurement in a fresh interpreter."""
    done = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


KINDS = ("baseline", "ingest", "scope")


def rounds_of(path: Path, rounds: int) -> dict[str, list[dict[str, float]]]:
    """``rounds`` rounds of baseline, ingest and scope query, one after the other in each
    round, so each ratio compares figures taken under the same load."""
    taken: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            taken[kind].append(child(kind, path))
    return taken


def ratio(taken: dict[str, list[dict[str, float]]], kind: str, clock: str) -> Figure:
    """Baseline time ÷ ``kind``'s time, round by round (1.0 = as fast as parsing alone)."""
    return Figure(tuple(b[clock] / k[clock] for b, k in zip(taken["baseline"], taken[kind],
                                                            strict=True)))


def spread(figure: Figure) -> str:
    """``median [low–high]`` of a ratio."""
    return f"{figure.median:.2f} [{figure.low:.2f}–{figure.high:.2f}]"


def main() -> None:
    """Generate the logs, measure, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--logs", choices=("both", "native", "otlp"), default="both")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"))
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    logs = [(label, writer) for label, writer in (("native JSONL", write_native),
                                                  ("OTLP/JSON", write_otlp))
            if args.logs in ("both", label.split()[0].split("/")[0].lower())]
    with tempfile.TemporaryDirectory(prefix="reinstate-bench-") as folder:
        rows = []
        for label, writer in logs:
            for size in (args.steps // 4, args.steps):
                path = Path(folder) / f"{label.split()[0].split('/')[0].lower()}-{size}.jsonl"
                steps = writer(path, size)
                megabytes = path.stat().st_size / 1e6
                rows.append((label, steps, megabytes, rounds_of(path, args.rounds)))
                path.unlink()
        print(f"{args.rounds} rounds each; ratio = baseline time ÷ time, median [lowest–highest] "
              f"over the rounds (1.0 = as fast as parsing alone; aim ≥ 0.5)")
        print(f"{'log':<13} {'steps':>9} {'MB':>5} {'baseline steps/s':>17} "
              f"{'ingest steps/s':>15} {'ingest ratio CPU':>17} {'(wall)':>17} "
              f"{'scope ratio CPU':>17} {'(wall)':>17} {'peak RSS MiB base/ingest/scope':>31}")
        for label, steps, megabytes, taken in rows:
            for kind in ("ingest", "scope"):
                counted = {int(r["steps"]) for r in taken[kind]}
                assert counted == {steps}, (label, kind, steps, counted)
            base = Figure(tuple(r["cpu"] for r in taken["baseline"]))
            ingested = Figure(tuple(r["cpu"] for r in taken["ingest"]))
            rss = [max(r["rss_mib"] for r in taken[kind]) for kind in KINDS]
            print(f"{label:<13} {steps:>9} {megabytes:>5.0f} {steps / base.median:>17,.0f} "
                  f"{steps / ingested.median:>15,.0f} "
                  f"{spread(ratio(taken, 'ingest', 'cpu')):>17} "
                  f"{spread(ratio(taken, 'ingest', 'seconds')):>17} "
                  f"{spread(ratio(taken, 'scope', 'cpu')):>17} "
                  f"{spread(ratio(taken, 'scope', 'seconds')):>17} "
                  f"{rss[0]:>13.0f} / {rss[1]:.0f} / {rss[2]:.0f}")
        print("steps/s from median CPU time; " + machine())


if __name__ == "__main__":
    main()
