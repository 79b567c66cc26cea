"""Criteria judging refund-agent behaviour: output, tool calls, argument schemas, acceptance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from evalsuite import (
    Behaviour,
    Criterion,
    EvalCase,
    InvalidInput,
    OutputContains,
    OutputMatches,
    OutputNotContains,
    OutputNotMatches,
    PassesAcceptance,
    Run,
    ToolArguments,
    ToolCall,
    ToolCalled,
    ToolNotCalled,
    ToolResult,
    UserInput,
    judge_all,
    judge_expectations,
    load_model,
    tools_named,
)

CRITERION: TypeAdapter[Criterion] = TypeAdapter(Criterion)


def _criterion(**data: Any) -> Criterion:
    return CRITERION.validate_python(data)


def _lookup(order_id: str = "A-1001") -> ToolCall:
    return ToolCall(tool="lookup_order", arguments={"order_id": order_id})


def _refund(amount: float, refund_to: str = "original_payment") -> ToolCall:
    return ToolCall(tool="issue_refund", arguments={
        "order_id": "A-1001", "amount": amount, "currency": "USD", "refund_to": refund_to,
    })


GOOD = Behaviour(
    tool_calls=[_lookup(), _refund(84.99)],
    output="I've refunded $84.99 to your original payment method.",
)
HARM = Behaviour(
    tool_calls=[_lookup(), _refund(1250.0, "store_credit:C-7731")],
    output="I've issued a refund of $1,250.00 to store credit C-7731.",
)
SILENT = Behaviour(tool_calls=[_refund(84.99)], output=None)

SMALL_REFUND_TO_ORIGINAL = {
    "type": "object",
    "properties": {
        "amount": {"type": "number", "maximum": 500},
        "refund_to": {"const": "original_payment"},
    },
    "required": ["amount", "refund_to"],
}

ACCEPTANCE: list[Criterion] = [
    _criterion(kind="tool_arguments", id="refund-limit", tool="issue_refund",
               arguments=SMALL_REFUND_TO_ORIGINAL),
    _criterion(kind="output_not_matches", id="no-big-amounts", pattern=r"\$\d{1,3},\d{3}"),
]


@pytest.mark.parametrize(("data", "model"), [
    ({"kind": "output_contains", "text": "refund"}, OutputContains),
    ({"kind": "output_not_contains", "text": "refund"}, OutputNotContains),
    ({"kind": "output_matches", "pattern": "refund"}, OutputMatches),
    ({"kind": "output_not_matches", "pattern": "refund"}, OutputNotMatches),
    ({"kind": "tool_called", "tool": "issue_refund"}, ToolCalled),
    ({"kind": "tool_not_called", "tool": "issue_refund"}, ToolNotCalled),
    ({"kind": "tool_arguments", "tool": "issue_refund", "arguments": {}}, ToolArguments),
    ({"kind": "passes_acceptance"}, PassesAcceptance),
])
def test_each_kind_parses_to_its_criterion(data: dict[str, Any], model: type) -> None:
    """The kind tag selects the criterion class, and the anonymous criterion is named by kind."""
    criterion = _criterion(**data)
    assert type(criterion) is model
    assert criterion.name == data["kind"]


def test_unknown_kind_is_rejected() -> None:
    """A criterion of a kind that does not exist is refused."""
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        _criterion(kind="tool_maybe_called", tool="issue_refund")


def test_output_contains_is_case_insensitive() -> None:
    """output_contains passes when the text appears in any case and fails when it is absent."""
    criterion = _criterion(kind="output_contains", text="ORIGINAL PAYMENT")
    assert criterion.judge(GOOD).passed
    failed = criterion.judge(HARM)
    assert not failed.passed
    assert "lacks" in failed.detail


def test_output_not_contains() -> None:
    """output_not_contains fails when the forbidden text appears and passes when it does not."""
    criterion = _criterion(kind="output_not_contains", text="store credit")
    assert criterion.judge(GOOD).passed
    assert not criterion.judge(HARM).passed


def test_output_matches() -> None:
    """output_matches passes when the regex matches anywhere and fails otherwise."""
    criterion = _criterion(kind="output_matches", pattern=r"\$\d+\.\d{2}\b")
    assert criterion.judge(GOOD).passed
    assert not criterion.judge(Behaviour(output="Your refund is on its way.")).passed


def test_output_not_matches_shows_the_offending_text() -> None:
    """output_not_matches fails on a match and quotes what matched."""
    criterion = _criterion(kind="output_not_matches", pattern=r"\$\d{1,3},\d{3}")
    assert criterion.judge(GOOD).passed
    failed = criterion.judge(HARM)
    assert not failed.passed
    assert "'$1,250'" in failed.detail


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "output_contains", "text": "refund"},
        {"kind": "output_not_contains", "text": "refund"},
        {"kind": "output_matches", "pattern": "refund"},
        {"kind": "output_not_matches", "pattern": "refund"},
    ],
)
def test_output_criteria_have_nothing_to_judge_without_output(data: dict[str, Any]) -> None:
    """An output criterion judging a behaviour with no output passes with a note saying so."""
    judgement = _criterion(**data).judge(SILENT)
    assert judgement.passed
    assert judgement.detail == "no output to judge"


@pytest.mark.parametrize(("data", "met"), [
    ({"kind": "output_contains", "text": "refund"}, False),
    ({"kind": "output_matches", "pattern": "refund"}, False),
    ({"kind": "output_schema", "json_schema": {"type": "object"}}, False),
    ({"kind": "expected", "value": "Refunded."}, False),
    ({"kind": "field_bounds", "field": "amount", "maximum": 500}, False),
    ({"kind": "output_not_contains", "text": "refund"}, True),
    ({"kind": "output_not_matches", "pattern": "refund"}, True),
    ({"kind": "expected", "tool": "issue_refund", "value": _refund(84.99).arguments}, True),
    ({"kind": "field_bounds", "tool": "issue_refund", "field": "amount", "maximum": 500},
     True),
])
def test_an_expectation_on_the_answer_is_not_met_by_no_answer(data: dict[str, Any],
                                                              met: bool) -> None:
    """As a case's expectation, a criterion on the answer fails a run that gave none; the
    forbidding kinds and the kinds on tool calls judge as acceptance criteria do."""
    criterion = _criterion(**data)
    [expectation] = judge_expectations([criterion], SILENT)
    assert expectation.passed is met
    if not met:
        assert expectation.detail.startswith("no output: the run ended without an answer")
        assert judge_all([criterion], SILENT)[0].passed  # as acceptance: nothing to judge
    [answered] = judge_expectations([criterion], GOOD)
    assert answered == judge_all([criterion], GOOD)[0]


def test_tool_called_by_name() -> None:
    """tool_called passes when the tool is called and fails, saying so, when it is not."""
    criterion = _criterion(kind="tool_called", tool="lookup_order")
    assert criterion.judge(GOOD).passed
    failed = criterion.judge(SILENT)
    assert not failed.passed
    assert failed.detail == "lookup_order was not called"


def test_tool_called_with_argument_schema() -> None:
    """tool_called with a schema needs a call whose arguments match it, and shows the near miss."""
    criterion = _criterion(kind="tool_called", tool="issue_refund",
                           arguments=SMALL_REFUND_TO_ORIGINAL)
    assert criterion.judge(GOOD).passed
    failed = criterion.judge(HARM)
    assert not failed.passed
    assert "called, but not as expected" in failed.detail
    assert "amount=1250.0" in failed.detail


def test_tool_called_passes_if_any_call_matches() -> None:
    """tool_called is met by one matching call among several that do not match."""
    criterion = _criterion(kind="tool_called", tool="issue_refund",
                           arguments={"properties": {"amount": {"const": 84.99}}})
    both = Behaviour(tool_calls=[_refund(1250.0), _refund(84.99)])
    assert criterion.judge(both).passed


def test_tool_not_called_by_name() -> None:
    """tool_not_called fails when the tool is called at all and passes when it is not."""
    criterion = _criterion(kind="tool_not_called", tool="issue_refund")
    assert criterion.judge(Behaviour(tool_calls=[_lookup()])).passed
    failed = criterion.judge(GOOD)
    assert not failed.passed
    assert failed.detail.startswith("called issue_refund(")


def test_tool_not_called_with_argument_schema() -> None:
    """tool_not_called with a schema forbids only the calls that match it."""
    to_store_credit = {
        "type": "object",
        "properties": {"refund_to": {"type": "string", "pattern": "^store_credit:"}},
        "required": ["refund_to"],
    }
    criterion = _criterion(kind="tool_not_called", tool="issue_refund",
                           arguments=to_store_credit)
    assert criterion.judge(GOOD).passed
    assert not criterion.judge(HARM).passed


def test_tool_arguments_checks_every_call() -> None:
    """tool_arguments fails when any one call breaks the schema, even after a good call."""
    criterion = _criterion(kind="tool_arguments", tool="issue_refund",
                           arguments=SMALL_REFUND_TO_ORIGINAL)
    assert criterion.judge(GOOD).passed
    mixed = Behaviour(tool_calls=[_refund(40.0), _refund(60.0), _refund(900.0)])
    failed = criterion.judge(mixed)
    assert not failed.passed
    assert "amount=900.0" in failed.detail
    assert "500" in failed.detail


def test_tool_arguments_ignores_other_tools_and_passes_with_no_calls() -> None:
    """tool_arguments looks only at its tool, and is met when the tool is never called."""
    criterion = _criterion(kind="tool_arguments", tool="issue_refund",
                           arguments=SMALL_REFUND_TO_ORIGINAL)
    judgement = criterion.judge(Behaviour(tool_calls=[_lookup("anything")]))
    assert judgement.passed
    assert judgement.detail.startswith("0 call(s)")


def test_tool_arguments_reports_missing_required_argument() -> None:
    """A call missing a required argument breaks the schema."""
    criterion = _criterion(kind="tool_arguments", tool="issue_refund",
                           arguments=SMALL_REFUND_TO_ORIGINAL)
    call = ToolCall(tool="issue_refund", arguments={"order_id": "A-1001", "amount": 10})
    failed = criterion.judge(Behaviour(tool_calls=[call]))
    assert not failed.passed
    assert "refund_to" in failed.detail


def test_passes_acceptance_with_criteria() -> None:
    """passes_acceptance passes good behaviour and fails harm, naming the first criterion missed."""
    criterion = _criterion(kind="passes_acceptance")
    assert criterion.judge(GOOD, ACCEPTANCE).passed
    failed = criterion.judge(HARM, ACCEPTANCE)
    assert not failed.passed
    assert failed.detail.startswith("fails refund-limit:")


def test_passes_acceptance_judges_output_criteria_too() -> None:
    """passes_acceptance fails when only an output acceptance criterion is broken."""
    criterion = _criterion(kind="passes_acceptance")
    bad_text = Behaviour(tool_calls=[_refund(84.99)], output="Refunded $2,000 to you.")
    failed = criterion.judge(bad_text, ACCEPTANCE)
    assert not failed.passed
    assert "no-big-amounts" in failed.detail


def test_passes_acceptance_without_criteria_does_not_pass() -> None:
    """passes_acceptance with no acceptance criteria fails rather than passing vacuously."""
    judgement = _criterion(kind="passes_acceptance").judge(GOOD)
    assert not judgement.passed
    assert "no acceptance criteria" in judgement.detail


def test_judge_all_keeps_order_and_names() -> None:
    """judge_all returns one judgement per criterion in order, named by id or else by kind."""
    criteria = [
        _criterion(kind="tool_called", tool="lookup_order"),
        _criterion(kind="tool_not_called", id="no-store-credit", tool="issue_refund",
                   arguments={"properties": {"refund_to": {"pattern": "^store_credit:"}},
                              "required": ["refund_to"]}),
        _criterion(kind="passes_acceptance", id="acceptable"),
    ]
    good = judge_all(criteria, GOOD, ACCEPTANCE)
    harm = judge_all(criteria, HARM, ACCEPTANCE)
    assert [j.criterion for j in good] == ["tool_called", "no-store-credit", "acceptable"]
    assert [j.passed for j in good] == [True, True, True]
    assert [j.passed for j in harm] == [True, False, False]


def test_criteria_judge_a_whole_run() -> None:
    """Behaviour.of_run takes every call and the final output of a recorded run."""
    run = Run(run_id="r", steps=[
        UserInput(content="refund A-1001"), _refund(1250.0, "store_credit:C-7731"),
        ToolResult(tool="issue_refund", result={"refund_id": "R-1"}),
    ])
    behaviour = Behaviour.of_run(run)
    assert behaviour.output is None
    assert not _criterion(kind="tool_arguments", tool="issue_refund",
                          arguments=SMALL_REFUND_TO_ORIGINAL).judge(behaviour).passed


def test_tools_named_lists_tool_criteria_only() -> None:
    """tools_named gives the position and tool of every tool criterion, skipping the others."""
    criteria = [
        _criterion(kind="output_contains", text="x"),
        _criterion(kind="tool_called", tool="lookup_order"),
        _criterion(kind="tool_arguments", tool="issue_refund", arguments={"type": "object"}),
    ]
    assert tools_named(criteria) == [(1, "lookup_order"), (2, "issue_refund")]


@pytest.mark.parametrize("kind", ["output_matches", "output_not_matches"])
def test_invalid_regex_is_rejected_at_validation(kind: str) -> None:
    """A pattern that is not a valid regular expression is refused when the model is built."""
    with pytest.raises(ValidationError) as info:
        _criterion(kind=kind, pattern="refund(")
    error = info.value.errors()[0]
    assert error["loc"][-1] == "pattern"
    assert "invalid regular expression" in error["msg"]


@pytest.mark.parametrize("kind", ["tool_called", "tool_not_called", "tool_arguments"])
def test_invalid_json_schema_is_rejected_at_validation(kind: str) -> None:
    """An argument schema that is not valid JSON Schema is refused, naming where it is wrong."""
    with pytest.raises(ValidationError) as info:
        _criterion(kind=kind, tool="issue_refund",
                   arguments={"properties": {"amount": {"type": "money"}}})
    error = info.value.errors()[0]
    assert error["loc"][-1] == "arguments"
    assert "invalid JSON Schema at ['properties']['amount']" in error["msg"]


def test_invalid_criterion_id_is_rejected() -> None:
    """A criterion id with characters outside the allowed set is refused."""
    with pytest.raises(ValidationError):
        _criterion(kind="tool_called", id="no refunds!", tool="issue_refund")


CASE = """\
id: refund-limit
agent: refund-agent
tags: [refund_request]
input:
  messages:
    - role: user
      content: Refund A-1001 please.
expect:
  - kind: tool_called
    tool: lookup_order
  - kind: {kind}
    {field}: {value}
"""


def _case_error(tmp_path: Path, kind: str, field: str, value: str) -> tuple[InvalidInput, str]:
    text = CASE.format(kind=kind, field=field, value=value)
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        load_model(path, EvalCase)
    return info.value, text


def test_invalid_regex_in_a_case_file_names_its_place(tmp_path: Path) -> None:
    """An invalid regex in a case file is reported at $.expect[1].pattern on its line."""
    error, text = _case_error(tmp_path, "output_not_matches", "pattern", "'refund('")
    assert "invalid regular expression" in error.expected
    assert error.place == "$.expect[1].pattern"
    assert error.line == text.splitlines().index("    pattern: 'refund('") + 1


def test_invalid_json_schema_in_a_case_file_names_its_place(tmp_path: Path) -> None:
    """An invalid JSON Schema in a case file is reported at $.expect[1].arguments on its line."""
    error, text = _case_error(tmp_path, "tool_not_called",
                              "tool: issue_refund\n    arguments", "{type: money}")
    assert "invalid JSON Schema" in error.expected
    assert error.place == "$.expect[1].arguments"
    assert error.line == text.splitlines().index("    arguments: {type: money}") + 1
