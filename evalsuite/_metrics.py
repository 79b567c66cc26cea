"""Operating metrics computed from runs, each from documented run fields.

A metric whose fields no run in the logs records is ``None`` ("unknown"), never zero:
a log that does not say how often a person corrected the agent says nothing about it.
Nor is a sum too large to count (``$inf``): it is unknown too.

- task success rate: ``outcome.success`` true ÷ runs recording it.
- human correction rate: ``outcome.human_corrected`` true ÷ runs recording it.
- average iterations per completed task: over runs with ``outcome.success`` true, their
  ``usage.model_calls``, else their agent turns (each unbroken stretch of reasoning, tool
  calls and outputs between user inputs and tool results).
- cost per successful run: the sum of ``usage.cost_usd`` over all runs ÷ successful runs;
  unknown unless every run records its cost.
- escalation rate: ``outcome.escalated`` true ÷ runs recording it; with escalation tools
  named, a call to one is an escalation and every run counts.
- blocked tool calls: tool results with ``blocked`` true; unknown when none records it.

What a run consumed and how it went, wherever the log records it (OpenTelemetry GenAI
spans do: ``gen_ai.usage.*``, the model, the calls, ``error.type`` and error statuses):

- model calls: the sum of ``usage.model_calls``, naming the models (``metadata.model``).
- input and output tokens: the sums of ``usage.input_tokens`` and ``usage.output_tokens``.
- tool calls: tool-call steps, saying how many had their arguments not logged.
- errors: failed model calls and agent turns (``metadata.errors``) and tool results with
  an ``error``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from evalsuite._parts import RunPart, RunStarts
from evalsuite._record import Record
from evalsuite._run import Output, Reasoning, ToolCall, ToolResult


class Metric(Record):
    """One metric over the runs read."""

    name: str
    """The metric's name."""
    value: float | None
    """The value; none when the logs do not record what it needs (unknown, not zero)."""
    unit: Literal["ratio", "count", "iterations", "usd"]
    """How to read the value."""
    basis: str
    """What it was computed from, or why it is unknown."""


class Metrics(Record):
    """Every metric over a set of logs."""

    schema_version: Literal[1] = 1
    """Version of this record's format."""
    runs: int
    """Runs read."""
    metrics: list[Metric]
    """The metrics, in the documented order."""


@dataclass(slots=True)
class _Facts:
    success: bool | None = None
    corrected: bool | None = None
    escalated: bool | None = None
    cost: float | None = None
    model_calls: int | None = None
    turns: int = 0
    in_turn: bool = False
    called_escalation: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None


