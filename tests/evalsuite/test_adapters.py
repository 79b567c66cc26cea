"""The adapter contract: every way of reaching an agent behaves the same to the engine.

Each adapter reaches the same small support agent (tests/data/agents): through Python
(sync and async), a JSON-lines subprocess, an OpenAI-compatible HTTP endpoint served by
a real local server, and the replay of a recorded run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evalsuite import (
    AgentSpec,
    Engine,
    EvalCase,
    InvalidInput,
    Output,
    PolicyDecision,
    RunSettings,
    ToolCall,
    ToolResult,
    ToolSpec,
    TrialResult,
    UserInput,
    build_adapter,
    read_log_runs,
    register_adapter,
    run_sync,
    write_runs,
)
from evalsuite import Run as RunRecord
from tests.chat_server import ChatServer

AGENTS = Path(__file__).parent.parent / "data" / "agents"
KINDS = ["python", "python-async", "python-in-process", "subprocess", "http", "replay"]


def case(*, with_refund_fixture: bool = True) -> EvalCase:
    """Refund order A-1 (total 40.00)."""
    tools: list[dict[str, Any]] = [
        {"tool": "lookup_order", "when": {"order_id": "A-1"},
         "result": {"order_id": "A-1", "total": 40.0}}]
    if with_refund_fixture:
        tools.append({"tool": "issue_refund", "result": {"refund_id": "R-1"}})
    return EvalCase.model_validate({
        "id": "refund-a1", "agent": "support", "tags": ["refund_request"],
        "input": {"messages": [{"role": "user", "content": "Please refund order A-1."}]},
        "tools": tools, "expect": [{"kind": "output_contains", "text": "Refunded"}],
    })


def scripted_refund(body: dict[str, Any]) -> dict[str, Any]:
    """A model that looks the order up, refunds it, then says how it went."""
    tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
    usage = {"prompt_tokens": 100, "completion_tokens": 20}

    def call(name: str, arguments: dict[str, Any], n: int) -> dict[str, Any]:
        function = {"name": name, "arguments": json.dumps(arguments)}
        tool_call = {"id": f"call_{n}", "type": "function", "function": function}
        message = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
        return {"choices": [{"message": message}], "usage": usage}

    if not tool_messages:
        return call("lookup_order", {"order_id": "A-1"}, 0)
    last = json.loads(tool_messages[-1]["content"])
    if len(tool_messages) == 1:
        return call("issue_refund", {"order_id": "A-1", "amount": last["total"]}, 1)
    text = (f"Could not refund: {last['error']}" if isinstance(last, dict) and "error" in last
            else "Refunded $40.00")
    return {"choices": [{"message": {"role": "assistant", "content": text}}], "usage": usage}


@pytest.fixture
def server() -> Iterator[ChatServer]:
    """A real HTTP server on a free local port."""
    running = ChatServer(scripted_refund)
    yield running
    running.close()


def recorded_log(folder: Path) -> Path:
    """What the agent did in production, as a native JSONL log."""
    path = folder / "production.jsonl"
    write_runs([RunRecord(run_id="prod-17", steps=[
        UserInput(content="Please refund order A-1."),
        ToolCall(tool="lookup_order", arguments={"order_id": "A-1"}, call_id="c1"),
        ToolResult(call_id="c1", result={"order_id": "A-1", "total": 40.0}),
        ToolCall(tool="issue_refund", arguments={"order_id": "A-1", "amount": 40.0},
                 call_id="c2"),
        ToolResult(call_id="c2", result={"refund_id": "R-1"}),
        Output(content="Refunded $40.00"),
    ])], path)
    return path


def agent(kind: str, folder: Path, server: ChatServer | None = None,
          **overrides: Any) -> tuple[AgentSpec, Path]:
    """An agent.yaml reaching the support agent through ``kind``."""
    for name in ("support_agent.py", "support_jsonl.py"):
        shutil.copy(AGENTS / name, folder / name)
    adapters: dict[str, dict[str, Any]] = {
        "python": {"kind": "python", "target": "support_agent:respond"},
        "python-async": {"kind": "python", "target": "support_agent:respond_async"},
        "python-in-process": {"kind": "python", "target": "support_agent:respond",
                              "isolation": "in-process"},
        "subprocess": {"kind": "subprocess", "command": [sys.executable, "support_jsonl.py"]},
        "http": {"kind": "http", "url": server.url if server else "http://127.0.0.1:9/x",
                 "model": "support-model"},
        "replay": {"kind": "replay", "log": recorded_log(folder).name},
    }
    spec = AgentSpec.model_validate({"name": "support", "version": "2.0.0",
                                     "adapter": {**adapters[kind], **overrides}})
    return spec, folder / "agent.yaml"


def trial(spec: AgentSpec, agent_file: Path, the_case: EvalCase | None = None,
          deny: str | None = None) -> TrialResult:
    """One trial through the engine, with an optional tool the policy denies."""
    def policy(call: ToolCall, history: object, context: object) -> PolicyDecision:
        if call.tool == deny:
            return PolicyDecision("deny", f"permissions.tools.{deny}.allowed", "not allowed")
        return PolicyDecision("allow", "permissions", "allowed")

    engine = Engine(build_adapter(spec, agent_file), RunSettings(retries=2, timeout_s=20),
                    policy=policy,
                    tools=[ToolSpec("lookup_order", "Read an order", {"type": "object"}),
                           ToolSpec("issue_refund", "Refund", {"type": "object"})])

    async def once() -> TrialResult:
        try:
            return await engine.trial(the_case or case(), 1)
        finally:
            await engine.adapter.aclose()
    return run_sync(once())


@pytest.fixture
def reach(tmp_path: Path, server: ChatServer) -> Callable[..., tuple[AgentSpec, Path]]:
    """Builds the agent for a kind, in a fresh folder."""
    def make(kind: str, **overrides: Any) -> tuple[AgentSpec, Path]:
        return agent(kind, tmp_path, server, **overrides)
    return make


@pytest.mark.parametrize("kind", KINDS)
def test_answers_and_every_call_is_recorded(kind: str, reach: Callable[..., Any]) -> None:
    """The agent's answer comes back and its tool calls are recorded in order, with results."""
    result = trial(*reach(kind))
    assert result.error is None and result.passed
    assert result.run is not None
    steps = [(s.kind, getattr(s, "tool", None)) for s in result.run.steps]
    assert steps == [("user_input", None), ("tool_call", "lookup_order"),
                     ("tool_result", "lookup_order"), ("tool_call", "issue_refund"),
                     ("tool_result", "issue_refund"), ("output", None)]
    refund = result.run.steps[3]
    assert isinstance(refund, ToolCall) and refund.arguments == {"order_id": "A-1",
                                                                 "amount": 40.0}
    assert result.run.final_output() == "Refunded $40.00"
    assert (result.run.agent, result.run.agent_version) == ("support", "2.0.0")


