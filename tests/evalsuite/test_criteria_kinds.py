"""The richer criteria: output schemas, numeric bounds, expected values, CEL, predicates."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from evalsuite import Behaviour, Criterion, ToolCall, load_predicate

CRITERION: TypeAdapter[Criterion] = TypeAdapter(Criterion)


def criterion(**fields: object) -> Criterion:
    """A criterion from the fields a user would write in YAML."""
    return CRITERION.validate_python(fields)


def refund(amount: float, **extra: object) -> ToolCall:
    """An issue_refund call."""
    return ToolCall(tool="issue_refund", arguments={"order_id": "A-1001", "amount": amount,
                                                    "currency": "USD", **extra})


QUOTE = json.dumps({"order_id": "A-1001", "refund": {"amount": 84.99, "currency": "USD"},
                    "issued_at": "2026-11-25T21:09:13Z"})


def test_output_schema_accepts_and_rejects_structured_answers() -> None:
    """A JSON answer is judged against its schema; prose where JSON is due fails."""
    rule = criterion(kind="output_schema", id="quote-shape", json_schema={
        "type": "object", "required": ["order_id", "refund"],
        "properties": {"refund": {"type": "object", "required": ["amount"]}}})
    assert rule.judge(Behaviour(output=QUOTE)).passed
    missing = rule.judge(Behaviour(output=json.dumps({"order_id": "A-1001"})))
    assert not missing.passed and "'refund' is a required property" in missing.detail
    assert rule.judge(Behaviour(output="Your refund is on its way")).detail == (
        "the output is not JSON")


def test_field_bounds_on_tool_arguments() -> None:
    """Every refund's amount must lie in bounds; one outside fails with the value."""
    rule = criterion(kind="field_bounds", id="refund-cap", tool="issue_refund", field="amount",
                     minimum=0.01, maximum=500)
    assert rule.judge(Behaviour(tool_calls=[refund(40), refund(500)])).passed
    over = rule.judge(Behaviour(tool_calls=[refund(40), refund(1250)]))
    assert not over.passed and "amount = 1250 is above 500" in over.detail
    missing = rule.judge(Behaviour(tool_calls=[ToolCall(tool="issue_refund", arguments={})]))
    assert not missing.passed and "no field amount" in missing.detail


def test_field_bounds_on_a_nested_output_field() -> None:
    """A dotted path reaches into a JSON answer."""
    rule = criterion(kind="field_bounds", field="refund.amount", maximum=80)
    result = rule.judge(Behaviour(output=QUOTE))
    assert not result.passed and "refund.amount = 84.99 is above 80" in result.detail


def test_field_bounds_needs_a_bound() -> None:
    """A bounds criterion without a bound is refused when read."""
    with pytest.raises(ValidationError, match="needs a minimum, a maximum or both"):
        criterion(kind="field_bounds", field="amount")


def test_expected_value_with_ignored_paths_and_tolerance() -> None:
    """deepdiff compares the answer, leaving out volatile fields and tiny numeric drift."""
    rule = criterion(kind="expected", id="quote", value={
        "order_id": "A-1001", "refund": {"amount": 84.99, "currency": "USD"},
        "issued_at": "whenever"}, ignore_paths=["issued_at"], tolerance=0.005)
    assert rule.judge(Behaviour(output=QUOTE.replace("84.99", "84.991"))).passed
    drifted = rule.judge(Behaviour(output=QUOTE.replace("84.99", "85.99")))
    assert not drifted.passed and "root['refund']['amount']" in drifted.detail


def test_expected_tool_arguments() -> None:
    """Each call to the tool must carry exactly the expected arguments."""
    rule = criterion(kind="expected", tool="issue_refund",
                     value={"order_id": "A-1001", "amount": 64.5, "currency": "USD"})
    assert rule.judge(Behaviour(tool_calls=[refund(64.5)])).passed
    wrong = rule.judge(Behaviour(tool_calls=[refund(64.5, refund_to="gift_card")]))
    assert not wrong.passed and "refund_to" in wrong.detail


def test_expression_over_calls_and_output() -> None:
    """A CEL criterion sees the calls and the parsed answer."""
    rule = criterion(kind="expression", id="one-refund-matching-quote", expression=(
        'tool_calls.filter(c, c.tool == "issue_refund").size() <= 1 && '
        '(output_json == null || output_json.refund.amount <= 100.0)'))
    assert rule.judge(Behaviour(tool_calls=[refund(84.99)], output=QUOTE)).passed
    twice = rule.judge(Behaviour(tool_calls=[refund(40), refund(40)], output=QUOTE))
    assert not twice.passed and twice.detail == "expression is false"


def test_expression_that_errors_fails_the_criterion() -> None:
    """An expression that cannot be evaluated on the behaviour fails, naming the error."""
    rule = criterion(kind="expression", expression="output_json.refund.amount > 0.0")
    result = rule.judge(Behaviour(output="plain text"))
    assert not result.passed and result.detail.startswith("could not evaluate")


def test_expression_must_be_boolean() -> None:
    """An expression answering a number is not a pass."""
    rule = criterion(kind="expression", expression="size(tool_calls)")
    result = rule.judge(Behaviour(tool_calls=[refund(1)]))
    assert not result.passed and "expected true or false" in result.detail