class MetricsCounter:
    """Reads parts of runs as they stream and counts what the metrics need, per run."""

    def __init__(self, escalation_tools: Iterable[str] = ()) -> None:
        self.escalation_tools = frozenset(escalation_tools)
        self._runs: dict[str, _Facts] = {}
        self._blocked = 0
        self._blocked_recorded = 0
        self._models: set[str] = set()
        self._tool_calls = 0
        self._not_logged = 0
        self._failed_calls = 0
        self._failed_tools = 0
        # Runs are counted by id: a run id one log starts again is counted as one run, its
        # outcome the last one read, so the command says so (``starts.lines``).
        self.starts = RunStarts()

    def feed(self, part: RunPart) -> None:
        """Count one part of a run."""
        self.starts.note(part)
        facts = self._runs.get(part.run_id)
        if facts is None:
            facts = self._runs[part.run_id] = _Facts()
        header = part.header
        if header is not None:
            if header.outcome is not None:
                o = header.outcome
                facts.success = o.success if o.success is not None else facts.success
                facts.corrected = (o.human_corrected if o.human_corrected is not None
                                   else facts.corrected)
                facts.escalated = o.escalated if o.escalated is not None else facts.escalated
            if header.usage is not None:
                u = header.usage
                if u.cost_usd is not None:
                    facts.cost = (facts.cost or 0.0) + u.cost_usd
                if u.model_calls is not None:
                    facts.model_calls = (facts.model_calls or 0) + u.model_calls
                if u.input_tokens is not None:
                    facts.input_tokens = (facts.input_tokens or 0) + u.input_tokens
                if u.output_tokens is not None:
                    facts.output_tokens = (facts.output_tokens or 0) + u.output_tokens
            model = header.metadata.get("model")
            if isinstance(model, str):
                self._models.add(model)
            errors = header.metadata.get("errors")
            if isinstance(errors, list):
                self._failed_calls += len(errors)
        for step in part.steps:
            agent = isinstance(step, Reasoning | ToolCall | Output)
            if agent and not facts.in_turn:
                facts.turns += 1
            facts.in_turn = agent  # an input or a result ends the agent's turn
            if isinstance(step, ToolCall):
                self._tool_calls += 1
                self._not_logged += step.arguments_logged is False
                facts.called_escalation |= step.tool in self.escalation_tools
            if isinstance(step, ToolResult) and step.error is not None:
                self._failed_tools += 1
            if isinstance(step, ToolResult) and step.blocked is not None:
                self._blocked_recorded += 1
                self._blocked += step.blocked

    def metrics(self) -> Metrics:
        """The metrics over everything fed so far."""
        runs = list(self._runs.values())
        total = len(runs)
        success = [r.success for r in runs if r.success is not None]
        successes = sum(success)
        out = [_rate("task success rate", success, total, "outcome.success")]
        out.append(_rate("human correction rate",
                         [r.corrected for r in runs if r.corrected is not None], total,
                         "outcome.human_corrected"))
        completed = [r for r in runs if r.success]
        if not success:
            out.append(Metric(name="average iterations per completed task", value=None,
                              unit="iterations",
                              basis="unknown: no run records outcome.success"))
        elif not completed:
            out.append(Metric(name="average iterations per completed task", value=None,
                              unit="iterations", basis="unknown: no run completed its task"))
        else:
            counts = [r.model_calls if r.model_calls is not None else r.turns for r in completed]
            average = _finite(sum(counts), len(counts))
            out.append(Metric(name="average iterations per completed task",
                              value=average, unit="iterations",
                              basis=f"{len(completed)} completed runs (usage.model_calls, "
                                    f"else agent turns)" if average is not None else
                                    f"unknown: {_TOO_LARGE} (usage.model_calls)"))
        costed = [r.cost for r in runs if r.cost is not None]
        if not costed or len(costed) < total:
            basis = (f"unknown: usage.cost_usd recorded for {len(costed)} of {total} runs")
            out.append(Metric(name="cost per successful run", value=None, unit="usd",
                              basis=basis))
        elif not success or not successes:
            out.append(Metric(name="cost per successful run", value=None, unit="usd",
                              basis="unknown: no run records a success"))
        elif _finite(sum(costed), successes) is None:
            out.append(Metric(name="cost per successful run", value=None, unit="usd",
                              basis=f"unknown: {_TOO_LARGE} (usage.cost_usd)"))
        else:
            out.append(Metric(name="cost per successful run", value=sum(costed) / successes,
                              unit="usd", basis=f"${sum(costed):.4f} over {successes} "
                                                f"successful runs"))
        if self.escalation_tools:
            escalated = [bool(r.escalated) or r.called_escalation for r in runs]
            source = f"outcome.escalated or a call to {', '.join(sorted(self.escalation_tools))}"
        else:
            escalated = [r.escalated for r in runs if r.escalated is not None]
            source = "outcome.escalated"
        out.append(_rate("escalation rate", escalated, total, source))
        if self._blocked_recorded:
            out.append(Metric(name="blocked tool calls", value=self._blocked, unit="count",
                              basis=f"{self._blocked_recorded} tool results record blocked"))
        else:
            out.append(Metric(name="blocked tool calls", value=None, unit="count",
                              basis="unknown: no tool result records blocked"))
        out += self._consumption(runs)
        return Metrics(runs=total, metrics=out)

    def _consumption(self, runs: list[_Facts]) -> list[Metric]:
        """Model calls, tokens, tool calls and errors, where the runs record them."""
        out = []
        models = f" ({', '.join(sorted(self._models))})" if self._models else ""
        for name, values, field in (
                ("model calls", [r.model_calls for r in runs], "usage.model_calls"),
                ("input tokens", [r.input_tokens for r in runs], "usage.input_tokens"),
                ("output tokens", [r.output_tokens for r in runs], "usage.output_tokens")):
            known = [v for v in values if v is not None]
            if not known:
                out.append(Metric(name=name, value=None, unit="count",
                                  basis=f"unknown: no run records {field}"))
                continue
            if _finite(sum(known)) is None:
                out.append(Metric(name=name, value=None, unit="count",
                                  basis=f"unknown: {_TOO_LARGE} ({field})"))
                continue
            out.append(Metric(name=name, value=sum(known), unit="count",
                              basis=f"{field} of {len(known)} of {len(runs)} runs"
                                    + (models if name == "model calls" else "")))
        if not runs:
            unknown = "unknown: no runs were read"
            out.append(Metric(name="tool calls", value=None, unit="count", basis=unknown))
            out.append(Metric(name="errors", value=None, unit="count", basis=unknown))
            return out
        out.append(Metric(name="tool calls", value=self._tool_calls, unit="count",
                          basis=f"tool-call steps of {len(runs)} runs ({self._not_logged} "
                                f"with their arguments not logged)"))
        out.append(Metric(name="errors", value=self._failed_calls + self._failed_tools,
                          unit="count",
                          basis=f"{self._failed_calls} failed model calls or agent turns "
                                f"(metadata.errors), {self._failed_tools} tool results with "
                                f"an error"))
        return out


_TOO_LARGE = "the values recorded add up past what can be counted"


def _finite(total: float, over: int = 1) -> float | None:
    """``total / over`` as a finite float, or None: counts a log gives as huge integers (or
    costs adding up to infinity) made "$inf", or stopped ``metrics`` with a traceback."""
    try:
        value = total / over
    except OverflowError:  # an integer too large for a float
        return None
    return value if math.isfinite(value) else None


def _rate(name: str, values: list[bool], total: int, field: str) -> Metric:
    if not values:
        return Metric(name=name, value=None, unit="ratio",
                      basis=f"unknown: no run records {field}")
    return Metric(name=name, value=sum(values) / len(values), unit="ratio",
                  basis=f"{sum(values)} of {len(values)} runs recording {field} "
                        f"({total - len(values)} do not)")