@pytest.mark.parametrize("kind", KINDS)
def test_a_denied_call_is_blocked_and_recorded(kind: str, reach: Callable[..., Any]) -> None:
    """A call the policy denies never reaches a fixture; it is counted as blocked."""
    result = trial(*reach(kind), deny="issue_refund")
    assert result.run is not None and result.blocked_calls == 1
    denied = result.run.steps[4]
    assert isinstance(denied, ToolResult) and denied.blocked
    assert denied.error == "denied by permissions.tools.issue_refund.allowed: not allowed"
    if kind != "replay":  # a live agent sees the denial and says so; a recording cannot
        assert result.run.final_output() == (
            "Could not refund: denied by permissions.tools.issue_refund.allowed: not allowed")


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_without_fixture_is_an_error_of_the_case(kind: str,
                                                        reach: Callable[..., Any]) -> None:
    """No fixture for a call is an error naming the call, never an empty result."""
    result = trial(*reach(kind), case(with_refund_fixture=False))
    assert result.error is not None and not result.passed
    assert "MissingFixture" in result.error and "issue_refund" in result.error


@pytest.mark.parametrize(("kind", "overrides", "message"), [
    ("python", {"target": "support_agent:crash"}, "model provider unreachable"),
    ("subprocess", {"env": {"MODE": "garbage"}}, "wrote garbage instead of a JSON line"),
    ("subprocess", {"env": {"MODE": "die"}}, "exited with code 7 mid-conversation "
                                            "(stderr: fatal: out of memory)"),
    ("subprocess", {"command": ["/no/such/agent"]}, "cannot start /no/such/agent"),
    ("replay", {"match": "run_id"}, "no recorded run in production.jsonl for case refund-a1"),
])
def test_a_broken_agent_is_an_error_that_says_what_happened(
        kind: str, overrides: dict[str, Any], message: str,
        reach: Callable[..., Any]) -> None:
    """A crash, garbage, a death mid-run or a missing recording is an error with the reason."""
    result = trial(*reach(kind, **overrides))
    assert result.error is not None and not result.passed
    assert message in result.error


