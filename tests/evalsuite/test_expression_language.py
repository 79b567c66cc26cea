"""The CEL environment accepts what the runtime implements: ``cel.bind``, optional values,
the namespaced extension functions; and names what is available when a function is not."""

from __future__ import annotations

import re
from typing import Any

import pytest

from evalsuite import check_expression, evaluate

ARGS = {"amount": 120, "order_id": "A-1001"}
HISTORY = [
    {"kind": "user_input", "content": "Refund A-1001 please."},
    {"kind": "tool_call", "tool": "lookup_order", "arguments": {"order_id": "A-1001"}},
    {"kind": "tool_result", "tool": "lookup_order",
     "result": {"order_id": "A-1001", "total": 84.99, "payment": "card_7"}},
]
VARIABLES = ("args", "history")


def _run(source: str) -> Any:
    check_expression(source, VARIABLES)
    return evaluate(source, {"args": ARGS, "history": HISTORY})


@pytest.mark.parametrize(("source", "value"), [
    ('cel.bind(order, history.filter(s, s.kind == "tool_result" && s.tool == "lookup_order")'
     '.last().orValue({"result": {"total": 0.0}}), double(args.amount) > order.result.total)',
     True),
    ('cel.bind(o, history.filter(s, s.kind == "output").first().orValue({"total": 1.5}), '
     'o.total)', 1.5),
    ("cel.bind(a, 2, cel.bind(b, a * 3, [a, b]))", [2, 6]),
    ("cel.bind(args, 1, args + 1)", 2),
    ('cel.bind(t, "cel.bind(x, 1, x)", t.size())', 17),
])
def test_cel_bind_checks_and_evaluates(source: str, value: Any) -> None:
    """``cel.bind(name, value, body)`` binds once and evaluates the body, nested, shadowing an
    outer variable, and never inside a string."""
    assert _run(source) == value


@pytest.mark.parametrize(("source", "value"), [
    ("optional.of(args.amount).orValue(0)", 120),
    ("optional.none().orValue(7)", 7),
    ("optional.none().hasValue()", False),
    ("optional.ofNonZeroValue(0).or(optional.of(3)).value()", 3),
    ('history.filter(s, s.kind == "output").last().orValue({"content": "none"}).content',
     "none"),
])
def test_optional_values_check_and_evaluate(source: str, value: Any) -> None:
    """Optional values (``optional.of``, ``.orValue()``, ``.hasValue()``, ``.or()``) work."""
    assert _run(source) == value


@pytest.mark.parametrize(("source", "value"), [
    ("math.greatest(args.amount, 100)", 120),
    ("math.least([3, 1, 2])", 1),
    ("lists.range(3)", [0, 1, 2]),
    ('sets.contains(["a", "b"], ["a"])', True),
    ('base64.encode(b"hi")', "aGk="),
    ('strings.quote("a")', '"a"'),
])
def test_namespaced_extension_functions_check_and_evaluate(source: str, value: Any) -> None:
    """The runtime's extension functions are checked by their full name and run."""
    assert _run(source) == value


def test_an_unknown_function_names_what_is_available() -> None:
    """An unknown function's error lists the functions and macros an expression may use."""
    with pytest.raises(ValueError) as caught:
        check_expression("math.greatestt(args.amount, 1) > 0", VARIABLES)
    message = str(caught.value)
    assert message.startswith("unknown function 'math.greatestt' in expression "
                              "(did you mean 'math.greatest'?); available functions: ")
    for name in ("math.greatest", "orValue", "optional.of", "lowerAscii", "lists.range",
                 "size", "timestamp"):
        assert name in message
    assert message.endswith("macros: has, all, exists, exists_one, map, filter, cel.bind")
    assert "\n" not in message


@pytest.mark.parametrize(("source", "expected"), [
    ("cel.bind(1, 2, 3) == 3", "cel.bind takes a name, a value and an expression"),
    ("cel.bind(x, 2) == 3", "cel.bind takes a name, a value and an expression"),
    ("args.?amount.orValue(0) > 1", "no optional field selection: write has(x.field)"),
])
def test_what_the_runtime_cannot_do_is_refused_when_read(source: str, expected: str) -> None:
    """A malformed ``cel.bind`` and the ``.?`` syntax the runtime lacks are refused when
    checked, saying what to write."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_expression(source, VARIABLES)


def test_cel_bind_is_not_a_comprehension_for_the_nesting_limit() -> None:
    """Binding a filtered list and testing it with two nested comprehensions stays within the
    nesting limit: the binding runs its body once."""
    source = ('cel.bind(lookups, history.filter(s, s.kind == "tool_result"), '
              'lookups.exists(l, history.exists(s, s.kind == "tool_call" '
              '&& s.tool == l.tool)))')
    assert _run(source) is True
