"""Control-layer decisions on a behaviour: allow, deny or send to review, and which rule."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, overload

from evalsuite import (
    Behaviour,
    ExpressionFailed,
    Judgement,
    Output,
    Record,
    Step,
    ToolCall,
    evaluate_bool,
    judge_all,
    schema_violation,
    user_regex,
)
from gates._controls.conditions import Situation, first_holding
from gates._controls.files import RISKS, Controls, ReviewRule

Effect = Literal["allow", "review", "deny"]


class Decision(Record):
    """What a control layer decided, and which rule decided it."""

    effect: Effect
    """allow, review (a human first) or deny."""
    rule: str
    """The deciding rule, as a path into the control file."""
    reason: str
    """Why, in words."""

    @property
    def stopped(self) -> bool:
        """Whether the behaviour is kept from taking effect on its own."""
        return self.effect != "allow"


def decide_call(controls: Controls, call: ToolCall, history: Sequence[Step] = (),
                context: dict[str, Any] | None = None) -> Decision:
    """The permission boundary's decision on one tool call, given the run before it.

    Unknown tools are denied; then ``allowed``, the argument schema, ``deny_when`` and
    ``review_when`` decide, in that order.
    """
    situation = Situation(history=history, context=context or {}, call=call)
    denied = _denial(controls, call, situation)
    if denied is not None:
        return denied
    routed = _review_when(controls, call, situation)
    if routed is not None:
        return routed
    return Decision(effect="allow", rule=f"permissions.tools.{call.tool}",
                    reason=f"{call.tool} is allowed")


def _denial(controls: Controls, call: ToolCall, situation: Situation) -> Decision | None:
    """The permission boundary's denial of a call, or None when it lets the call through."""
    permission = controls.permissions.tools.get(call.tool)
    if permission is None:
        return Decision(
            effect="deny", rule="permissions.unknown_tool",
            reason=f"{call.tool} is not in permissions.yaml",
        )
    base = f"permissions.tools.{call.tool}"
    if not permission.allowed:
        return Decision(effect="deny", rule=f"{base}.allowed", reason=f"{call.tool} is not allowed")
    unbounded = _non_finite(call.arguments)
    if unbounded is not None:
        # NaN meets every bound of a JSON Schema (no comparison with it is true) and JSON
        # cannot carry it: `maximum: 500` must not wave on an amount that is no number.
        return Decision(effect="deny", rule=f"{base}.arguments",
                        reason=f"{unbounded}: not a finite number (JSON has no NaN or "
                               f"Infinity), so no bound on it can be checked")
    if permission.arguments is not None:
        problem = schema_violation(permission.arguments, call.arguments)
        if problem is not None:
            return Decision(effect="deny", rule=f"{base}.arguments", reason=problem)
    hit = first_holding(permission.deny_when, situation)
    if hit is not None:
        condition, reason = hit
        return Decision(effect="deny", rule=f"{base}.deny_when.{condition.id}", reason=reason)
    return None


def _non_finite(value: Any, where: str = "") -> str | None:
    """Where in ``value`` (a call's arguments) a float is NaN or infinite (``amount``,
    ``items[2].price``; ``value`` for the whole), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where or "value"
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        place = f"{where}[{key}]" if not isinstance(key, str) else (
            f"{where}.{key}" if where else key)
        found = _non_finite(item, place)
        if found is not None:
            return found
    return None


def _review_when(controls: Controls, call: ToolCall, situation: Situation) -> Decision | None:
    """The first of the tool's ``review_when`` conditions that holds, as a routing decision."""
    permission = controls.permissions.tools.get(call.tool)
    if permission is None:
        return None
    hit = first_holding(permission.review_when, situation)
    if hit is None:
        return None
    condition, reason = hit
    return Decision(effect="review",
                    rule=f"permissions.tools.{call.tool}.review_when.{condition.id}",
                    reason=reason)


def judge_acceptance(controls: Controls, behaviour: Behaviour) -> list[Judgement]:
    """Every acceptance criterion's judgement on the behaviour."""
    return judge_all(controls.acceptance.criteria, behaviour)


def acceptance_decision(controls: Controls, behaviour: Behaviour) -> Decision:
    """``rejection(judge_acceptance(controls, behaviour))``, judging criteria only up to
    the first that fails."""
    return rejection(_Judgements(controls, behaviour))


class _Judgements(Sequence[Judgement]):
    """The acceptance criteria's judgements on a behaviour, each made when first asked for:
    a rule that only needs to know whether one failed stops judging at the first that did."""

    def __init__(self, controls: Controls, behaviour: Behaviour) -> None:
        self._criteria = controls.acceptance.criteria
        self._behaviour = behaviour
        self._made: list[Judgement] = []

    def __iter__(self) -> Iterator[Judgement]:
        yield from self._made
        while len(self._made) < len(self._criteria):
            criterion = self._criteria[len(self._made)]
            self._made.append(criterion.judge(self._behaviour))
            yield self._made[-1]

    def __len__(self) -> int:
        return len(self._criteria)

    @overload
    def __getitem__(self, index: int) -> Judgement: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Judgement]: ...

    def __getitem__(self, index: int | slice) -> Judgement | Sequence[Judgement]:
        return list(self)[index]


def rejection(judgements: Iterable[Judgement]) -> Decision:
    """Acceptance as a decision: deny on the first failed criterion."""
    for judgement in judgements:
        if not judgement.passed:
            return Decision(
                effect="deny", rule=f"acceptance.{judgement.criterion}", reason=judgement.detail
            )
    return Decision(effect="allow", rule="acceptance", reason="meets every criterion")


