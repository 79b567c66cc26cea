"""Deciding every recorded step: each call and output through each control layer.

Parts of runs stream in as the log readers give them; each run's history and context
grow step by step (nothing is re-sliced or re-read per step), and a run's state is
dropped after its last part, so memory follows the runs open at once, not the logs.
Every decision is asked of :func:`gates._controls.replay.replay`, the one replay function.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evalsuite import History, Output, RunPart, Step, ToolCall, apply_guard_edits, display_path
from gates._controls.judge import Judge
from gates._controls.policy import Decision
from gates._controls.replay import JoinedRun

# Where a step sits in the whole history: (part number, step in part). Every process
# reading the same logs numbers them alike, so results merge in log order.
Order = tuple[int, int]
def routed(decisions: Mapping[str, Decision]) -> bool:
    """Whether a person sees the step first: review routes it and the permissions let it
    through to review (a call denied outright reaches nobody)."""
    permissions = decisions.get("permissions")
    review = decisions["review"]
    return review.effect == "review" and (permissions is None or permissions.effect != "deny")


@dataclass
class Decided:
    """One call or output and what each layer decided on it (now, and before)."""

    run_id: str
    index: int
    where: str
    order: Order
    step: ToolCall | Output
    now: dict[str, Decision]
    before: dict[str, Decision] | None

    @property
    def what(self) -> str:
        """``tool(args)`` for a call, ``output`` for an output."""
        return self.step.describe() if isinstance(self.step, ToolCall) else "output"


@dataclass
class RunState:
    """What a run had when its next step came: every step so far and its context."""

    where: str
    order: Order
    history: History = field(default_factory=History)
    """Each step converted once, as rules read it, and shared by every layer's decision."""
    context: dict[str, Any] = field(default_factory=dict)
    joined: JoinedRun = field(default_factory=JoinedRun)
    """Its parts checked to be one run, in the order it ran."""


class Sink(Protocol):
    """What receives the decisions."""

    def step(self, decided: Decided) -> None:
        """One decided call or output."""

    def other(self, run_id: str, step: Step) -> None:
        """A step that takes no effect (input, reasoning, tool result)."""

    def run_done(self, run_id: str, state: RunState) -> None:
        """A run's last part was read."""


def shard_of(run_id: str, jobs: int) -> int:
    """Which of ``jobs`` processes decides a run (stable across processes)."""
    return zlib.crc32(run_id.encode()) % jobs


def decide_parts(parts: Iterable[RunPart], judge: Judge, against: Judge | None, sink: Sink, *,
                 last_part: Mapping[str, int] | None = None, shard: tuple[int, int] = (0, 1),
                 show: Callable[[Path], str] = display_path,
                 numbers: Iterable[int] | None = None) -> None:
    """Decide every call and output of the runs in ``parts`` that fall in ``shard``.

    Args:
        parts: the parts of runs, in log order.
        judge: the controls replayed.
        against: the controls compared with, if any.
        sink: receives each decision and the end of each run.
        last_part: each run's last part number, so its state is dropped right after.
        shard: (this process, of how many): only runs that :func:`shard_of` gives it.
        show: how a log file is named in ``file:line``.
        numbers: each part's number in the whole history, when ``parts`` are only some
            of it (one run of a Ray Dataset): steps then sort, and merge, in log order.
    """
    mine, jobs = shard
    show = functools.cache(show)  # a file is named once, not once per step
    states: dict[str, RunState] = {}
    number = -1
    numbered = enumerate(parts) if numbers is None else zip(numbers, parts, strict=True)
    for number, part in numbered:
        run_id = part.run_id
        if jobs > 1 and shard_of(run_id, jobs) != mine:
            continue
        state = states.get(run_id)
        if state is None:
            state = states[run_id] = RunState(where=part.where(None, show), order=(number, -1))
        if part.header is not None:
            state.joined.header(part, show)
            state.context.update(part.header.context)
            # A reviewer's edit in a guard's log: later steps are decided after the call
            # that ran, as the guard decided them live (the edited call itself was decided
            # above as the agent asked for it).
            apply_guard_edits(part, state.history)
        for index, step in enumerate(part.steps):
            state.joined.step(part, index, show)
            position = len(state.history)
            if isinstance(step, (ToolCall, Output)):
                sink.step(Decided(
                    run_id=run_id, index=position, where=part.where(index, show),
                    order=(number, index), step=step,
                    now=judge.decide(step, state.history, state.context),
                    before=None if against is None
                    else against.decide(step, state.history, state.context)))
            else:
                sink.other(run_id, step)
            state.history.append(step)
        if last_part is not None and last_part.get(run_id) == number:
            sink.run_done(run_id, states.pop(run_id))
    for run_id, state in states.items():
        sink.run_done(run_id, state)