def test_subprocess_is_started_once_and_reused(tmp_path: Path) -> None:
    """Several trials are served by one long-lived process."""
    spec, agent_file = agent("subprocess", tmp_path)
    adapter = build_adapter(spec, agent_file)
    engine = Engine(adapter, RunSettings(trials=4, concurrency=1))
    from evalsuite import run_cases
    results = run_cases(engine, [case()])
    assert [t.passed for t in results[0].trials] == [True] * 4
    assert len(adapter._all) == 0  # closed at the end of the run  # type: ignore[attr-defined]


def test_http_sends_tools_and_reports_usage(server: ChatServer,
                                            reach: Callable[..., Any]) -> None:
    """The endpoint receives the tool definitions; token usage is summed over model calls."""
    result = trial(*reach("http"))
    assert result.passed and result.run is not None and result.run.usage is not None
    assert (result.run.usage.input_tokens, result.run.usage.output_tokens,
            result.run.usage.model_calls) == (300, 60, 3)
    first = server.requests[0]
    assert first["model"] == "support-model"
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup_order", "issue_refund"]


def test_http_503_is_retried_as_a_transport_error(server: ChatServer,
                                                  reach: Callable[..., Any]) -> None:
    """A 503 from the endpoint is retried; the trial passes on the second attempt."""
    server.fail_first = [503]
    result = trial(*reach("http"))
    assert result.passed and result.attempts == 2


def test_http_500_is_the_cases_error_with_the_servers_message(
        server: ChatServer, reach: Callable[..., Any]) -> None:
    """A 500 (a gateway with no key) is not retried as a transport error: the case errors
    with what the server said, after exactly one request."""
    server.fail_first = [500, 500, 500]
    server.fail_body = {"error": {"message": "no upstream key for route refunds",
                                  "type": "gateway_error"}}
    result = trial(*reach("http"))
    assert result.error is not None and result.attempts == 1
    assert "HTTP 500 Internal Server Error: no upstream key for route refunds" in result.error
    assert len(server.requests) == 1


def test_http_429_is_retried_after_its_retry_after(server: ChatServer,
                                                   reach: Callable[..., Any]) -> None:
    """A 429 with Retry-After: 1 is retried no sooner than a second later, then passes."""
    server.fail_first = [429]
    server.fail_headers = {"Retry-After": "1"}
    server.fail_body = {"error": {"message": "rate limited"}}
    result = trial(*reach("http"))
    assert result.passed and result.attempts == 2
    assert server.times[1] - server.times[0] >= 0.95


def context_case() -> EvalCase:
    """The refund case, with context the agent is given besides the messages."""
    return case().model_copy(update={"input": case().input.model_copy(
        update={"context": {"customer_id": "C-9", "channel": "email"}})})


