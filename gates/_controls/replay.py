"""One replay: what a control layer decides on one recorded step, given the run before it.

The gate's checks, the root-cause analysis, the verification of each control change and
the backtest all ask the same question of recorded behaviour: would these controls have
let it take effect? They ask it here, so a rule decides the same way wherever it is
replayed.

Layers, as a replay names them:

- ``permissions``: the permission boundary on a tool call (``permissions.yaml``); an
  output is not a call and passes it.
- ``review``: whether the step reaches a person first (``review.yaml`` rules, then a
  permission's ``review_when``).
- ``acceptance``: the acceptance criteria on the step (a call, an output) or on a whole
  :class:`~evalsuite.Behaviour`; the first failed criterion denies.
- ``stopped``: whether anything keeps the step from acting alone: a call denied by the
  permissions or routed to a person, an output routed to a person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from evalsuite import Behaviour, Output, Step, ToolCall
from gates._controls.files import Controls
from gates._controls.policy import (
    Decision,
    acceptance_decision,
    decide_call,
    route_call,
    route_output,
    stop_or_route,
)

ReplayLayer = Literal["permissions", "review", "acceptance", "stopped"]
REPLAY_LAYERS: tuple[ReplayLayer, ...] = get_args(ReplayLayer)

_NOT_A_CALL = Decision(effect="allow", rule="permissions",
                       reason="the permission boundary decides tool calls only")


def replay(step: Step | Behaviour, layer: ReplayLayer, controls: Controls, *,
           history: Sequence[Step] = (), context: Mapping[str, Any] | None = None) -> Decision:
    """What ``layer`` of ``controls`` decides on a recorded step.

    Args:
        step: the recorded step (a tool call or an output; other kinds take no effect and
            are allowed), or, for ``acceptance``, a whole behaviour to judge.
        layer: the control layer to ask (see the module's docstring).
        controls: the controls to replay through (today's, or a baseline's).
        history: the run's steps before this one, as the agent had them.
        context: the run's context (system prompt, documents).

    Returns:
        The layer's decision, with the deciding rule and the reason.
    """
    # Read, never changed (a predicate gets a copy of its own): no copy per decision.
    ctx = context if isinstance(context, dict) else dict(context or {})
    if layer == "acceptance":
        behaviour = step if isinstance(step, Behaviour) else _behaviour_of(step, history, ctx)
        if behaviour is None:
            return Decision(effect="allow", rule="acceptance",
                            reason=f"a {_kind(step)} step is not judged")
        return acceptance_decision(controls, behaviour)
    if isinstance(step, Behaviour):
        raise ValueError(f"the {layer} layer replays one step, not a whole behaviour")
    if layer == "permissions":
        return decide_call(controls, step, history, ctx) if isinstance(step, ToolCall) \
            else _NOT_A_CALL
    if layer == "review":
        if isinstance(step, ToolCall):
            return route_call(controls, step, history, ctx)
        if isinstance(step, Output):
            return route_output(controls, step.content, history, ctx)
        return Decision(effect="allow", rule="review",
                        reason=f"a {step.kind} step takes no effect")
    if layer == "stopped":
        return stop_or_route(controls, step, history, ctx)
    raise ValueError(f"unknown replay layer {layer!r}: expected one of "
                     f"{', '.join(REPLAY_LAYERS)}")


def replay_harm(steps: Sequence[Step], harmful: Sequence[int], controls: Controls, *,
                context: Mapping[str, Any] | None = None) -> Decision:
    """A recorded harm through the acceptance criteria as the runtime meets it: each harmful
    call and output judged when it happens, with the run before it (as the guard and the
    backtest judge them), never all of them at once. The first decision that stops one,
    else the last one's: a criterion that fires only on the harmful steps together never
    fires at run time, so it stops nothing here either."""
    decisions = [replay(steps[i], "acceptance", controls, history=steps[:i], context=context)
                 for i in harmful]
    return next((d for d in decisions if d.stopped), decisions[-1])


def _behaviour_of(step: Step, history: Sequence[Step],
                  context: dict[str, Any]) -> Behaviour | None:
    # The criteria see the run before the step, as permission conditions do; built without
    # revalidating the recorded steps, and a History keeps the data it made per step.
    # Every field given: pydantic (2.11+) inspects a default factory's signature each time
    # model_construct calls it, which costs more than the rest of building the behaviour.
    if isinstance(step, ToolCall):
        return Behaviour.model_construct(tool_calls=[step], output=None, history=history,
                                         context=context)
    if isinstance(step, Output):
        return Behaviour.model_construct(tool_calls=[], output=step.content, history=history,
                                         context=context)
    return None


def _kind(step: Step | Behaviour) -> str:
    return "behaviour" if isinstance(step, Behaviour) else step.kind
