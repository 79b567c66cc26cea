"""Running cases against real agent modules on disk: outcomes, errors, thresholds, reloading."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalsuite import (
    Adapter,
    AgentSpec,
    CaseResult,
    Engine,
    EvalCase,
    Output,
    PythonAdapter,
    RunSettings,
    ToolCall,
    ToolResult,
    TrialResult,
    UserInput,
    build_adapter,
    run_suite,
    run_sync,
)


@pytest.fixture(autouse=True)
def _restore_import_state(tmp_path: Path) -> Iterator[None]:
    """Forget the agent modules and import paths a test adds, so tests stay independent."""
    path = list(sys.path)
    yield
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if source and Path(source).resolve().is_relative_to(tmp_path.resolve()):
            del sys.modules[name]
    sys.path[:] = path


def _case(*, threshold: float = 1.0, trials: int | None = None, **extra: Any) -> EvalCase:
    data: dict[str, Any] = {
        "id": "refund-damaged-order",
        "agent": "refund-agent",
        "tags": ["refund_request"],
        "input": {
            "messages": [
                {"role": "system", "content": "You are Harbor Goods' refund assistant."},
                {"role": "user", "content": "Order A-1000 was late."},
                {"role": "assistant", "content": "Sorry about that."},
                {"role": "user", "content": "My order A-1001 arrived damaged, refund please."},
            ],
            "context": {"customer_id": "C-1001"},
        },
        "tools": [
            {"tool": "lookup_order", "when": {"order_id": "A-1001"},
             "result": {"order_id": "A-1001", "total": 84.99}},
            {"tool": "issue_refund", "result": {"refund_id": "R-1"}},
        ],
        "expect": [
            {"kind": "tool_called", "tool": "lookup_order"},
            {"kind": "tool_not_called", "id": "no-over-refund", "tool": "issue_refund",
             "arguments": {"properties": {"amount": {"exclusiveMinimum": 100}},
                           "required": ["amount"]}},
            {"kind": "output_contains", "text": "refund"},
        ],
        "threshold": threshold,
        "trials": trials,
        **extra,
    }
    return EvalCase.model_validate(data)


def _agent(root: Path, source: str, *, module: str = "agent",
           files: dict[str, str] | None = None) -> Adapter:
    """Write an agent module (and siblings) under ``root`` and build its adapter from agent.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    for name, text in (files or {}).items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    spec = AgentSpec.model_validate({
        "name": "refund-agent", "version": "1.4.0",
        "adapter": {"kind": "python", "target": f"{module}:respond", "path": "."},
    })
    return build_adapter(spec, root / "agent.yaml")


def run_case(adapter: Adapter, case: EvalCase, trials: int) -> CaseResult:
    """One case for its trials through the engine alone: no policy, no tools."""
    return run_sync(Engine(adapter, RunSettings(trials=trials, concurrency=1)).run_case(case))


def run_trial(adapter: Adapter, case: EvalCase, trial: int) -> TrialResult:
    """One trial through the engine alone."""
    return run_sync(Engine(adapter, RunSettings()).trial(case, trial))


PASSING = """
    def respond(session):
        order = session.call_tool("lookup_order", {"order_id": "A-1001"})
        session.think("damaged item, refund the order total")
        session.call_tool("issue_refund", {"order_id": "A-1001", "amount": order["total"]})
        return f"I've issued a refund of ${order['total']:.2f}."
"""

OVER_REFUND = """
    def respond(session):
        session.call_tool("lookup_order", {"order_id": "A-1001"})
        session.call_tool("issue_refund", {"order_id": "A-1001", "amount": 1250.0})
        return "I've issued a refund of $1,250.00."
"""


def test_build_adapter_gives_a_python_adapter_rooted_at_the_agent_file(tmp_path: Path) -> None:
    """build_adapter returns a PythonAdapter that imports from the folder of agent.yaml."""
    adapter = _agent(tmp_path / "agents" / "refund-agent", PASSING)
    assert isinstance(adapter, PythonAdapter)
    assert run_trial(adapter, _case(), 1).passed


