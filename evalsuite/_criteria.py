"""Criteria: what a behaviour (tool calls and an output) must or must not do.

The same criteria serve as an eval case's expectations and as an agent's acceptance
criteria. Each kind is one model in a tagged union; each judges a :class:`Behaviour`.

The two roles differ on a behaviour without an answer. An acceptance criterion constrains
the answers a behaviour holds: a tool call judged before any answer, a recorded harmful
call, a good run that ended in tool calls give it no answer to judge, and it holds
(:meth:`judge`, :func:`judge_all`). An expectation is about what one finished run should
have done: a run that ended without an answer does not meet ``output_contains``,
``output_matches``, ``output_schema``, ``expected`` or ``field_bounds`` on the answer
(:func:`judge_expectations`). The ``*_not_*`` kinds hold either way: nothing said,
nothing forbidden said.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import weakref
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from evalsuite._expressions import ExpressionFailed, Variables, check_expression, evaluate_bool
from evalsuite._predicates import Predicate, call_predicate, check_predicate_path
from evalsuite._record import Record
from evalsuite._regex import check_regex, user_regex
from evalsuite._rule_variables import RUN_VARIABLES, RunView
from evalsuite._run import Behaviour, Step, ToolCall, ToolResult, result_pairs
from evalsuite._schemas import check_json_schema, schema_violation


class Judgement(Record):
    """The outcome of one criterion on one behaviour."""

    criterion: str
    """The criterion's id, or its kind when it has none."""
    passed: bool
    """Whether the behaviour met the criterion."""
    detail: str = ""
    """Why, in words a reviewer can check."""
    stopped_by: list[str] | None = None
    """The control rules that denied the agent's attempt, when the criterion holds only
    because they did (the case is judged on what took effect); none otherwise."""




class _Criterion(Record):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """A stable name for the criterion, used in verdicts and review rules."""
    description: str = ""
    """What the criterion protects against, for the people reading a verdict."""

    @property
    def name(self) -> str:
        """The id, or the kind for an anonymous criterion."""
        return self.id or str(getattr(self, "kind"))  # noqa: B009 - every subclass declares kind

    def _verdict(self, passed: bool, detail: str) -> Judgement:
        return Judgement.model_construct(criterion=self.name, passed=passed, detail=detail)

    def needs_answer(self) -> bool:
        """Whether the criterion asks something of the answer itself (it must say, match
        or be something), so that a finished run without an answer cannot meet it as an
        expectation. False for the kinds an absent answer satisfies (``*_not_*``) and the
        kinds about tool calls."""
        return False


class OutputContains(_Criterion):
    """The output contains a text (case-insensitive)."""

    kind: Literal["output_contains"]
    text: str
    """The text that must appear."""

    def needs_answer(self) -> bool:
        """An answer that must contain the text: no answer does not."""
        return True

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        found = self.text.lower() in behaviour.output.lower()
        return self._verdict(found, f"output {'contains' if found else 'lacks'} {self.text!r}")


class OutputNotContains(_Criterion):
    """The output does not contain a text (case-insensitive)."""

    kind: Literal["output_not_contains"]
    text: str
    """The text that must not appear."""

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        found = self.text.lower() in behaviour.output.lower()
        return self._verdict(not found, f"output {'contains' if found else 'lacks'} {self.text!r}")


class OutputMatches(_Criterion):
    """The output matches a regular expression somewhere."""

    kind: Literal["output_matches"]
    pattern: str
    """A regular expression in RE2 syntax (Python's, without backreferences or lookaround,
    so matching takes linear time); use ``(?i)`` for case-insensitive."""

    _check = field_validator("pattern")(check_regex)

    def needs_answer(self) -> bool:
        """An answer that must match: no answer does not."""
        return True

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        found = user_regex(self.pattern).search(behaviour.output) is not None
        return self._verdict(
            found, f"output {'matches' if found else 'does not match'} /{self.pattern}/"
        )


