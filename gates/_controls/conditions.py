"""Conditions on a tool call or an output that may look at the run so far.

A condition is one of: a JSON Schema the call's arguments match, a CEL expression, or a
Python predicate by import path. Conditions decide denials and reviews; one that cannot
be evaluated counts as holding, so a broken rule stops the call instead of waving it on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from evalsuite import (
    RUN_VARIABLES,
    ExpressionFailed,
    Predicate,
    Record,
    RunView,
    Step,
    ToolCall,
    Variables,
    call_predicate,
    check_expression,
    check_json_schema,
    check_predicate_path,
    evaluate_bool,
    schema_violation,
)

RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
CALL_VARIABLES = ("tool", "args", *RUN_VARIABLES)
OUTPUT_VARIABLES = ("output", *RUN_VARIABLES)


class Situation:
    """What a condition may look at: the call or output, and the run before it.

    Its variables are made when a condition first reads them, and only those a condition
    reads: an expression over ``args`` never converts the history. Give a
    :class:`~evalsuite.History` to reuse the run's data made once per step.
    """

    __slots__ = ("_variables", "call", "context", "failures", "history", "output")

    def __init__(self, history: Sequence[Step] = (), context: dict[str, Any] | None = None,
                 call: ToolCall | None = None, output: str | None = None) -> None:
        self.history = history
        self.context = context if context is not None else {}
        self.call = call
        self.output = output
        self.failures: dict[str, str] = {}
        """Why each rule that could not be evaluated here failed, by rule id."""
        self._variables: Variables | None = None

    def variables(self) -> Variables:
        """The variables expressions see, each made on first read and kept."""
        if self._variables is None:
            own: dict[str, Callable[[], Any]] = {}
            call, output = self.call, self.output
            if call is not None:
                own |= {"tool": lambda: call.tool, "args": lambda: call.arguments}
            if output is not None:
                own["output"] = lambda: output
            self._variables = RunView(self.history, self.context).variables(own)
        return self._variables

    def data(self) -> dict[str, Any]:
        """Every variable, as a predicate is given them: a copy of its own, so a predicate
        that changes what it was given changes nothing another condition reads."""
        variables = self.variables()
        return copy.deepcopy({name: variables[name] for name in variables})


class Condition(Record):
    """When a rule applies: exactly one of ``arguments``, ``expression`` or ``predicate``."""

    id: str = Field(pattern=RULE_ID)
    """Name of the condition, shown as the deciding rule."""
    description: str = ""
    """Why the rule exists, shown as the reason for its decision."""
    arguments: dict[str, Any] | None = None
    """A JSON Schema the call's arguments match."""
    expression: str | None = None
    """A CEL expression over ``tool``, ``args``, ``history``, ``context``, ``user_inputs``."""
    predicate: str | None = None
    """``module:function`` in the workspace, called with the same variables."""

    _function: Predicate | None = PrivateAttr(default=None)

    @field_validator("arguments")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_json_schema(value)

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return None if value is None else check_expression(value, CALL_VARIABLES)

    @field_validator("predicate")
    @classmethod
    def _predicate(cls, value: str | None) -> str | None:
        return None if value is None else check_predicate_path(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        given = [n for n in ("arguments", "expression", "predicate") if getattr(self, n)
                 is not None]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of arguments, expression or "
                             f"predicate (got {', '.join(given) or 'none'})")
        return self

    def bind(self, function: Predicate) -> None:
        """Attach the loaded predicate."""
        self._function = function

    def holds(self, situation: Situation) -> bool:
        """Whether the condition holds; raises ExpressionFailed when it cannot be told."""
        if self.arguments is not None:
            call = situation.call
            return call is not None and schema_violation(self.arguments, call.arguments) is None
        if self.expression is not None:
            return evaluate_bool(self.expression, situation.variables())
        assert self.predicate is not None
        return call_predicate(self._function, self.predicate, situation.data())


def first_holding(conditions: Sequence[Condition],
                  situation: Situation) -> tuple[Condition, str] | None:
    """The first condition that holds, with the reason; a failing one holds (fail closed)."""
    for condition in conditions:
        try:
            if condition.holds(situation):
                return condition, condition.description or f"{condition.id} holds"
        except ExpressionFailed as exc:
            return condition, f"could not evaluate {condition.id} ({exc}); failing closed"
    return None