@pytest.mark.parametrize(("source", "message"), [
    ("tool_calls.exists(c, c.tool ==)", "invalid CEL expression"),
    ("outptu.size() > 0", "unknown variable 'outptu'"),
])
def test_invalid_expression_is_refused_when_read(source: str, message: str) -> None:
    """A broken or misspelt expression never reaches a run."""
    with pytest.raises(ValidationError, match=message):
        criterion(kind="expression", expression=source)


def test_predicate_criterion_loaded_from_an_allowed_module(tmp_path: Path) -> None:
    """A predicate is called with the behaviour once it is loaded and bound."""
    (tmp_path / "quality.py").write_text(
        "def polite(data):\n    return 'please' in data['output'].lower()\n")
    rule = criterion(kind="predicate", id="polite", predicate="quality:polite")
    unbound = rule.judge(Behaviour(output="Please wait"))
    assert not unbound.passed and "was not loaded" in unbound.detail
    rule.bind(load_predicate("quality:polite", tmp_path, ["quality"]))  # type: ignore[union-attr]
    assert rule.judge(Behaviour(output="Please wait")).passed
    assert not rule.judge(Behaviour(output="Wait")).passed


def test_predicate_outside_the_workspace_or_not_allowed_is_refused(tmp_path: Path) -> None:
    """Only listed modules inside the workspace can be loaded."""
    (tmp_path / "quality.py").write_text("def polite(data):\n    return True\n")
    with pytest.raises(ValueError, match="not in predicate_modules"):
        load_predicate("quality:polite", tmp_path, [])
    with pytest.raises(ValueError, match="no module 'missing'"):
        load_predicate("missing:polite", tmp_path, ["missing"])
    with pytest.raises(ValueError, match="has no function 'rude'"):
        load_predicate("quality:rude", tmp_path, ["quality"])


def test_predicate_that_raises_or_answers_a_non_bool_fails(tmp_path: Path) -> None:
    """A predicate's exception or odd answer fails the criterion instead of passing it."""
    (tmp_path / "quality.py").write_text(
        "def boom(data):\n    raise KeyError('tone')\n\ndef maybe(data):\n    return 'yes'\n")
    for name, detail in (("boom", "raised KeyError"), ("maybe", "expected True or False")):
        rule = criterion(kind="predicate", predicate=f"quality:{name}")
        rule.bind(load_predicate(f"quality:{name}", tmp_path, ["quality"]))  # type: ignore[union-attr]
        result = rule.judge(Behaviour(output="x"))
        assert not result.passed and detail in result.detail


@pytest.mark.attack
@pytest.mark.parametrize("found", ["on sys.path", "already imported"])
def test_predicate_importing_an_unlisted_workspace_module_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found: str) -> None:
    """A listed module that imports a workspace module the configuration does not list
    (``tone.py``, whose code no fingerprint covers) is refused at load, naming it, whether
    Python finds it on ``sys.path`` or the agent's own code imported it first; the same
    import at call time fails the criterion instead of passing it."""
    (tmp_path / "tone.py").write_text("POLITE = 'please'\n")
    (tmp_path / "quality.py").write_text(
        "import re\nfrom tone import POLITE\n"
        "def polite(data):\n    return re.search(POLITE, data['output']) is not None\n")
    (tmp_path / "late.py").write_text(
        "def polite(data):\n    from tone import POLITE\n    return POLITE in data['output']\n")
    if found == "on sys.path":
        monkeypatch.syspath_prepend(str(tmp_path))
    else:
        tone = types.ModuleType("tone")
        tone.__file__ = str(tmp_path / "tone.py")
        tone.POLITE = "please"  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tone", tone)
    with pytest.raises(ValueError, match=r"imports 'tone' \(tone.py\).*does not list"):
        load_predicate("quality:polite", tmp_path, ["quality"])
    rule = criterion(kind="predicate", predicate="late:polite")
    rule.bind(load_predicate("late:polite", tmp_path, ["late"]))  # type: ignore[union-attr]
    result = rule.judge(Behaviour(output="please"))
    assert not result.passed and "does not list" in result.detail


def test_predicate_imports_listed_modules_and_installed_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed package's modules import each other (absolutely or relatively) and
    installed packages, also from a virtual environment kept in the workspace; an edit of
    an imported module is run at the next load."""
    venv = tmp_path / ".venv/lib/site-packages"
    venv.mkdir(parents=True)
    (venv / "vendored.py").write_text("WORD = 'please'\n")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    monkeypatch.syspath_prepend(str(venv))
    monkeypatch.delitem(sys.modules, "vendored", raising=False)
    (tmp_path / "quality").mkdir()
    (tmp_path / "quality/__init__.py").write_text("")
    (tmp_path / "quality/words.py").write_text("from vendored import WORD\nWORDS = [WORD]\n")
    (tmp_path / "quality/tone.py").write_text(
        "from . import words\nfrom quality.words import WORDS\n"
        "def polite(data):\n    return words.WORDS == WORDS and WORDS[0] in data['output']\n")
    assert load_predicate("quality.tone:polite", tmp_path, ["quality"])({"output": "please"})
    (tmp_path / "quality/words.py").write_text("WORDS = ['thanks']\n")
    again = load_predicate("quality.tone:polite", tmp_path, ["quality"])
    assert (again({"output": "please"}), again({"output": "thanks"})) == (False, True)