class OutputNotMatches(_Criterion):
    """The output matches a regular expression nowhere."""

    kind: Literal["output_not_matches"]
    pattern: str
    """A regular expression in RE2 syntax (Python's, without backreferences or lookaround,
    so matching takes linear time); use ``(?i)`` for case-insensitive."""

    _check = field_validator("pattern")(check_regex)

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        match = user_regex(self.pattern).search(behaviour.output)
        if match is None:
            return self._verdict(True, f"output does not match /{self.pattern}/")
        return self._verdict(False, f"output matches /{self.pattern}/ at {match.group(0)!r}")


def _matching_calls(
    calls: Sequence[ToolCall], tool: str, arguments: dict[str, Any] | None
) -> list[ToolCall]:
    return [
        c for c in calls
        if c.tool == tool
        and (arguments is None or schema_violation(arguments, c.arguments) is None)
    ]


class _SchemaChecked(_Criterion):
    tool: str
    """The tool the criterion is about."""
    arguments: dict[str, Any] | None = None
    """A JSON Schema the call's arguments are matched against."""

    _check = field_validator("arguments")(
        lambda v: None if v is None else check_json_schema(v)
    )


class ToolCalled(_SchemaChecked):
    """The tool is called at least once (with arguments matching the schema, if given)."""

    kind: Literal["tool_called"]

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's tool calls."""
        hits = _matching_calls(behaviour.tool_calls, self.tool, self.arguments)
        if hits:
            return self._verdict(True, f"called {hits[0].describe()}")
        seen = [c for c in behaviour.tool_calls if c.tool == self.tool]
        detail = f"{self.tool} was not called"
        if seen:
            detail = f"{self.tool} was called, but not as expected: {seen[0].describe()}"
        return self._verdict(False, detail)


class ToolNotCalled(_SchemaChecked):
    """The tool is never called (with arguments matching the schema, if given)."""

    kind: Literal["tool_not_called"]

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's tool calls."""
        hits = _matching_calls(behaviour.tool_calls, self.tool, self.arguments)
        if hits:
            return self._verdict(False, f"called {hits[0].describe()}")
        return self._verdict(True, f"no matching call to {self.tool}")


class ToolArguments(_Criterion):
    """Every call to the tool has arguments that satisfy a JSON Schema."""

    kind: Literal["tool_arguments"]
    tool: str
    """The tool whose calls are checked."""
    arguments: dict[str, Any]
    """The JSON Schema every call's arguments must satisfy."""

    _check = field_validator("arguments")(check_json_schema)

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's calls to the tool."""
        calls = [c for c in behaviour.tool_calls if c.tool == self.tool]
        for call in calls:
            problem = schema_violation(self.arguments, call.arguments)
            if problem is not None:
                return self._verdict(False, f"{call.describe()}: {problem}")
        return self._verdict(True, f"{len(calls)} call(s) to {self.tool} within the schema")


class PassesAcceptance(_Criterion):
    """The behaviour meets every one of the agent's acceptance criteria."""

    kind: Literal["passes_acceptance"]

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour against the acceptance criteria it is given."""
        if not acceptance:
            return self._verdict(False, "the agent has no acceptance criteria to judge against")
        failed = [j for j in judge_all(acceptance, behaviour) if not j.passed]
        if failed:
            return self._verdict(False, f"fails {failed[0].criterion}: {failed[0].detail}")
        return self._verdict(True, f"meets all {len(acceptance)} acceptance criteria")


def _as_json(output: str) -> tuple[bool, Any]:
    """The answer parsed as JSON, refusing ``NaN`` and ``Infinity`` as JSON does.

    Python's parser takes them, and a NaN meets every bound (``NaN > 500`` is false), so an
    answer ``{"amount": NaN}`` passed ``output_schema`` and ``field_bounds`` with a maximum.
    """
    try:
        return True, json.loads(output, parse_constant=_not_json)
    except (ValueError, RecursionError):  # nested deeper than Python parses: not JSON here
        return False, None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _field(value: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path (``refund.amount``, ``items.0.price``) into JSON data."""
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


