"""An agent framework's trace read back: an OpenAI Agents SDK agent (instructions, a
``@function_tool`` refund tool, ``Runner.run_sync``) against a local scripted chat server,
its trace turned into OpenInference spans by openinference-instrumentation-openai-agents
and exported as OTLP/JSON (tests/openinference_producers.py). Each turn is a trace: the
SDK's workflow and agent spans (AGENT, with ``agent.name``), a CHAIN span per turn, an LLM
span per model call and a TOOL span per tool run (without the call's id)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalsuite import Output, Run, ToolCall, ToolResult, read_log_runs, read_logs
from gates import Evidence, Workspace, load_inputs
from gates._gate.logging_check import logging as logging_check
from regressions import logging_gaps
from tests.conftest import RunCli
from tests.openinference_producers import (
    AGENT,
    ANSWER,
    REFUND_ARGS,
    REFUND_RESULT,
    SECOND_ARGS,
    SECOND_RESULT,
    STEPS,
    SYSTEM,
    assert_the_conversation,
    produce_agents_sdk,
)

pytestmark = pytest.mark.slow  # each file is made by a child process running the agent

# What the spans cannot say: the SDK's generation span of a chat-completions model keeps
# the answer but not its finish_reason, so nothing shows the answer was not cut off.
NO_STOP_REASON = ("completion", "no reasoning and no stop reason logged")


@pytest.fixture(scope="module")
def two_turns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The refund and a follow-up question, two Runner.run_sync traces of one session."""
    return produce_agents_sdk(tmp_path_factory.mktemp("agents") / "agents.otlp.jsonl")


def test_an_agents_sdk_session_is_one_run_with_every_step(two_turns: Path) -> None:
    """Two turns' traces sharing a session.id read as one run of the agent named by its
    AGENT span: the instructions as context, each user message and answer once, the refund
    with its exact arguments and the TOOL span's result, the calls' tokens and model."""
    runs = read_log_runs(two_turns)
    assert len(runs) == 1 and runs[0].run_id == "sess-7731"
    run = runs[0]
    assert run.agent == AGENT
    assert run.context == {"system": SYSTEM}
    assert_the_conversation(run)
    assert run.usage is not None and run.usage.model_calls == 3
    assert (run.usage.input_tokens, run.usage.output_tokens) == (120 + 140 + 160, 60)
    assert run.metadata["model"] == "gpt-4o" and run.metadata["provider"] == "openai"
    assert run.metadata["traces"] == 2 and run.metadata["service"] == "refund-agent"
    assert run.outcome is None  # no finish reason on the spans, and none made up
    assert [(g.question, g.detail) for g in logging_gaps(run, "otel")] == [NO_STOP_REASON]


def test_runs_are_found_by_the_agent_the_sdk_names(two_turns: Path) -> None:
    """read_logs(agent=…) keeps the agent's parts, and only those: the agent is read from
    the AGENT span's agent.name. (Before, no part named an agent, and a run naming none is
    taken as whichever agent is asked for: another agent's gate checked this one's runs.)"""
    parts = list(read_logs([two_turns], agent=AGENT))
    assert [p.run_id for p in parts] == ["sess-7731"] * 2
    assert [p.header.agent for p in parts if p.header is not None] == [AGENT] * 2
    assert list(read_logs([two_turns], agent="another-agent")) == []


def test_a_turn_without_a_session_is_its_trace(tmp_path: Path) -> None:
    """Without using_session the turn's trace is the run, under its trace id."""
    run, = read_log_runs(produce_agents_sdk(tmp_path / "one.jsonl", session=None,
                                            second_turn=False))
    assert run.run_id == run.metadata["trace_id"] and "session_id" not in run.metadata
    assert run.agent == AGENT and run.context == {"system": SYSTEM}
    assert [s.kind for s in run.steps] == STEPS[:4]
    assert [s.content for s in run.steps if isinstance(s, Output)] == [ANSWER]


