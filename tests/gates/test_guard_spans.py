"""The guard's GenAI spans: what the real OpenTelemetry SDK exports reads back as the native log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff

from evalsuite import Run, read_log_runs
from gates import Guard, Workspace
from tests.openinference_producers import _otlp_json_lines

AGENT = "refund-agent"
CONTEXT = {"customer_id": "C-1001", "channel": "chat", "order_ids": ["A-1001"]}


@pytest.fixture
def exported() -> Iterator[Any]:
    """An in-memory exporter on the process's SDK tracer provider (set here if none is)."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "refund-service"}))
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # the provider keeps the processor; a shut exporter takes nothing


def _guarded_run(guard: Guard, run_id: str) -> None:
    """A run with an answered call, a failed one, a denied one, one held for a person
    and never answered, and an answer."""
    with guard.run(run_id, goal="Where is my order A-1001? Close my account after.",
                   context=CONTEXT):
        looked = guard.call("lookup_order", {"order_id": "A-1001"})
        assert looked.effect == "allow" and looked.call_id is not None
        guard.result(looked.call_id, {"status": "shipped", "total": 42.5, "items": [1, 2]})
        ticket = guard.call("create_ticket", {"subject": "where is A-1001?"})
        assert ticket.effect == "allow" and ticket.call_id is not None
        guard.result(ticket.call_id, error="ticket service 503: try again later")
        assert guard.call("wire_money", {"to": "anyone", "amount": 10}).effect == "deny"
        assert guard.call("close_account", {"customer_id": "C-1001"}).effect == "review"
        guard.output("Order A-1001 has shipped; a person will confirm the closure.")


def _as_collector_writes(spans: Any, path: Path) -> Path:
    """The finished spans as OTLP/JSON lines, one export request per span as a
    SimpleSpanProcessor sends them (the root span last)."""
    path.write_text("".join(_otlp_json_lines([span]) for span in spans), encoding="utf-8")
    return path


def _compared(run: Run) -> dict[str, Any]:
    """What both logs must agree on: the goal, context, calls, results, outputs and why
    the run ended, with every step's time but an output's (see guard_spans)."""
    steps = [step.model_dump(exclude_none=True, exclude={"at"} if step.kind == "output"
                             else set()) for step in run.steps]
    return {"run_id": run.run_id, "agent": run.agent, "started_at": run.started_at,
            "context": run.context, "steps": steps,
            "outcome": run.outcome.model_dump() if run.outcome else None}


def test_spans_read_back_as_the_run_the_native_log_holds(back_in_full: Workspace,
                                                         tmp_path: Path, exported: Any) -> None:
    """The SDK's export of a guarded run, read by the OTLP reader, is the native log's run."""
    native = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=native)
    _guarded_run(guard, "live-spans-1")
    guard.close()
    spans = exported.get_finished_spans()
    assert [s.name for s in spans] == [
        "execute_tool lookup_order", "execute_tool create_ticket", "execute_tool wire_money",
        "execute_tool close_account", f"invoke_agent {AGENT}"]
    [logged] = read_log_runs(native)
    [traced] = read_log_runs(_as_collector_writes(spans, tmp_path / "spans.jsonl"), "otel")
    assert DeepDiff(_compared(logged), _compared(traced)) == {}
    assert [s.kind for s in traced.steps] == ["user_input", "tool_call", "tool_result",
                                               "tool_call", "tool_result", "tool_call",
                                               "tool_result", "tool_call", "output"]
    assert traced.metadata["conversation_id"] == "live-spans-1"


def test_spans_carry_the_decisions_as_the_native_log_does(back_in_full: Workspace,
                                                          tmp_path: Path, exported: Any) -> None:
    """Each tool span and each output's event holds the guard's decision of that step."""
    native = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=native)
    _guarded_run(guard, "live-spans-2")
    guard.close()
    [logged] = read_log_runs(native)
    *tools, agent = exported.get_finished_spans()
    decided = {span.attributes["reinstate.step"]: span.attributes for span in tools}
    decided |= {event.attributes["reinstate.step"]: event.attributes for event in agent.events
                if event.name == "reinstate.decision"}
    assert sorted(decided) == sorted(int(k.removeprefix("guard.step."))
                                     for k in logged.metadata if k.startswith("guard.step."))
    for step, attributes in decided.items():
        native_decision = logged.metadata[f"guard.step.{step}"]
        assert {k: attributes[f"reinstate.decision.{k}"] for k in ("effect", "rule", "reason")
                } == {k: native_decision[k] for k in ("effect", "rule", "reason")}
    assert dict(agent.attributes)["gen_ai.operation.name"] == "invoke_agent"
    assert json.loads(str(agent.attributes["reinstate.context"])) == CONTEXT


