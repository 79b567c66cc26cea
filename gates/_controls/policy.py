"""Control-layer decisions on a behaviour: allow, deny or send to review, and which rule."""

from __future__ import annotations

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
    permission = controls.permissions.tools.get(call.tool)
    if permission is None:
        return Decision(
            effect="deny", rule="permissions.unknown_tool",
            reason=f"{call.tool} is not in permissions.yaml",
        )
    base = f"permissions.tools.{call.tool}"
    if not permission.allowed:
        return Decision(effect="deny", rule=f"{base}.allowed", reason=f"{call.tool} is not allowed")
    if permission.arguments is not None:
        problem = schema_violation(permission.arguments, call.arguments)
        if problem is not None:
            return Decision(effect="deny", rule=f"{base}.arguments", reason=problem)
    situation = Situation(history=history, context=context or {}, call=call)
    rules: tuple[tuple[Effect, str], ...] = (("deny", "deny_when"), ("review", "review_when"))
    for effect, field in rules:
        hit = first_holding(getattr(permission, field), situation)
        if hit is not None:
            condition, reason = hit
            return Decision(effect=effect, rule=f"{base}.{field}.{condition.id}",
                            reason=reason)
    return Decision(effect="allow", rule=base, reason=f"{call.tool} is allowed")


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
    """Whether a tool call reaches a human first: review.yaml rules, then permission conditions."""
    situation = Situation(history=history, context=context or {}, call=call)
    judgements = _Judgements(controls, Behaviour(tool_calls=[call]))  # judged if a rule asks
    for index, rule in enumerate(controls.review.rules):
        if rule.applies_to == "tool_call" and _call_matches(controls, rule, call, judgements,
                                                            situation):
            return _routed(rule, index, situation)
    permission = decide_call(controls, call, history, context)
    if permission.effect == "review":
        return permission
    return Decision(effect="allow", rule="review", reason="no review rule matches")


def route_output(controls: Controls, output: str, history: Sequence[Step] = (),
                 context: dict[str, Any] | None = None) -> Decision:
    """Whether an output reaches a human before the user sees it."""
    situation = Situation(history=history, context=context or {}, output=output)
    judgements = _Judgements(controls, Behaviour(output=output))
    for index, rule in enumerate(controls.review.rules):
        if rule.applies_to != "output":
            continue
        if rule.output_matches is not None and not user_regex(rule.output_matches).search(output):
            continue
        if rule.failed_criterion is not None and not _failed(rule.failed_criterion, judgements):
            continue
        if rule.expression is not None and not _expression_holds(rule, situation):
            continue
        return _routed(rule, index, situation)
    return Decision(effect="allow", rule="review", reason="no review rule matches")


def stop_or_route(controls: Controls, step: Step, history: Sequence[Step] = (),
                  context: dict[str, Any] | None = None) -> Decision:
    """Whether a harmful step is kept from acting alone: a call denied by the permissions
    or sent to a person, an output sent to a person. Anything else takes effect."""
    if isinstance(step, ToolCall):
        decision = decide_call(controls, step, history, context)
        return decision if decision.stopped else route_call(controls, step, history, context)
    if isinstance(step, Output):
        return route_output(controls, step.content, history, context)
    return Decision(effect="allow", rule="review", reason=f"a {step.kind} step takes no effect")


def _call_matches(controls: Controls, rule: ReviewRule, call: ToolCall,
                  judgements: Iterable[Judgement], situation: Situation) -> bool:
    if rule.tool is not None and rule.tool != call.tool:
        return False
    if rule.min_risk is not None:
        risk = controls.risk_of(call.tool)
        if risk is not None and RISKS.index(risk) < RISKS.index(rule.min_risk):
            return False
    if rule.arguments is not None and schema_violation(rule.arguments, call.arguments) is not None:
        return False
    if rule.expression is not None and not _expression_holds(rule, situation):
        return False
    return rule.failed_criterion is None or _failed(rule.failed_criterion, judgements)


def _expression_holds(rule: ReviewRule, situation: Situation) -> bool:
    assert rule.expression is not None
    try:
        return evaluate_bool(rule.expression, situation.variables())
    except ExpressionFailed as exc:
        # A rule that cannot be evaluated sends the behaviour to a person, and says why,
        # so a backtest counts it as a fail-closed hold rather than a match.
        situation.failures[rule.id] = str(exc)
        return True


def _failed(name: str, judgements: Iterable[Judgement]) -> bool:
    return any(not j.passed and (name == "any" or j.criterion == name) for j in judgements)


def _routed(rule: ReviewRule, index: int, situation: Situation) -> Decision:
    failure = situation.failures.get(rule.id)
    return Decision(
        effect="review", rule=f"review.rules[{index}].{rule.id}",
        reason=(f"could not evaluate {rule.id} ({failure}); failing closed" if failure
                else rule.description or f"matches review rule {rule.id}"),
    )