@pytest.mark.parametrize("prompt_from", ["inline", "file"])
def test_http_sends_the_system_prompt_context_and_headers(
        server: ChatServer, reach: Callable[..., Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, prompt_from: str) -> None:
    """The endpoint receives agent.yaml's system prompt first, the case's context next, and
    the configured headers with their ${VAR} read from the environment."""
    monkeypatch.setenv("GATEWAY_KEY", "sk-test-123")
    prompt = "You are Harbor Goods' refund agent. Refund only what was paid."
    if prompt_from == "file":
        (tmp_path / "prompts").mkdir()
        (tmp_path / "prompts" / "system.md").write_text(prompt, encoding="utf-8")
        given = {"system_prompt_file": "prompts/system.md"}
    else:
        given = {"system_prompt": prompt}
    result = trial(*reach("http", **given, headers={
        "Authorization": "Bearer ${GATEWAY_KEY}", "X-Route": "refunds-$${eu}"}),
        the_case=context_case())
    assert result.passed, result.error
    first = server.requests[0]["messages"]
    assert first[0] == {"role": "system", "content": prompt}
    assert first[1]["role"] == "system"
    assert json.loads(first[1]["content"].removeprefix("Context (JSON): ")) == {
        "customer_id": "C-9", "channel": "email"}
    assert first[2] == {"role": "user", "content": "Please refund order A-1."}
    assert all(h["authorization"] == "Bearer sk-test-123" for h in server.headers)
    assert server.headers[0]["x-route"] == "refunds-${eu}"
    assert "context" not in server.requests[0]


def test_http_sends_the_context_as_a_body_field_when_asked(
        server: ChatServer, reach: Callable[..., Any]) -> None:
    """``context: body`` puts the case's context in the request body, not in a message."""
    result = trial(*reach("http", context="body"), the_case=context_case())
    assert result.passed, result.error
    assert server.requests[0]["context"] == {"customer_id": "C-9", "channel": "email"}
    assert [m["role"] for m in server.requests[0]["messages"]] == ["user"]


def test_a_missing_header_variable_names_the_file_header_and_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header whose variable is not set stops the run before any request, naming
    agent.yaml, the header and the variable."""
    monkeypatch.delenv("GATEWAY_KEY", raising=False)
    spec, agent_file = agent("http", tmp_path, None,
                             headers={"Authorization": "Bearer ${GATEWAY_KEY}"})
    with pytest.raises(InvalidInput) as raised:
        build_adapter(spec, agent_file)
    assert str(raised.value) == (
        f"{agent_file}: $.adapter.headers.Authorization: environment variable GATEWAY_KEY "
        f"is not set (the header's value is read from it)")
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Authorization": "Bearer ${GATEWAY KEY}"}, "expected ${NAME} placeholders"),
    ({"Bad Header": "x"}, "String should match pattern"),
])
def test_a_malformed_header_is_refused_when_agent_yaml_loads(
        headers: dict[str, str], expected: str) -> None:
    """A header name that is not a token, or a value with a broken ${…}, is refused."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        AgentSpec.model_validate({"name": "support", "version": "1", "adapter": {
            "kind": "http", "url": "http://127.0.0.1:9/x", "model": "m", "headers": headers}})


def test_http_4xx_is_the_agents_error_and_not_retried(server: ChatServer,
                                                      reach: Callable[..., Any]) -> None:
    """A 400 is not a transport problem: one attempt, an error naming the status."""
    server.fail_first = [400]
    result = trial(*reach("http"))
    assert result.error is not None and "HTTP 400" in result.error
    assert result.attempts == 1


def test_refused_connection_is_retried_then_an_error(reach: Callable[..., Any]) -> None:
    """Nothing listening: retried, then an error, never a pass."""
    result = trial(*reach("http", url="http://127.0.0.1:9/v1/chat/completions"))
    assert result.error is not None and "ConnectError" in result.error
    assert result.attempts == 3


@pytest.mark.parametrize(("kind", "overrides"), [
    ("python-async", {"target": "support_agent:hang"}),
    ("subprocess", {"env": {"MODE": "hang"}}),
])
def test_an_agent_that_hangs_times_out(kind: str, overrides: dict[str, Any],
                                       reach: Callable[..., Any]) -> None:
    """A trial past its timeout is an error saying so; never a pass. These agents looked
    an order up before hanging, so the timeout is not retried: a retry would be judged
    without that call. (2 s: long enough for a loaded machine to start the agent and see
    its call before the timeout, which would otherwise be retried.)"""
    the_case = case().model_copy(update={"timeout_s": 2.0})
    result = trial(*reach(kind, **overrides), the_case)
    assert result.error == ("timed out after 2 s (not retried: the attempt had made tool "
                            "calls, which a retry would drop)")
    assert result.attempts == 1 and not result.passed


@pytest.mark.parametrize("kind", ["python", "python-in-process"])
@pytest.mark.parametrize(("target", "code"), [("leave", 3), ("leave_async", 4)])
def test_an_agent_calling_sys_exit_fails_its_trial_only(kind: str, target: str, code: int,
                                                        reach: Callable[..., Any]) -> None:
    """sys.exit() inside a Python agent is the trial's error, not the end of the gate."""
    result = trial(*reach(kind, target=f"support_agent:{target}"))
    assert result.error is not None and not result.passed
    assert "tried to end the process" in result.error and str(code) in result.error


def test_a_python_agent_runs_in_a_process_of_its_own(reach: Callable[..., Any]) -> None:
    """By default a Python agent answers from a child process, not the gate's."""
    result = trial(*reach("python", target="support_agent:whoami"))
    assert result.run is not None and result.error is None, result.error
    answer = result.run.final_output()
    assert answer is not None and answer.isdigit() and int(answer) != os.getpid()