def test_a_call_a_reviewer_edited_carries_the_arguments_that_ran(
        back_in_full: Workspace, tmp_path: Path, exported: Any) -> None:
    """The span of an edited call holds the edited arguments, the agent's beside them."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    asked = {"customer_id": "C-1001", "reason": "moving abroad"}
    with guard.run("live-spans-edit", goal="close my account", context=CONTEXT) as run:
        held = run.call("close_account", asked)
        assert held.effect == "review" and held.call_id is not None
        run.revise(held.call_id, {"customer_id": "C-1001"}, by="rita", review="R-7")
        run.result(held.call_id, {"status": "closed"})
    guard.close()
    [tool] = [s for s in exported.get_finished_spans() if s.name == "execute_tool close_account"]
    attributes = dict(tool.attributes)
    assert json.loads(attributes["gen_ai.tool.call.arguments"]) == {"customer_id": "C-1001"}
    assert json.loads(attributes["reinstate.tool.call.requested_arguments"]) == asked
    assert attributes["reinstate.review.id"] == "R-7"


def test_a_run_ended_by_an_exception_says_so_in_both_logs(back_in_full: Workspace,
                                                         tmp_path: Path, exported: Any) -> None:
    """A run that raised ends with the error as its stop reason and an error status."""
    from opentelemetry.trace import StatusCode

    native = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=native)
    with pytest.raises(TimeoutError), guard.run("live-spans-3", goal="status of A-1001"):
        guard.call("lookup_order", {"order_id": "A-1001"})
        raise TimeoutError("the model did not answer")
    guard.close()
    spans = exported.get_finished_spans()
    [logged] = read_log_runs(native)
    [traced] = read_log_runs(_as_collector_writes(spans, tmp_path / "spans.jsonl"), "otel")
    assert DeepDiff(_compared(logged), _compared(traced)) == {}
    assert traced.outcome is not None
    assert traced.outcome.stop_reason == "error: TimeoutError: the model did not answer"
    agent = spans[-1]
    assert agent.status.status_code == StatusCode.ERROR
    assert agent.attributes["error.type"] == "TimeoutError"


def test_a_run_opened_inside_another_is_a_trace_of_its_own(back_in_full: Workspace,
                                                           tmp_path: Path, exported: Any) -> None:
    """Two runs nested in one thread export two traces, each read back as its own run."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    with guard.run("outer", goal="status of A-1001"):
        guard.call("lookup_order", {"order_id": "A-1001"})
        with guard.run("inner", goal="status of A-1002"):
            guard.call("lookup_order", {"order_id": "A-1002"})
        guard.output("A-1001 has shipped.")
    guard.close()
    spans = exported.get_finished_spans()
    assert len({span.context.trace_id for span in spans}) == 2
    traced = read_log_runs(_as_collector_writes(spans, tmp_path / "spans.jsonl"), "otel")
    assert sorted((r.run_id, [s.kind for s in r.steps]) for r in traced) == [
        ("inner", ["user_input", "tool_call"]),
        ("outer", ["user_input", "tool_call", "output"])]


@pytest.mark.slow
def test_without_a_configured_sdk_the_guard_loads_no_opentelemetry(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """With no tracer provider set, a guarded run imports nothing of OpenTelemetry."""
    code = (f"import sys\nfrom gates import Guard\n"
            f"guard = Guard({str(back_in_full.root)!r}, {AGENT!r}, "
            f"log=__import__('pathlib').Path({str(tmp_path / 'g.jsonl')!r}))\n"
            "with guard.run('r', goal='status of A-1001'):\n"
            "    guard.call('lookup_order', {'order_id': 'A-1001'})\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "g.jsonl").stat().st_size > 0