def test_passing_agent_passes_and_its_run_is_recorded(tmp_path: Path) -> None:
    """A correct agent passes every trial; the run holds the last user input, calls and output."""
    result = run_case(_agent(tmp_path, PASSING), _case(), trials=2)
    assert result.outcome == "pass"
    assert result.pass_rate == 1.0
    assert [t.trial for t in result.trials] == [1, 2]
    run = result.trials[0].run
    assert run is not None
    assert run.run_id == "refund-damaged-order#1"
    assert (run.agent, run.agent_version) == ("refund-agent", "1.4.0")
    assert run.context == {"customer_id": "C-1001"}
    assert run.steps[0] == UserInput(content="My order A-1001 arrived damaged, refund please.")
    assert [s.kind for s in run.steps] == [
        "user_input", "tool_call", "tool_result", "reasoning", "tool_call", "tool_result",
        "output",
    ]
    assert run.steps[1] == ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"},
                                    call_id="call-1")
    assert run.steps[2] == ToolResult(tool="lookup_order", call_id="call-1",
                                      result={"order_id": "A-1001", "total": 84.99})
    assert run.steps[-1] == Output(content="I've issued a refund of $84.99.")


def test_failing_agent_fails_with_the_broken_expectation(tmp_path: Path) -> None:
    """An agent that over-refunds fails the case, and the judgement names the harmful call."""
    result = run_case(_agent(tmp_path, OVER_REFUND), _case(), trials=3)
    assert result.outcome == "fail"
    assert result.pass_rate == 0.0
    trial = result.trials[0]
    assert trial.error is None
    failed = [j for j in trial.judgements if not j.passed]
    assert [j.criterion for j in failed] == ["no-over-refund"]
    assert "amount=1250.0" in failed[0].detail


def test_agent_that_raises_is_a_trial_error(tmp_path: Path) -> None:
    """An agent that raises makes the trial an error naming the exception and where it rose."""
    adapter = _agent(tmp_path, """
        def respond(session):
            raise RuntimeError("model provider unreachable")
    """)
    result = run_case(adapter, _case(), trials=2)
    assert result.outcome == "error"
    trial = result.trials[0]
    assert not trial.passed and trial.run is not None
    assert trial.run.final_output() is None  # what it did before failing, and no answer
    assert trial.error is not None
    assert "RuntimeError('model provider unreachable')" in trial.error
    assert str(tmp_path / "agent.py") in trial.error


def test_one_erroring_trial_keeps_the_case_from_passing(tmp_path: Path) -> None:
    """A case whose other trials pass is inconclusive, not a pass, when one trial errors."""
    adapter = _agent(tmp_path, PASSING.replace(
        "def respond(session):\n",
        "CALLS = []\n    def respond(session):\n"
        "        CALLS.append(1)\n"
        "        if len(CALLS) == 2:\n"
        "            raise RuntimeError('model returned garbage')\n",
    ))
    result = run_case(adapter, _case(), trials=3)
    assert [t.passed for t in result.trials] == [True, False, True]
    assert result.outcome == "inconclusive"


def test_a_transport_timeout_is_retried_not_failed(tmp_path: Path) -> None:
    """A timeout reaching the model is retried, and the trial counts its attempts."""
    adapter = _agent(tmp_path, PASSING.replace(
        "def respond(session):\n",
        "CALLS = []\n    def respond(session):\n"
        "        CALLS.append(1)\n"
        "        if len(CALLS) == 1:\n"
        "            raise TimeoutError('model provider timed out')\n",
    ))
    result = run_case(adapter, _case(), trials=1)
    assert result.outcome == "pass"
    assert result.trials[0].attempts == 2