def test_a_python_agent_in_a_child_process_keeps_the_session_api(
        reach: Callable[..., Any]) -> None:
    """The child's session has the gate session's API: tools, think, usage, ToolDenied."""
    result = trial(*reach("python", target="support_agent:uses_the_session_api"),
                   deny="issue_refund")
    assert result.run is not None and result.error is None, result.error
    assert result.run.final_output() == "tools=lookup_order,issue_refund usage=10/5 denied=yes"
    assert [s.kind for s in result.run.steps].count("reasoning") == 1
    assert result.run.usage is not None and result.run.usage.input_tokens == 10


# -- replay: which run, from which format, and a run that never answered ------------------

# Real tau-bench trajectories (MIT, see its LICENSE), read where they are; a test copies the
# few records it needs into its own folder.
TAU = Path(__file__).parents[3] / "shared" / "datasets" / "tau-bench" / (
    "gpt-4o-airline.subset.json")


def tau_records(folder: Path, count: int, last_user: str | None = None) -> tuple[Path, list[str]]:
    """The first ``count`` tau-bench records (ending on ``last_user``, if given), as a log."""
    picked = []
    for record in json.loads(TAU.read_text(encoding="utf-8")):
        users = [m["content"] for m in record["traj"] if m["role"] == "user"]
        if last_user is None or users[-1] == last_user:
            picked.append(record)
        if len(picked) == count:
            break
    path = folder / "tau.json"
    path.write_text(json.dumps(picked), encoding="utf-8")
    return path, [f"task-{r['task_id']}-trial-{r['trial']}" for r in picked]


def replay_agent(folder: Path, log: Path, match: str = "input") -> tuple[AgentSpec, Path]:
    """An agent.yaml replaying ``log``."""
    spec = AgentSpec.model_validate({"name": "support", "version": "2.0.0", "adapter": {
        "kind": "replay", "log": log.name, "match": match}})
    return spec, folder / "agent.yaml"


def test_replay_refuses_to_guess_between_runs_sharing_the_last_message(tmp_path: Path) -> None:
    """Two tau-bench runs both ending on the user's stop token: an error naming both."""
    log, run_ids = tau_records(tmp_path, 2, last_user="###STOP###")
    stop = EvalCase.model_validate({
        "id": "stop", "agent": "support", "tags": ["airline"],
        "input": {"messages": [{"role": "user", "content": "###STOP###"}]},
        "expect": [{"kind": "output_contains", "text": "anything"}]})
    result = trial(*replay_agent(tmp_path, log), stop)
    assert result.error is not None and not result.passed
    assert "2 recorded runs in tau.json share its last user message" in result.error
    assert all(run_id in result.error for run_id in run_ids)


def test_replay_reads_an_openai_log_as_any_reader_does(tmp_path: Path) -> None:
    """A tau-bench (OpenAI messages) run is replayed call by call through the sandbox."""
    log, (run_id,) = tau_records(tmp_path, 1)
    recorded = next(r for r in read_log_runs(log) if r.run_id == run_id)
    tools = sorted({c.tool for c in recorded.tool_calls()})
    the_case = EvalCase.model_validate({
        "id": run_id, "agent": "support", "tags": ["airline"],
        "input": {"messages": [{"role": "user", "content": "replayed by id"}]},
        "tools": [{"tool": t, "result": {"ok": True}} for t in tools],
        "expect": [{"kind": "tool_called", "tool": tools[0]}]})
    result = trial(*replay_agent(tmp_path, log, match="run_id"), the_case)
    assert result.error is None and result.passed, result.error
    assert result.run is not None
    assert [c.tool for c in result.run.tool_calls()] == [c.tool for c in recorded.tool_calls()]
    assert result.run.final_output() == recorded.final_output()


def test_a_recorded_run_without_a_final_answer_replays_up_to_its_last_step(
        tmp_path: Path) -> None:
    """A run cut off after a tool call replays its calls; it has no output, and no crash;
    the expectation on the answer is not met by no answer."""
    write_runs([RunRecord(run_id="cut-off", steps=[
        UserInput(content="Please refund order A-1."),
        ToolCall(tool="lookup_order", arguments={"order_id": "A-1"}, call_id="c1"),
        ToolResult(call_id="c1", result={"order_id": "A-1", "total": 40.0}),
        ToolCall(tool="issue_refund", arguments={"order_id": "A-1", "amount": 40.0},
                 call_id="c2"),
    ])], tmp_path / "production.jsonl")
    the_case = EvalCase.model_validate({
        **case().model_dump(exclude={"expect"}),
        "expect": [{"kind": "tool_called", "tool": "issue_refund"},
                   {"kind": "output_contains", "text": "Refunded"}]})
    result = trial(*replay_agent(tmp_path, tmp_path / "production.jsonl"), the_case)
    assert result.error is None and not result.passed, result.error
    assert result.run is not None and result.run.final_output() is None
    assert [s.kind for s in result.run.steps][-1] == "tool_result"
    assert result.judgements[0].passed
    assert not result.judgements[1].passed
    assert result.judgements[1].detail.startswith("no output: the run ended without an answer")