BEHAVIOUR_VARIABLES = ("output", "has_output", "output_json", "tool_calls", *RUN_VARIABLES)
"""What a criterion's expression may read: the behaviour's own variables, then the run's,
under the same names permission conditions read them (:data:`~evalsuite.RUN_VARIABLES`)."""


def behaviour_variables(behaviour: Behaviour) -> Variables:
    """What expressions about a behaviour see, each variable made on first read.

    ``output`` (text, empty when there is none), ``has_output``, ``output_json`` (the output
    parsed as JSON, or null), ``tool_calls`` (``{tool, arguments}`` each, with ``result``, and
    ``error`` when the tool failed, once the behaviour's history holds the call's answer), and
    the run's ``history``, ``context`` and ``user_inputs``.
    """
    last: tuple[weakref.ref[Behaviour], Variables] | None = getattr(_LAST, "made", None)
    if last is not None and last[0]() is behaviour:
        return last[1]  # the criteria of one judgement read the same data, made once
    output = behaviour.output
    view = RunView(behaviour.history, behaviour.context)
    made = view.variables({
        "output": lambda: output or "",
        "has_output": lambda: output is not None,
        "output_json": lambda: _as_json(output)[1] if output is not None else None,
        "tool_calls": lambda: _calls_as_data(behaviour.tool_calls, behaviour.history),
    })
    _LAST.made = (weakref.ref(behaviour), made)
    return made


# The variables last made, per thread, for the behaviour being judged: judge_all asks for
# them once per criterion. A behaviour is judged as built, never changed in between.
_LAST = threading.local()


def behaviour_data(behaviour: Behaviour) -> dict[str, Any]:
    """Every variable of :func:`behaviour_variables`, as a predicate is given them: a copy
    of its own, so a predicate that changes what it was given changes nothing else."""
    variables = behaviour_variables(behaviour)
    return copy.deepcopy({name: variables[name] for name in variables})


def _calls_as_data(calls: Sequence[ToolCall], history: Sequence[Step]) -> list[dict[str, Any]]:
    """Each call as ``{tool, arguments}``, with what it returned when ``history`` holds it."""
    position = {id(step): at for at, step in enumerate(history)}
    answers = result_pairs(history) if calls and history else {}
    data: list[dict[str, Any]] = []
    for call in calls:
        item: dict[str, Any] = {"tool": call.tool, "arguments": call.arguments}
        answered = answers.get(position.get(id(call), -1))
        result = history[answered] if answered is not None else None
        if isinstance(result, ToolResult):
            item["result"] = result.result
            if result.error is not None:
                item["error"] = result.error
        data.append(item)
    return data


class OutputSchema(_Criterion):
    """The output is JSON that satisfies a JSON Schema."""

    kind: Literal["output_schema"]
    json_schema: dict[str, Any]
    """The JSON Schema the parsed output must satisfy."""

    _check = field_validator("json_schema")(check_json_schema)

    def needs_answer(self) -> bool:
        """An answer that must be JSON of the schema: no answer is not."""
        return True

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the behaviour's output as JSON."""
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        ok, value = _as_json(behaviour.output)
        if not ok:
            return self._verdict(False, "the output is not JSON")
        problem = schema_violation(self.json_schema, value)
        return self._verdict(problem is None, problem or "output matches the schema")