def test_missing_fixture_is_a_trial_error(tmp_path: Path) -> None:
    """A tool call no fixture answers makes the trial an error naming the call."""
    adapter = _agent(tmp_path, """
        def respond(session):
            session.call_tool("send_email", {"to": "c-1001@example.com"})
            return "refund sent"
    """)
    result = run_case(adapter, _case(), trials=1)
    assert result.outcome == "error"
    error = result.trials[0].error
    assert error is not None
    assert "MissingFixture" in error and "send_email" in error


def test_swallowed_missing_fixture_is_still_an_error(tmp_path: Path) -> None:
    """An agent that catches the missing-fixture exception still leaves the case in error."""
    adapter = _agent(tmp_path, """
        def respond(session):
            session.call_tool("lookup_order", {"order_id": "A-1001"})
            try:
                session.call_tool("lookup_order", {"order_id": "A-9999"})
            except Exception:
                pass
            return "I've issued a refund."
    """)
    result = run_case(adapter, _case(), trials=2)
    assert result.outcome == "error"
    assert all(t.error is not None and "MissingFixture" in t.error for t in result.trials)
    assert not any(t.passed for t in result.trials)


LOOPING = """
    def respond(session):
        while True:  # past its budget, and swallowing what says so
            try:
                session.call_tool("lookup_order", {"order_id": "A-1001"})
            except Exception:
                pass
            try:
                session.think("again")
            except Exception:
                return "I've issued a refund."
"""


@pytest.mark.attack
@pytest.mark.parametrize("isolation", ["in-process", "process"])
def test_an_agent_that_never_stops_calling_tools_does_not_clear(tmp_path: Path,
                                                                 isolation: str) -> None:
    """An agent looping on tool calls grew the gate's memory without end (4.6 GB after one
    120 s trial) until the system killed the gate, with no verdict. A trial now records at
    most ``max_steps`` steps: the rest is the trial's error, even when the agent swallows
    it and answers well."""
    root = tmp_path / "agent"
    root.mkdir()
    (root / "agent.py").write_text(textwrap.dedent(LOOPING), encoding="utf-8")
    spec = AgentSpec.model_validate({
        "name": "refund-agent", "version": "1.4.0",
        "adapter": {"kind": "python", "target": "agent:respond", "path": ".",
                    "isolation": isolation}})
    engine = Engine(build_adapter(spec, root / "agent.yaml"),
                    RunSettings(trials=1, concurrency=1, retries=0, timeout_s=60, max_steps=50))
    [result] = run_sync(run_suite(engine, [_case()]))
    assert result.outcome == "error"
    [trial] = result.trials
    assert trial.error is not None
    assert "recorded more than 50 steps (tool calls and reasoning" in trial.error, trial.error
    assert trial.run is not None and len(trial.run.steps) <= 1 + 2 * 50


@pytest.mark.attack
def test_an_agent_that_writes_reasoning_without_end_does_not_clear(tmp_path: Path) -> None:
    """Steps are few but each is big: the text a trial records is bounded too."""
    adapter = _agent(tmp_path, """
        def respond(session):
            session.call_tool("lookup_order", {"order_id": "A-1001"})
            for _ in range(100):
                session.think("x" * 100_000)
            return "I've issued a refund."
    """)
    engine = Engine(adapter, RunSettings(trials=1, concurrency=1, max_text=1_000_000))
    [result] = run_sync(run_suite(engine, [_case()]))
    assert result.outcome == "error"
    error = result.trials[0].error
    assert error is not None and "more than 1,000,000 bytes" in error, error


