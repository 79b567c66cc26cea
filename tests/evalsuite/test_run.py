"""Pairing tool calls with their results, as real logs record them."""

from __future__ import annotations

from evalsuite import Run, ToolCall, ToolResult, UserInput


def _run(*steps: object) -> Run:
    return Run(run_id="r", steps=[UserInput(content="hi"), *steps])  # type: ignore[list-item]


def test_back_to_back_calls_without_ids_get_their_own_results() -> None:
    """Two calls to one tool, then two results, pair in order instead of sharing the first."""
    run = _run(ToolCall(tool="lookup_order", arguments={"order_id": "A-1"}),
               ToolCall(tool="lookup_order", arguments={"order_id": "A-2"}),
               ToolResult(tool="lookup_order", result={"order_id": "A-1"}),
               ToolResult(tool="lookup_order", result={"order_id": "A-2"}))
    assert run.pairs() == {1: 3, 2: 4}
    second = run.result_for(2)
    assert second is not None and second.result == {"order_id": "A-2"}


def test_repeated_ids_pair_with_the_waiting_call() -> None:
    """An id used twice in one run answers the earliest call still waiting for it."""
    run = _run(ToolCall(tool="think", call_id="call_0"),
               ToolCall(tool="get_user", call_id="call_0"),
               ToolResult(call_id="call_0", result=""),
               ToolResult(call_id="call_0", result={"user": "u1"}))
    assert run.pairs() == {1: 3, 2: 4}


def test_results_are_matched_by_id_out_of_order() -> None:
    """Parallel calls answered in another order still pair by id."""
    run = _run(ToolCall(tool="a", call_id="x"), ToolCall(tool="b", call_id="y"),
               ToolResult(call_id="y", result=2), ToolResult(call_id="x", result=1))
    assert run.pairs() == {1: 4, 2: 3}


def test_a_call_without_result_stays_unpaired() -> None:
    """A call the log never answered has no result."""
    run = _run(ToolCall(tool="issue_refund", call_id="c1"), ToolResult(call_id="c9", result=1))
    assert run.result_for(1) is None
