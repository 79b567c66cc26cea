"""Expressions in CEL, the Common Expression Language, for conditions and criteria.

CEL is what Kubernetes admission rules and cloud IAM conditions are written in: small,
side-effect free, always terminating. Rules may only name the variables they are given;
a typo is caught when the file is read, not when the rule is first needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from evalsuite._errors import did_you_mean
from evalsuite._run import Output, Reasoning, Step, ToolCall, ToolResult, UserInput

# Names a comprehension binds, as in `history.exists(s, …)`: not free variables.
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|filter|map)\s*\(\s*([A-Za-z_]\w*)\s*,")


class ExpressionFailed(Exception):
    """An expression could not be evaluated on the data it was given."""


# The functions of the CEL language definition; operators and macros are not listed
# because the parser expands them. The string, list and math extensions come on top.
STANDARD_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double",
    "string", "bytes", "bool", "dyn", "type", "duration", "timestamp", "getDate",
    "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours",
    "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
})


@lru_cache(maxsize=1)
def _stdlib() -> dict[str, Any]:
    # Imported on first use: the CEL package costs more at start-up than the whole CLI
    # needs for commands that never read a rule (`reinstate mode`).
    from cel.stdlib import STDLIB_FUNCTIONS

    return dict(STDLIB_FUNCTIONS)


def known_functions() -> frozenset[str]:
    """Functions an expression may call: the language's and the extensions'."""
    return STANDARD_FUNCTIONS | frozenset(_stdlib())


@lru_cache(maxsize=2048)
def _compile(source: str) -> tuple[Any, bool]:
    """The program, and whether it needs the extension functions (which cost a context)."""
    import cel

    program = cel.compile(source)
    return program, bool(set(program.functions()) & set(_stdlib()))


def check_expression(source: str, variables: Sequence[str]) -> str:
    """Raise ``ValueError`` when ``source`` is not CEL or names a variable it is not given."""
    try:
        program, _ = _compile(source)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0]
        raise ValueError(f"invalid CEL expression: {first}") from None
    for name in program.functions():
        if name[0] not in "_@!" and name not in known_functions():
            raise ValueError(f"unknown function '{name}' in expression"
                             + did_you_mean(name, known_functions()))
    bound = set(_BOUND.findall(source))
    for name in program.variables():
        if name not in variables and name not in bound:
            raise ValueError(
                f"unknown variable '{name}' in expression (available: {', '.join(variables)})"
                + did_you_mean(name, variables)
            )
    return source


def evaluate(source: str, activation: Mapping[str, Any]) -> Any:
    """Evaluate a checked expression; any failure is :class:`ExpressionFailed`."""
    try:
        program, extended = _compile(source)
        if extended:
            import cel

            return program.execute(cel.Context(variables=dict(activation),
                                               functions=_stdlib()))
        return program.execute(dict(activation))
    except Exception as exc:  # the CEL runtime raises several types; all mean "no answer"
        raise ExpressionFailed(f"{type(exc).__name__}: {exc}") from None


def evaluate_bool(source: str, activation: Mapping[str, Any]) -> bool:
    """Evaluate an expression that must answer true or false."""
    value = evaluate(source, activation)
    if not isinstance(value, bool):
        raise ExpressionFailed(f"expected true or false, got {value!r}")
    return value


def steps_as_data(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """The run so far as plain data for expressions: one map per step, keys by kind.

    A tool result carries the name of the tool it answers even when the log left it out,
    so rules can say ``s.tool == "lookup_order"``.
    """
    tools: dict[str, str] = {}
    data: list[dict[str, Any]] = []
    for step in steps:
        if isinstance(step, UserInput | Reasoning | Output):
            data.append({"kind": step.kind, "content": step.content})
        elif isinstance(step, ToolCall):
            if step.call_id is not None:
                tools[step.call_id] = step.tool
            data.append({"kind": step.kind, "tool": step.tool, "arguments": step.arguments})
        else:
            assert isinstance(step, ToolResult)
            name = step.tool or tools.get(step.call_id or "", "")
            item: dict[str, Any] = {"kind": step.kind, "tool": name, "result": step.result}
            if step.error is not None:
                item["error"] = step.error
            data.append(item)
    return data