def route_call(controls: Controls, call: ToolCall, history: Sequence[Step] = (),
               context: dict[str, Any] | None = None) -> Decision:
    """Whether a tool call reaches a human first: the one routing decision on calls.

    ``review.yaml``'s tool-call rules are asked first, then the tool's ``review_when``
    conditions; both are asked whatever the permission boundary would decide, so a
    condition routes the same calls wherever it is written. A rule that cannot be
    evaluated routes the call (fail closed).
    """
    situation = Situation(history=history, context=context or {}, call=call)
    return _route_call(controls, call, situation)


def _route_call(controls: Controls, call: ToolCall, situation: Situation) -> Decision:
    judgements = _Judgements(controls, Behaviour(tool_calls=[call]))  # judged if a rule asks
    for index, rule in enumerate(controls.review.rules):
        if rule.applies_to != "tool_call":
            continue
        failed = _call_matches(controls, rule, call, judgements, situation)
        if failed is not None:
            return _routed(rule, index, situation, failed)
    routed = _review_when(controls, call, situation)
    if routed is not None:
        return routed
    return Decision(effect="allow", rule="review", reason="no review rule matches")


def route_output(controls: Controls, output: str, history: Sequence[Step] = (),
                 context: dict[str, Any] | None = None) -> Decision:
    """Whether an output reaches a human before the user sees it.

    A ``failed_criterion`` rule judges the output as the acceptance criteria judge a run:
    with every tool call the run made before it, so ``failed_criterion: any`` routes an
    answer whose run an acceptance replay rejects. A criterion that cannot be evaluated
    fails, and routes the output (fail closed).
    """
    situation = Situation(history=history, context=context or {}, output=output)
    judgements = _Judgements(controls, _answered(history, output, context or {}))
    for index, rule in enumerate(controls.review.rules):
        if rule.applies_to != "output":
            continue
        if rule.output_matches is not None and not user_regex(rule.output_matches).search(output):
            continue
        failed = None
        if rule.failed_criterion is not None:
            failed = _failed(rule.failed_criterion, judgements)
            if failed is None:
                continue
        if rule.expression is not None and not _expression_holds(rule, situation):
            continue
        return _routed(rule, index, situation, failed)
    return Decision(effect="allow", rule="review", reason="no review rule matches")


def stop_or_route(controls: Controls, step: Step, history: Sequence[Step] = (),
                  context: dict[str, Any] | None = None) -> Decision:
    """Whether a harmful step is kept from acting alone: a call denied by the permissions
    or sent to a person, an output sent to a person. Anything else takes effect."""
    if isinstance(step, ToolCall):
        situation = Situation(history=history, context=context or {}, call=step)
        denied = _denial(controls, step, situation)
        return denied if denied is not None else _route_call(controls, step, situation)
    if isinstance(step, Output):
        return route_output(controls, step.content, history, context)
    return Decision(effect="allow", rule="review", reason=f"a {step.kind} step takes no effect")


def _answered(history: Sequence[Step], output: str, context: dict[str, Any]) -> Behaviour:
    """The run up to an output, as acceptance criteria judge it: its calls, then the
    output, with the run so far as ``history``."""
    calls = [step for step in history if isinstance(step, ToolCall)]
    # The steps are already validated models: no need to check them again.
    return Behaviour.model_construct(tool_calls=calls, output=output, history=history,
                                     context=context)


_MATCHED = Judgement.model_construct(criterion="", passed=True, detail="")
"""What :func:`_call_matches` answers for a rule that matches without naming a criterion."""


def _call_matches(controls: Controls, rule: ReviewRule, call: ToolCall,
                  judgements: Iterable[Judgement], situation: Situation) -> Judgement | None:
    """None when the rule does not match the call; else the failed criterion it asked
    about (or a placeholder when it asked about none)."""
    if rule.tool is not None and rule.tool != call.tool:
        return None
    if rule.min_risk is not None:
        risk = controls.risk_of(call.tool)
        if risk is not None and RISKS.index(risk) < RISKS.index(rule.min_risk):
            return None
    if rule.arguments is not None and schema_violation(rule.arguments, call.arguments) is not None:
        return None
    if rule.expression is not None and not _expression_holds(rule, situation):
        return None
    if rule.failed_criterion is None:
        return _MATCHED
    return _failed(rule.failed_criterion, judgements)


def _expression_holds(rule: ReviewRule, situation: Situation) -> bool:
    assert rule.expression is not None
    try:
        return evaluate_bool(rule.expression, situation.variables())
    except ExpressionFailed as exc:
        # A rule that cannot be evaluated sends the behaviour to a person, and says why,
        # so a backtest counts it as a fail-closed hold rather than a match.
        situation.failures[rule.id] = str(exc)
        return True


def _failed(name: str, judgements: Iterable[Judgement]) -> Judgement | None:
    """The first failed judgement of the criterion ``name`` (or of ``any``), or None."""
    return next((j for j in judgements
                 if not j.passed and (name == "any" or j.criterion == name)), None)


def _routed(rule: ReviewRule, index: int, situation: Situation,
            failed: Judgement | None = None) -> Decision:
    failure = situation.failures.get(rule.id)
    if failure:
        reason = f"could not evaluate {rule.id} ({failure}); failing closed"
    elif failed is not None and failed.detail.startswith("could not evaluate"):
        # The criterion the rule asks about could not be judged: held, and said so.
        detail = failed.detail.removeprefix("could not evaluate").lstrip(": ")
        reason = f"could not evaluate criterion {failed.criterion} ({detail}); failing closed"
    else:
        reason = rule.description or f"matches review rule {rule.id}"
        if failed is not None and failed.criterion:
            reason += f" (fails {failed.criterion})"
    return Decision(effect="review", rule=f"review.rules[{index}].{rule.id}", reason=reason)