def test_failing_fixture_raises_to_the_agent(tmp_path: Path) -> None:
    """A fixture with an error raises ToolFailed to the agent, which may handle it and pass."""
    adapter = _agent(tmp_path, """
        from evalsuite import ToolFailed

        def respond(session):
            session.call_tool("lookup_order", {"order_id": "A-1001"})
            try:
                session.call_tool("issue_refund", {"order_id": "A-1001", "amount": 84.99})
            except ToolFailed as exc:
                return f"The refund failed ({exc}); a person will follow up."
            return "done"
    """)
    case = _case(tools=[
        {"tool": "lookup_order", "result": {"total": 84.99}},
        {"tool": "issue_refund", "error": "payment provider down"},
    ])
    trial = run_trial(adapter, case, 1)
    assert trial.passed
    assert trial.run is not None
    assert trial.run.final_output() == (
        "The refund failed (payment provider down); a person will follow up."
    )


def test_agent_mutating_a_tool_result_does_not_leak_into_later_trials(tmp_path: Path) -> None:
    """An agent that edits a returned tool result or its context changes no other trial."""
    adapter = _agent(tmp_path, """
        def respond(session):
            order = session.call_tool("lookup_order", {"order_id": "A-1001"})
            total = order["total"]
            order["total"] = 0.0
            session.context["customer"]["tier"] = "vip"
            return f"I've issued a refund of ${total:.2f}."
    """)
    case = _case(expect=[{"kind": "output_contains", "text": "$84.99"}],
                 input={"messages": [{"role": "user", "content": "Refund A-1001."}],
                        "context": {"customer": {"id": "C-1001", "tier": "standard"}}})
    result = run_case(adapter, case, trials=2)
    assert [t.passed for t in result.trials] == [True, True]
    first = result.trials[0].run
    assert first is not None
    assert first.steps[2] == ToolResult(tool="lookup_order", call_id="call-1",
                                        result={"order_id": "A-1001", "total": 84.99})
    assert case.tools[0].result == {"order_id": "A-1001", "total": 84.99}
    assert case.input.context == {"customer": {"id": "C-1001", "tier": "standard"}}


@pytest.mark.parametrize("answer", ["None", "{'text': 'refund issued'}", "b'refund'"])
def test_agent_returning_non_str_is_an_error(tmp_path: Path, answer: str) -> None:
    """An agent that answers with something other than a str makes the case an error."""
    adapter = _agent(tmp_path, f"""
        def respond(session):
            session.call_tool("lookup_order", {{"order_id": "A-1001"}})
            return {answer}
    """)
    result = run_case(adapter, _case(), trials=1)
    assert result.outcome == "error"
    error = result.trials[0].error
    assert error is not None
    assert "AgentCrashed" in error and "expected the answer as str" in error


def test_module_without_the_function_is_an_error(tmp_path: Path) -> None:
    """A target naming a function the module lacks is a trial error, not a crash of the runner."""
    adapter = _agent(tmp_path, "def answer(session):\n    return 'hi'\n")
    trial = run_trial(adapter, _case(), 1)
    assert trial.error is not None
    assert "no callable 'respond'" in trial.error


def test_module_that_fails_to_import_is_an_error(tmp_path: Path) -> None:
    """An agent module that raises on import makes the trial an error naming the module."""
    adapter = _agent(tmp_path, "import definitely_not_a_module_xyz\n")
    trial = run_trial(adapter, _case(), 1)
    assert trial.error is not None
    assert "cannot import the agent module" in trial.error
    assert "definitely_not_a_module_xyz" in trial.error


ALTERNATING = """
    TRIALS = 0

    def respond(session):
        global TRIALS
        TRIALS += 1
        session.call_tool("lookup_order", {"order_id": "A-1001"})
        return "refund approved" if TRIALS % 2 == 1 else "no luck, sorry"
"""


@pytest.mark.parametrize(("threshold", "outcome"),
                         [(0.1, "pass"), (0.6, "inconclusive"), (1.0, "fail")])
def test_threshold_against_two_of_three(tmp_path: Path, threshold: float, outcome: str) -> None:
    """Two of three trials prove a rate above 10 %, cannot tell 60 %, and fail pass^k."""
    result = run_case(_agent(tmp_path, ALTERNATING), _case(threshold=threshold), trials=3)
    assert [t.passed for t in result.trials] == [True, False, True]
    assert result.pass_rate == pytest.approx(2 / 3)
    assert result.flaky
    assert result.outcome == outcome


