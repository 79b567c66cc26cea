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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from evalsuite import Behaviour, InvalidInput, Output, RunPart, Step, ToolCall, as_utc
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


@dataclass
class JoinedRun:
    """A run's parts as a replay joins them by run id: checked to be one run, in the order
    it ran, since each step is decided on the steps before it.

    A run's parts are joined in the order the logs are given. Rotated logs given newest
    first (``x.jsonl*`` expands to ``x.jsonl x.jsonl.1``) put a run's later steps before
    its earlier ones: a refund then met no lookup before it and was denied for that,
    stopped on replay though today's controls let it through as it happened. Another run
    that reused the id (last month's, in an older log) would be joined in: each decided
    on the other's history, the two counted as one run.
    """

    latest: tuple[datetime, RunPart, int] | None = None
    """The run's latest step time so far, with the part and index of that step."""
    started: tuple[datetime, RunPart] | None = None
    """When the run's record says it started, and the part that said so."""

    def header(self, part: RunPart, show: Callable[[Path], str]) -> None:
        """Note a part's run record; one of another log starting the run again at another
        time is refused. A record without ``started_at`` (a reviewer's edit, a handover)
        starts nothing, and within one log a run may be started again (a conversation's
        turns each opened as a guarded run with its id): that log's own order is its order.

        Raises:
            InvalidInput: two runs share the id, naming both places.
        """
        started = as_utc(part.header.started_at) if part.header is not None else None
        if started is None:
            return
        if self.started is None:
            self.started = (started, part)
            return
        first, before = self.started
        if started != first and before.source != part.source:
            raise InvalidInput(None, part.where(None, show), (
                f"run '{part.run_id}' starts again here ({started.isoformat()}) after it "
                f"started at {before.where(None, show)} ({first.isoformat()}): two runs "
                f"share its id, and joined as one each would be decided on the other's "
                f"history and counted as one run; give each run its own id, or read their "
                f"logs apart"))

    def step(self, part: RunPart, index: int, show: Callable[[Path], str]) -> None:
        """Note a step's time; a step of another log earlier than one read before is
        refused (within one log, its order is kept).

        Raises:
            InvalidInput: the logs were given out of order, naming both places.
        """
        at = as_utc(part.steps[index].at)
        if at is None:
            return
        latest = self.latest
        if latest is None or at >= latest[0]:
            self.latest = (at, part, index)
            return
        seen, before, number = latest
        if before.source != part.source:
            raise InvalidInput(None, part.where(index, show), (
                f"run '{part.run_id}' read out of order: this step ({at.isoformat()}) is "
                f"earlier than its step at {before.where(number, show)} "
                f"({seen.isoformat()}), read before from another log, so its history "
                f"would be wrong; give the logs oldest first (rotated logs: x.jsonl.2.gz "
                f"x.jsonl.1 x.jsonl)"))
