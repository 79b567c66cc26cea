"""The incident as a timeline: its runs step by step, then detection, containment and
every mode change, each with where it was read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from evalsuite import Output, Reasoning, Run, Step, ToolCall, ToolResult, UserInput, as_utc
from regressions._incident import Incident
from regressions._investigation import TimelineEvent
from regressions._regression_case import RegressionCase

# (run id, log, step) → the id of the regression case whose trigger that step is: the
# step counted among the run's steps in that log alone, as capture counts it.
Triggers = Mapping[tuple[str, str, int], str]

WIDTH = 240


def short(text: str, width: int = WIDTH) -> str:
    """One line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def step_summary(step: Step) -> str:
    """A step in one line: what was said, called or returned."""
    if isinstance(step, UserInput | Reasoning | Output):
        return short(step.content)
    if isinstance(step, ToolCall):
        return short(step.describe())
    assert isinstance(step, ToolResult)
    name = step.tool or "result"
    if step.error is not None:
        return short(f"{name} → error: {step.error}")
    return short(f"{name} → {_value(step.result)}")


def trigger_steps(cases: Iterable[RegressionCase]) -> dict[tuple[str, str, int], str]:
    """Where each captured case's trigger is: (run id, log, step) → case id.

    A case's recorded steps are its run's in the log it was captured from, from the start,
    so a trigger's position in the case is its position among the run's steps in that log
    (not in a run put together from several logs: a rotated log read first shifts it).
    Context triggers name no step and are left out.
    """
    found: dict[tuple[str, str, int], str] = {}
    for case in cases:
        if case.trigger is not None and case.trigger.step is not None:
            found.setdefault((case.provenance.run_id, case.provenance.source,
                              case.trigger.step), case.id)
    return found


def _read_from(source: str, log: str) -> bool:
    """Whether ``source`` (``logs/a.jsonl:12``, ``logs/a.json $[3]``) is a place in ``log``."""
    return source == log or source.startswith((f"{log}:", f"{log} "))


def trigger_marks(events: Sequence[TimelineEvent], triggers: Triggers) -> list[str | None]:
    """For each event, the case whose trigger it is, or None.

    A step is a case's trigger when it was read from the case's log and is at the
    trigger's position counted as capture counted it: among the run's steps in that log
    alone, whatever other logs the timeline put the run together from. Where the run's
    steps come from other logs too and the timeline does not hold all of them (edited by
    hand), that position cannot be told, and nothing is marked.
    """
    marks: list[str | None] = [None] * len(events)
    wanted: dict[str, dict[str, dict[int, str]]] = {}  # run id → log → step → case id
    for (run_id, log, step), case_id in triggers.items():
        wanted.setdefault(run_id, {}).setdefault(log, {})[step] = case_id
    runs: dict[str, list[int]] = {}  # run id → its steps' events, in step order
    for i, event in enumerate(events):
        if event.run_id in wanted and event.step is not None:
            runs.setdefault(event.run_id, []).append(i)
    for run_id, found in runs.items():
        found.sort(key=lambda i: events[i].step or 0)
        complete = [events[i].step for i in found] == list(range(len(found)))
        for log, steps in wanted[run_id].items():
            elsewhere = 0  # steps of the run read from another log, before this one
            for i in found:
                event = events[i]
                if not _read_from(event.source, log):
                    elsewhere += 1
                    continue
                if elsewhere and not complete:
                    break
                marks[i] = marks[i] or steps.get((event.step or 0) - elsewhere)
    return marks


def trigger_summary(case: RegressionCase, width: int = 160) -> str | None:
    """The case's trigger in one line: where it is, what delivered it, what it said.

    ``step 2, result of lookup_order(order_id='A-1001'): {"note": "SYSTEM NOTE…"}``; a
    trigger capture took by default says so. None for a case without a recorded trigger.
    """
    trigger = case.trigger
    if trigger is None:
        return None
    if trigger.kind == "context":
        value: Any = case.input.context
        for key in trigger.source.split(".")[1:]:
            value = value.get(key) if isinstance(value, dict) else None
        return short(f"{trigger.source}: {_value(value)}", width)
    step = case.recorded.steps[trigger.step or 0]
    if isinstance(step, ToolResult):
        said = f"error: {step.error}" if step.error is not None else _value(step.result)
        text = f"step {trigger.step}, result of {trigger.source}: {said}"
    else:
        text = f"step {trigger.step}, user input: {step_summary(step)}"
    how = "" if trigger.named else " (the last user input before the harm)"
    return short(text, width - len(how)) + how


def run_events(run: Run, sources: list[str], triggers: Triggers | None = None,
               ) -> list[TimelineEvent]:
    """Every step of a run as an event; the steps in ``triggers`` are marked as the trigger
    of their case (see :func:`trigger_marks`)."""
    events = [TimelineEvent(at=as_utc(step.at), kind=step.kind, summary=step_summary(step),
                            run_id=run.run_id, step=index,
                            source=sources[index] if index < len(sources) else "")
              for index, step in enumerate(run.steps)]
    marks = trigger_marks(events, triggers or {})
    return [e if m is None else e.model_copy(update={"trigger": m})
            for e, m in zip(events, marks, strict=True)]


def incident_events(incident: Incident, source: str) -> list[TimelineEvent]:
    """Detection and containment, as the incident file records them."""
    events = [TimelineEvent(at=incident.detected_at, kind="detection",
                            summary=f"detected: {short(incident.summary)}", source=source)]
    c = incident.containment
    if c is not None:
        events.append(TimelineEvent(
            at=c.contained_at, kind="containment", source=source,
            summary=short(f"contained by {c.contained_by}: mode {c.mode}; notified "
                          f"{', '.join(c.notified)}; scope: {c.scope}")))
    return events


def build_timeline(runs: Iterable[tuple[Run, list[str]]],
                   events: Iterable[TimelineEvent],
                   triggers: Triggers | None = None) -> list[TimelineEvent]:
    """All events in time order. A step the log gives no time keeps its place in its run,
    at the time of the step before it. Steps in ``triggers`` (see :func:`trigger_steps`)
    are marked as their case's trigger."""
    keyed: list[tuple[datetime | None, int, TimelineEvent]] = []
    order = 0
    for run, sources in runs:
        previous = as_utc(run.started_at)
        for event in run_events(run, sources, triggers):
            previous = event.at or previous
            keyed.append((previous, order, event))
            order += 1
    for event in events:
        keyed.append((event.at, order, event))
        order += 1
    known = [k for k in keyed if k[0] is not None]
    unknown = [k for k in keyed if k[0] is None]
    known.sort(key=lambda k: (k[0], k[1]))
    return [e for _, _, e in unknown] + [e for _, _, e in known]