@pytest.mark.attack
def test_replay_judges_the_answer_to_the_cases_message_not_a_later_one(
        tmp_path: Path) -> None:
    """The run went on after the answer the case asks about ("thanks", "You're welcome!"):
    the answer judged is the refund's, not the last of the run, which passed the case."""
    write_runs([RunRecord(run_id="went-on", steps=[
        UserInput(content="Please refund order A-1."),
        ToolCall(tool="lookup_order", arguments={"order_id": "A-1"}, call_id="c1"),
        ToolResult(call_id="c1", result={"order_id": "A-1", "total": 40.0}),
        Output(content="Refunded $4,000.00 to your store credit."),
        UserInput(content="Great, thanks."),
        ToolCall(tool="issue_refund", arguments={"order_id": "A-1", "amount": 40.0},
                 call_id="c2"),
        Output(content="You're welcome!"),
    ])], tmp_path / "production.jsonl")
    the_case = EvalCase.model_validate({
        **case().model_dump(exclude={"expect"}),
        "expect": [{"kind": "output_not_contains", "text": "4,000"}]})
    result = trial(*replay_agent(tmp_path, tmp_path / "production.jsonl"), the_case)
    assert result.error is None and not result.passed, result.error
    assert result.run is not None
    assert result.run.final_output() == "Refunded $4,000.00 to your store credit."
    # The call made after the next user message answered a message the case never sent.
    assert [c.tool for c in result.run.tool_calls()] == ["lookup_order"]


def test_replay_refuses_to_guess_between_turns_asking_the_same_message(
        tmp_path: Path) -> None:
    """The case's message asked twice in the found run: which answer is a guess, an error."""
    write_runs([RunRecord(run_id="asked-twice", steps=[
        UserInput(content="Please refund order A-1."), Output(content="Refunded $40.00"),
        UserInput(content="Please refund order A-1."), Output(content="Already done."),
    ])], tmp_path / "production.jsonl")
    result = trial(*replay_agent(tmp_path, tmp_path / "production.jsonl"), case())
    assert result.error is not None and not result.passed
    assert "run asked-twice asks its last user message 2 times" in result.error


@pytest.mark.parametrize("strict", [None, False])
def test_a_denied_attempt_fails_an_eval_case_unless_it_is_judged_on_effect(
        strict: bool | None, reach: Callable[..., Any]) -> None:
    """An eval case counts a denied call as made; with strict: false it passes as stopped."""
    data = case().model_dump(exclude={"expect"})
    data["expect"] = [{"kind": "tool_not_called", "tool": "issue_refund"}]
    if strict is not None:
        data["strict"] = strict
    result = trial(*reach("python"), EvalCase.model_validate(data), deny="issue_refund")
    (judgement,) = result.judgements
    denial = "denied by permissions.tools.issue_refund.allowed"
    if strict is None:  # eval-suite cases are strict by default: they measure the agent
        assert not result.passed and judgement.stopped_by is None
        assert judgement.detail.startswith("called issue_refund(")
        assert f"(attempted, {denial}; the case is strict" in judgement.detail
    else:
        assert result.passed
        assert judgement.stopped_by == ["permissions.tools.issue_refund.allowed"]
        assert judgement.detail == ("did not take effect: attempted issue_refund(order_id='A-1', "
                                    f"amount=40.0), {denial} (not allowed)")


def test_a_built_in_adapter_kind_cannot_be_taken_but_its_module_may_load_again() -> None:
    """Another factory under a built-in kind is refused; the built-in module imported again
    (as pytest's in-process runs do after dropping it) registers without an error."""
    import importlib

    import evalsuite._http_adapter as http_adapter

    with pytest.raises(ValueError, match="adapter kind 'http' is already registered"):
        register_adapter("http")(lambda *args: None)  # type: ignore[arg-type, return-value]
    sys.modules.pop("evalsuite._http_adapter")
    try:
        importlib.import_module("evalsuite._http_adapter")
    finally:
        sys.modules["evalsuite._http_adapter"] = http_adapter