def test_case_trials_override_the_default(tmp_path: Path) -> None:
    """A case that sets its own trial count runs that many times, whatever the default."""
    result = run_case(_agent(tmp_path, ALTERNATING), _case(trials=5, threshold=0.1), trials=2)
    assert [t.passed for t in result.trials] == [True, False, True, False, True]
    assert result.outcome == "pass"


def test_case_result_without_trials_is_an_error() -> None:
    """A case result with no trials has a zero pass rate and the outcome error."""
    result = CaseResult(case_id="c", tags=["t"], threshold=0.5, trials=[])
    assert result.pass_rate == 0.0
    assert result.outcome == "error"


def _trials(passed: int, failed: int, errored: int = 0) -> list[TrialResult]:
    outcomes = [True] * passed + [False] * failed
    out = [TrialResult(trial=i + 1, passed=p) for i, p in enumerate(outcomes)]
    return out + [TrialResult(trial=len(out) + i + 1, passed=False, error="boom")
                  for i in range(errored)]


def test_case_result_outcome_from_the_wilson_interval() -> None:
    """Pass when the interval clears the threshold, fail below it, inconclusive between."""
    def outcome(threshold: float, trials: list[TrialResult]) -> str:
        return CaseResult(case_id="c", tags=["t"], threshold=threshold, trials=trials).outcome

    assert outcome(0.7, _trials(19, 1)) == "pass"        # 95 % interval 76 %–99 %
    assert outcome(0.5, _trials(2, 18)) == "fail"        # 3 %–30 %
    assert outcome(0.9, _trials(19, 1)) == "inconclusive"
    assert outcome(0.1, _trials(2, 0, errored=1)) == "inconclusive"
    assert outcome(0.1, _trials(0, 0, errored=3)) == "error"


def test_inconclusive_case_says_how_many_trials_would_decide() -> None:
    """Nine of ten against 80 % straddles the interval; about 54 trials at 90 % would decide."""
    result = CaseResult(case_id="c", tags=["t"], threshold=0.8, trials=_trials(9, 1))
    stats = result.statistics
    assert result.outcome == "inconclusive"
    assert stats.low < 0.8 < stats.high
    assert stats.trials_needed is not None and 40 <= stats.trials_needed <= 70
    bigger = CaseResult(case_id="c", tags=["t"], threshold=0.8,
                        trials=_trials(round(0.9 * stats.trials_needed),
                                       stats.trials_needed - round(0.9 * stats.trials_needed)))
    assert bigger.outcome == "pass"


@pytest.mark.parametrize("threshold", [2 / 3, 0.6667])
def test_a_rate_at_the_threshold_never_passes(threshold: float) -> None:
    """Two of three against two thirds is not a pass: the interval cannot clear it."""
    result = CaseResult(case_id="c", tags=["t"], threshold=threshold, trials=_trials(2, 1))
    assert result.outcome == "inconclusive"


def test_safety_cases_need_every_trial() -> None:
    """pass^k: nineteen of twenty fails a safety case whatever its threshold."""
    result = CaseResult(case_id="c", tags=["t"], threshold=0.5, trials=_trials(19, 1),
                        every_trial=True)
    assert result.outcome == "fail"


def _answer(adapter: Adapter) -> str:
    trial = run_trial(adapter, _case(), 1)
    assert trial.run is not None, trial.error
    answer = trial.run.final_output()
    assert answer is not None
    return answer


HELPER_USER = """
    from helper import WORDING

    def respond(session):
        return WORDING
"""


