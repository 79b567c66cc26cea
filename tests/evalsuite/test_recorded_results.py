"""Recorded tool results are data: JSON text parsed into values once, in the run model, with
the text kept, and acceptance criteria that read the run as permission conditions do.

The runs are two real tau-bench airline trajectories (tests/data/tau-bench, MIT), OpenAI
messages whose every tool result is a JSON string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from evalsuite import (
    BEHAVIOUR_VARIABLES,
    RUN_VARIABLES,
    Behaviour,
    Criterion,
    Run,
    ToolResult,
    judge_all,
    read_log_runs,
    read_runs,
    write_runs,
)

EXCERPT = Path(__file__).parent.parent / "data" / "tau-bench" / "airline-excerpt.json"
MADE_UP, LOOKED_UP = "task-26-trial-0", "task-34-trial-1"


def _runs() -> dict[str, Run]:
    return {run.run_id: run for run in read_log_runs(EXCERPT)}


def _logged_tool_texts(run_id: str) -> list[str]:
    """Every ``role: tool`` content of the record, as the file holds it."""
    for record in json.loads(EXCERPT.read_text(encoding="utf-8")):
        if f"task-{record['task_id']}-trial-{record['trial']}" == run_id:
            return [m["content"] for m in record["traj"] if m["role"] == "tool"]
    raise AssertionError(run_id)


def _criterion(**data: Any) -> Criterion:
    return TypeAdapter(Criterion).validate_python(data)  # type: ignore[no-any-return]


def _pay_with_a_looked_up_method() -> Criterion:
    return _criterion(
        kind="expression", id="pay-with-a-looked-up-method",
        description="Charge only a payment method the user lookup returned.",
        expression='tool_calls.all(c, c.tool != "update_reservation_flights" '
                   '|| history.exists(s, s.kind == "tool_result" && s.tool == "get_user_details" '
                   "&& c.arguments.payment_id in s.result.payment_methods))")


def test_tau_bench_json_results_are_values_with_the_logged_text() -> None:
    """Each JSON-text result of a real OpenAI log reads as its value with ``result_text`` set to
    the logged text; an error message and an empty string stay the text they are."""
    run = _runs()[MADE_UP]
    results = [s for s in run.steps if isinstance(s, ToolResult)]
    assert [r.result_text if r.result_text is not None else r.result for r in results] == (
        _logged_tool_texts(MADE_UP))
    lookup = next(r for r in results if r.tool == "get_user_details")
    assert isinstance(lookup.result, dict) and lookup.result_text is not None
    assert lookup.result == json.loads(lookup.result_text)
    assert sorted(lookup.result["payment_methods"]) == [
        "certificate_9645872", "credit_card_4959530", "credit_card_9074831"]
    error = next(r for r in results if r.tool == "update_reservation_flights")
    assert (error.result, error.result_text) == ("Error: payment method not found", None)
    think = next(r for r in results if r.tool == "think")
    assert (think.result, think.result_text) == ("", None)


def test_parsed_results_survive_the_native_format(tmp_path: Path) -> None:
    """A run written in the native format and read back keeps each value and its text."""
    run = _runs()[LOOKED_UP]
    write_runs([run], tmp_path / "runs.jsonl")
    again = read_runs(tmp_path / "runs.jsonl")[0]
    assert again == run
    first = next(s for s in again.steps if isinstance(s, ToolResult))
    assert first.result["reservation_id"] == "XEHM4B"
    assert first.result_text == _logged_tool_texts(LOOKED_UP)[0]


def test_a_criterion_reads_the_history_of_a_real_run() -> None:
    """"Pay only with a method the user lookup returned" rejects the run that made up a card
    and passes the run that paid with a looked-up one."""
    runs, criterion = _runs(), _pay_with_a_looked_up_method()
    made_up = judge_all([criterion], Behaviour.of_run(runs[MADE_UP]))[0]
    looked_up = judge_all([criterion], Behaviour.of_run(runs[LOOKED_UP]))[0]
    assert (made_up.passed, made_up.detail) == (False, "expression is false")
    assert (looked_up.passed, looked_up.detail) == (True, "expression is true")


def test_a_criterion_reads_call_results_user_inputs_and_context() -> None:
    """``tool_calls`` carry what each call returned, and ``user_inputs`` and ``context`` are the
    run's, as a permission condition sees them."""
    run = _runs()[LOOKED_UP]
    criterion = _criterion(
        kind="expression",
        expression='tool_calls.exists(c, c.tool == "get_user_details" '
                   '&& "credit_card_2408938" in c.result.payment_methods) '
                   '&& user_inputs.exists(m, m.contains("###STOP###")) '
                   '&& context.system.contains("Airline Agent Policy")')
    assert judge_all([criterion], Behaviour.of_run(run))[0].passed
    unanswered = Behaviour(tool_calls=[c for c in run.tool_calls()
                                       if c.tool == "get_user_details"])
    assert not judge_all([criterion], unanswered)[0].passed


def test_criteria_read_the_run_under_the_conditions_names() -> None:
    """Criteria take the run's variables as permission conditions name them, after their own."""
    assert RUN_VARIABLES == ("history", "context", "user_inputs")
    own = ("output", "has_output", "output_json", "tool_calls")
    assert BEHAVIOUR_VARIABLES[:4] == own
    assert BEHAVIOUR_VARIABLES[4:] == RUN_VARIABLES


def test_a_result_given_as_a_value_is_kept_as_given() -> None:
    """A result already structured, or one whose text is given alongside, is not parsed again;
    text that is not strict JSON, or nested past the parser's limit, stays text."""
    given = ToolResult(result={"a": 1})
    assert (given.result, given.result_text) == ({"a": 1}, None)
    kept = ToolResult(result='{"a": 1}', result_text="as logged")
    assert (kept.result, kept.result_text) == ('{"a": 1}', "as logged")
    for text in ('{"a": NaN}', "[1,", "[" * 5000 + "]" * 5000, '"quoted"', "42"):
        assert (ToolResult(result=text).result, ToolResult(result=text).result_text) == (
            text, None)


def test_a_fixture_of_json_text_is_a_value_in_the_run_and_text_to_the_agent() -> None:
    """A case whose fixture holds JSON text (as cases captured from OpenAI logs before
    results were parsed do) hands the agent the text and records the value, so a rule over
    ``history`` reads its fields."""
    from evalsuite import AgentSession, load_model, steps_as_data
    from regressions import RegressionCase

    case = load_model(Path(__file__).parent.parent / "data" / "compat" / "INC-1-1.yaml",
                      RegressionCase)
    session = AgentSession(case)
    answer = session.call_tool("lookup_order", {"order_id": "A-1001"})
    assert isinstance(answer, str) and json.loads(answer)["total"] == 84.99
    result = session.steps[-1]
    assert isinstance(result, ToolResult)
    assert result.result["total"] == 84.99 and result.result_text == answer
    assert steps_as_data(session.steps)[-1]["result"]["total"] == 84.99