def test_two_calls_of_one_tool_get_each_its_own_result(tmp_path: Path) -> None:
    """The model asks for two refunds in one answer and the SDK runs both: the TOOL spans
    name no call id, yet each result is paired with its own call (arguments and result)."""
    run, = read_log_runs(produce_agents_sdk(tmp_path / "two.jsonl", second_turn=False,
                                            two_refunds=True))
    assert [s.kind for s in run.steps] == [
        "user_input", "tool_call", "tool_call", "tool_result", "tool_result", "output"]
    assert _paired(run) == {"call_refund_1": (REFUND_ARGS, REFUND_RESULT),
                            "call_refund_2": (SECOND_ARGS, SECOND_RESULT)}


def _paired(run: Run) -> dict[str | None, tuple[object, object]]:
    """Each call's id with its arguments and the result paired with it."""
    calls = {i: s for i, s in enumerate(run.steps) if isinstance(s, ToolCall)}
    results = {i: s for i, s in enumerate(run.steps) if isinstance(s, ToolResult)}
    return {calls[c].call_id: (calls[c].arguments, results[r].result)
            for c, r in run.pairs().items()}


def _tool_spans_swapped(path: Path) -> None:
    """The export with its two TOOL spans' times swapped: the second call's tool started
    first, as tools the SDK runs together may."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    spans = [span for line in lines for resource in line["resourceSpans"]
             for scope in resource["scopeSpans"] for span in scope["spans"]
             if {"key": "openinference.span.kind", "value": {"stringValue": "TOOL"}}
             in span["attributes"]]
    assert len(spans) == 2
    first, second = spans
    for key in ("startTimeUnixNano", "endTimeUnixNano"):
        first[key], second[key] = second[key], first[key]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_tools_run_together_are_paired_by_their_arguments(tmp_path: Path) -> None:
    """The two refunds' TOOL spans name no call id and the second one started first: each
    is still paired with the call asked with the arguments it ran with, not with the
    earliest call of its tool."""
    export = produce_agents_sdk(tmp_path / "two.jsonl", second_turn=False, two_refunds=True)
    _tool_spans_swapped(export)
    run, = read_log_runs(export)
    assert _paired(run) == {"call_refund_1": (REFUND_ARGS, REFUND_RESULT),
                            "call_refund_2": (SECOND_ARGS, SECOND_RESULT)}


def test_ingest_and_the_gates_logging_check_read_the_agents_runs(
        two_turns: Path, example: Workspace, cli: RunCli) -> None:
    """`reinstate ingest` writes the one run with its agent, context and steps; the gate's
    logging check finds the agent's one run, and no gap but the one the spans really have."""
    (example.root / "agents.jsonl").write_bytes(two_turns.read_bytes())
    read = cli("ingest", "agents.jsonl", "--out", "runs.jsonl", cwd=example.root)
    assert read.returncode == 0, read.stderr
    rows = [line for line in read.stdout.splitlines() if "otel" in line and "│" in line]
    assert len(rows) == 1 and "│ 1    │ 6     │ 1" in rows[0], read.stdout
    written = [json.loads(line) for line in
               (example.root / "runs.jsonl").read_text().splitlines()]
    assert [r["agent"] for r in written if r["kind"] == "run"] == [AGENT] * 2  # one a trace
    run, = read_log_runs(example.root / "runs.jsonl")  # native JSONL: the parts are one run
    assert (run.run_id, run.agent, run.context) == ("sess-7731", AGENT, {"system": SYSTEM})
    assert [s.kind for s in run.steps] == STEPS
    assert [s.model_dump(exclude={"at"}) for s in run.steps] == [
        s.model_dump(exclude={"at"}) for s in read_log_runs(two_turns)[0].steps]

    shutil.rmtree(example.logs_dir)
    example.logs_dir.mkdir()
    shutil.copy(two_turns, example.logs_dir / "agents.otlp.jsonl")
    result = logging_check(load_inputs(example, AGENT), Evidence([], frozenset()))
    assert result.data is not None and result.data.runs_checked == 1, result.summary
    finding, = result.findings  # the run's place: file, line and span
    assert finding.startswith(f"sess-7731: {': '.join(NO_STOP_REASON)} "
                              "(logs/agents.otlp.jsonl:"), result.findings