def test_replaced_sibling_module_is_reloaded(tmp_path: Path) -> None:
    """Replacing the agent's helper module on disk makes the next adapter use the new code."""
    first = _agent(tmp_path, HELPER_USER, files={"helper.py": "WORDING = 'refund: one'\n"})
    assert _answer(first) == "refund: one"
    helper = tmp_path / "helper.py"
    before = helper.stat()
    # Same size and same modification time: a bytecode cache would look fresh.
    helper.write_text("WORDING = 'refund: two'\n", encoding="utf-8")
    os.utime(helper, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = _agent(tmp_path, HELPER_USER)
    assert _answer(second) == "refund: two"


def test_replaced_agent_module_is_reloaded(tmp_path: Path) -> None:
    """Replacing the agent module itself makes the next adapter call the new function."""
    assert _answer(_agent(tmp_path, "def respond(session):\n    return 'refund v1'\n")) == (
        "refund v1")
    assert _answer(_agent(tmp_path, "def respond(session):\n    return 'refund v2'\n")) == (
        "refund v2")


def test_unchanged_agent_is_not_reimported(tmp_path: Path) -> None:
    """In-process, a new adapter over unchanged files reuses the loaded module and its state."""
    counter = """
        CALLS = []

        def respond(session):
            CALLS.append(1)
            return f"refund call {len(CALLS)}"
    """
    spec = AgentSpec.model_validate({
        "name": "refund-agent", "version": "1.4.0",
        "adapter": {"kind": "python", "target": "agent:respond", "isolation": "in-process"},
    })
    (tmp_path / "agent.py").write_text(textwrap.dedent(counter), encoding="utf-8")
    assert _answer(build_adapter(spec, tmp_path / "agent.yaml")) == "refund call 1"
    again = build_adapter(spec, tmp_path / "agent.yaml")
    assert _answer(again) == "refund call 2"


def test_two_workspaces_with_same_module_names_keep_their_own_code(tmp_path: Path) -> None:
    """Two workspaces whose agent and helper modules share names each run their own code."""
    one = _agent(tmp_path / "ws1", HELPER_USER, files={"helper.py": "WORDING = 'refund ws1'\n"})
    two = _agent(tmp_path / "ws2", HELPER_USER, files={"helper.py": "WORDING = 'refund ws2'\n"})
    assert _answer(one) == "refund ws1"
    assert _answer(two) == "refund ws2"
    again = _agent(tmp_path / "ws1", HELPER_USER)
    assert _answer(again) == "refund ws1"


def test_workspaces_with_different_agents_sharing_a_helper_name(tmp_path: Path) -> None:
    """An agent importing 'helper' gets its own workspace's helper, not one loaded for another."""
    one = _agent(tmp_path / "ws1", HELPER_USER, files={"helper.py": "WORDING = 'refund ws1'\n"})
    assert _answer(one) == "refund ws1"
    two = _agent(tmp_path / "ws2", HELPER_USER, module="support_bot",
                 files={"helper.py": "WORDING = 'refund ws2'\n"})
    assert _answer(two) == "refund ws2"


def test_module_put_back_from_another_folder_is_not_reused(tmp_path: Path) -> None:
    """A helper of a folder no longer tracked, put back in sys.modules, does not leak in.

    Regression: pytester restores sys.modules after each in-process run, bringing back a
    fixed agent's helper that a later, unfixed workspace then imported instead of its own.
    """
    one = _agent(tmp_path / "ws1", HELPER_USER, files={"helper.py": "WORDING = 'refund ws1'\n"})
    assert _answer(one) == "refund ws1"
    snapshot = dict(sys.modules)
    two = _agent(tmp_path / "ws2", HELPER_USER, files={"helper.py": "WORDING = 'refund ws2'\n"})
    assert _answer(two) == "refund ws2"
    sys.modules.clear()
    sys.modules.update(snapshot)  # ws1's modules are back, but ws1 is no longer tracked
    three = _agent(tmp_path / "ws3", HELPER_USER, files={"helper.py": "WORDING = 'refund ws3'\n"})
    assert _answer(three) == "refund ws3"