class FieldBounds(_Criterion):
    """A numeric field of every call to a tool, or of the JSON output, lies within bounds."""

    kind: Literal["field_bounds"]
    tool: str | None = None
    """The tool whose arguments are checked; the JSON output when unset."""
    field: str
    """Dotted path to the field: ``amount``, ``refund.amount``, ``items.0.price``."""
    minimum: float | None = None
    """Smallest allowed value (inclusive)."""
    maximum: float | None = None
    """Largest allowed value (inclusive)."""

    @model_validator(mode="after")
    def _a_bound(self) -> FieldBounds:
        if self.minimum is None and self.maximum is None:
            raise ValueError("field_bounds needs a minimum, a maximum or both")
        return self

    def _within(self, value: Any, where: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            # NaN (an in-process agent's float, or a JSON line's) is no number: it would
            # compare false with both bounds and so lie "within" any of them.
            return f"{where}: {self.field} is {value!r}, not a number"
        if self.minimum is not None and value < self.minimum:
            return f"{where}: {self.field} = {value} is below {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"{where}: {self.field} = {value} is above {self.maximum:g}"
        return None

    def needs_answer(self) -> bool:
        """On the JSON answer (no ``tool``), a field that must lie within bounds: no answer
        holds no field."""
        return self.tool is None

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Judge the field in each call to the tool, or in the output."""
        targets: list[tuple[str, Any]]
        if self.tool is not None:
            targets = [(c.describe(), c.arguments) for c in behaviour.tool_calls
                       if c.tool == self.tool]
        elif behaviour.output is None:
            return self._verdict(True, "no output to judge")
        else:
            ok, parsed = _as_json(behaviour.output)
            if not ok:
                return self._verdict(False, "the output is not JSON")
            targets = [("output", parsed)]
        for where, data in targets:
            found, value = _field(data, self.field)
            problem = (f"{where}: no field {self.field}" if not found
                       else self._within(value, where))
            if problem is not None:
                return self._verdict(False, problem)
        return self._verdict(True, f"{self.field} within bounds in {len(targets)} place(s)")


def _deepdiff_path(path: str) -> str:
    if path.startswith("root"):
        return path
    parts = [f"[{p}]" if p.isdigit() else f"['{p}']" for p in path.split(".")]
    return "root" + "".join(parts)


class Expected(_Criterion):
    """Every call to a tool, or the output, equals an expected value (compared with deepdiff)."""

    kind: Literal["expected"]
    tool: str | None = None
    """The tool whose arguments are compared; the output when unset."""
    value: Any
    """The expected arguments or output (JSON; a string compares the output as text)."""
    ignore_paths: list[str] = Field(default_factory=list)
    """Fields to leave out of the comparison, dotted (``created_at``, ``items.0.id``)."""
    tolerance: float | None = Field(default=None, ge=0)
    """How far numbers may differ and still count as equal."""

    def _diff(self, actual: Any) -> str | None:
        # Imported on use: deepdiff is slow to import, and most suites never compare values.
        from deepdiff import DeepDiff

        diff = DeepDiff(
            self.value, actual,
            exclude_paths=[_deepdiff_path(p) for p in self.ignore_paths] or None,
            math_epsilon=self.tolerance, ignore_numeric_type_changes=True,
        )
        return diff.pretty().replace("\n", "; ") if diff else None

    def needs_answer(self) -> bool:
        """On the answer (no ``tool``), an answer that must equal ``value``: no answer does
        not."""
        return self.tool is None

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Compare each call's arguments, or the output, with the expected value."""
        if self.tool is not None:
            calls = [c for c in behaviour.tool_calls if c.tool == self.tool]
            for call in calls:
                difference = self._diff(call.arguments)
                if difference is not None:
                    return self._verdict(False, f"{call.describe()} differs: {difference}")
            return self._verdict(True, f"{len(calls)} call(s) to {self.tool} as expected")
        if behaviour.output is None:
            return self._verdict(True, "no output to judge")
        actual: Any = behaviour.output
        if not isinstance(self.value, str):
            ok, actual = _as_json(behaviour.output)
            if not ok:
                return self._verdict(False, "the output is not JSON")
        difference = self._diff(actual)
        if difference is not None:
            return self._verdict(False, f"output differs: {difference}")
        return self._verdict(True, "output as expected")


class ExpressionCriterion(_Criterion):
    """A CEL expression over the behaviour and its run is true.

    It sees ``output`` (text), ``has_output``, ``output_json`` (parsed, or null),
    ``tool_calls`` (a list of ``{tool, arguments}``, each with its ``result`` once the run
    holds it), and the same run variables as permission conditions: ``history`` (every step,
    tool results parsed from JSON text), ``context`` and ``user_inputs``.
    """

    kind: Literal["expression"]
    expression: str
    """The CEL expression, e.g. ``tool_calls.all(c, c.tool != "close_account")``."""

    @field_validator("expression")
    @classmethod
    def _check(cls, value: str) -> str:
        return check_expression(value, BEHAVIOUR_VARIABLES)

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Evaluate the expression on the behaviour; an error fails the criterion."""
        try:
            held = evaluate_bool(self.expression, behaviour_variables(behaviour))
        except ExpressionFailed as exc:
            return self._verdict(False, f"could not evaluate: {exc}")
        return self._verdict(held, f"expression is {'true' if held else 'false'}")


class PredicateCriterion(_Criterion):
    """A Python function ``module:function`` answers True for the behaviour.

    It is called with the same data an expression sees. It runs only when the module is
    listed in ``predicate_modules`` of reinstate.toml.
    """

    kind: Literal["predicate"]
    predicate: str
    """``module.sub:function`` inside the workspace."""

    _function: Predicate | None = PrivateAttr(default=None)
    _path_ok = field_validator("predicate")(check_predicate_path)

    def bind(self, function: Predicate) -> None:
        """Attach the loaded function."""
        self._function = function

    def judge(self, behaviour: Behaviour, acceptance: Sequence[Criterion] = ()) -> Judgement:
        """Call the predicate; an error or a non-bool answer fails the criterion."""
        try:
            held = call_predicate(self._function, self.predicate, behaviour_data(behaviour))
        except ExpressionFailed as exc:
            return self._verdict(False, f"could not evaluate: {exc}")
        return self._verdict(held, f"{self.predicate} answered {held}")


Criterion = Annotated[
    OutputContains
    | OutputNotContains
    | OutputMatches
    | OutputNotMatches
    | OutputSchema
    | ToolCalled
    | ToolNotCalled
    | ToolArguments
    | FieldBounds
    | Expected
    | ExpressionCriterion
    | PredicateCriterion
    | PassesAcceptance,
    Field(discriminator="kind"),
]


def judge_all(
    criteria: Sequence[Criterion], behaviour: Behaviour, acceptance: Sequence[Criterion] = ()
) -> list[Judgement]:
    """Judge a behaviour on every criterion, in order, as acceptance criteria judge it: a
    behaviour without an answer gives the answer's criteria nothing to judge, and they hold
    ("no output to judge")."""
    return [c.judge(behaviour, acceptance) for c in criteria]


def judge_expectations(
    criteria: Sequence[Criterion], behaviour: Behaviour, acceptance: Sequence[Criterion] = ()
) -> list[Judgement]:
    """Judge a finished run's behaviour on a case's expectations, in order.

    As :func:`judge_all`, except that an expectation on the answer itself
    (:meth:`~_Criterion.needs_answer`: ``output_contains``, ``output_matches``,
    ``output_schema``, ``expected`` or ``field_bounds`` without a ``tool``) is not met when
    the run ended without an answer: an expectation that the answer says something is not
    met by no answer. ``passes_acceptance`` judges the acceptance criteria as the gate
    judges a run (:func:`judge_all`).
    """
    if behaviour.output is not None:
        return judge_all(criteria, behaviour, acceptance)
    return [_unanswered(c) if c.needs_answer() else c.judge(behaviour, acceptance)
            for c in criteria]


def _unanswered(criterion: _Criterion) -> Judgement:
    return Judgement.model_construct(
        criterion=criterion.name, passed=False,
        detail=f"no output: the run ended without an answer, so the expected answer "
               f"({getattr(criterion, 'kind')}) is missing")  # noqa: B009 - every kind has one


def tools_named(criteria: Sequence[Criterion]) -> list[tuple[int, str]]:
    """(position, tool) for every criterion that names a tool, to check against permissions."""
    return [
        (i, c.tool) for i, c in enumerate(criteria)
        if isinstance(c, ToolCalled | ToolNotCalled | ToolArguments | FieldBounds | Expected)
        and c.tool is not None
    ]


def predicates_named(criteria: Sequence[Criterion]) -> list[tuple[int, PredicateCriterion]]:
    """(position, criterion) for every predicate criterion, to load and bind."""
    return [(i, c) for i, c in enumerate(criteria) if isinstance(c, PredicateCriterion)]
