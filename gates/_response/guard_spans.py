"""The guard's run log as OpenTelemetry GenAI spans, when the SDK is configured.

Spans follow the GenAI semantic conventions as of semantic-conventions v1.41 (the agent
spans' "invoke agent internal span" and the client spans' "execute tool span"; status
Development): one ``invoke_agent {agent}`` span a run, and one ``execute_tool {tool}``
child span a tool call.

- ``invoke_agent``: ``gen_ai.operation.name``, ``gen_ai.agent.name``,
  ``gen_ai.conversation.id`` (the run id), the goal as ``gen_ai.input.messages`` (one user
  message), the outputs as ``gen_ai.output.messages`` (one assistant message each, in
  order), why the run ended as ``gen_ai.response.finish_reasons``, and an error status with
  ``error.type`` when an exception ended it. The run's context (a mapping of the agent's
  own, which the conventions have no attribute for) is ``reinstate.context``, as JSON; each
  output's decision is a ``reinstate.decision`` span event at the output's time.
- ``execute_tool``: ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, the opt-in content
  attributes ``gen_ai.tool.call.arguments`` and ``gen_ai.tool.call.result`` (JSON), and the
  guard's decision as ``reinstate.decision.effect``, ``.rule`` and ``.reason``. A tool that
  failed ends with an error status carrying its message; ``reinstate.tool.call.blocked``
  says whether the call was denied or stopped by a person. A call a reviewer edited
  carries the arguments that ran, the agent's as ``reinstate.tool.call.requested_arguments``
  and the review as ``reinstate.review.id``. The span starts when the call
  is decided and ends with its result (or with the run, if none came).

Content attributes are opt-in in the conventions; the guard writes them because its log
must answer what the agent did with what (the native JSONL log holds the same). The spans
carry the steps' own times, so ``reinstate ingest --format otel`` reads back the run the
native log holds; only where an output stood among the calls is lost (the conventions give
an agent's output messages no times of their own: they are read at the end of the run).

Only the OpenTelemetry API is used, and only when something already imported it and set a
real ``TracerProvider`` before the run opened: with no SDK configured, a run costs one
dictionary look-up here and ``import gates`` loads nothing of OpenTelemetry.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pydantic_core

from evalsuite import Output, ToolCall, ToolResult
from gates._controls.policy import Decision

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCOPE = "reinstate.guard"
_RUN_KEY = "reinstate.guard.run"  # in the context while a guarded run is open


class TracerCache:
    """The tracer of the configured provider, or None when no SDK is configured."""

    def __init__(self) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None

    def tracer(self) -> Tracer | None:
        """A tracer when a real ``TracerProvider`` is set; looked up again each run, as a
        provider may be set after the guard was made."""
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:  # nothing imported the API, so nobody set a provider
            return None
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None
        if provider is not self._provider:
            self._provider, self._tracer = provider, provider.get_tracer(_SCOPE)
        return self._tracer


class RunSpans:
    """The spans of one guarded run, written as its steps are decided."""

    def __init__(self, tracer: Tracer, *, run_id: str, agent: str, goal: str,
                 context: dict[str, Any], started: datetime) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": run_id,
            "gen_ai.input.messages": _json([{"role": "user",
                                             "parts": [{"type": "text", "content": goal}]}]),
        }
        if context:
            attributes["reinstate.context"] = _json(context)
        self._tracer = tracer
        # Inside the agent's own spans (a request, a workflow) the run is their child; inside
        # another guarded run, a trace of its own: a trace is read back as one run.
        outer = otel_context.get_current()
        if otel_context.get_value(_RUN_KEY, outer) is not None:
            outer = otel_context.Context()
        self._agent = tracer.start_span(f"invoke_agent {agent}", context=outer,
                                        kind=trace.SpanKind.INTERNAL, attributes=attributes,
                                        start_time=_ns(started))
        self._parent = otel_context.set_value(
            _RUN_KEY, run_id, trace.set_span_in_context(self._agent))
        # Spans the agent starts during the run (its model calls, its tools) nest under it.
        self._token: object = otel_context.attach(self._parent)
        self._calls: dict[str, Span] = {}
        self._outputs: list[dict[str, Any]] = []

    def call(self, step: ToolCall, decision: Decision, index: int) -> None:
        """Open the call's ``execute_tool`` span, with its arguments and decision."""
        from opentelemetry import trace

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": step.tool,
            "gen_ai.tool.call.arguments": _json(step.arguments),
            "reinstate.step": index,
            **_decision(decision),
        }
        if step.call_id is not None:
            attributes["gen_ai.tool.call.id"] = step.call_id
        span = self._tracer.start_span(f"execute_tool {step.tool}", context=self._parent,
                                       kind=trace.SpanKind.INTERNAL, attributes=attributes,
                                       start_time=_ns(step.at))
        self._calls[step.call_id or ""] = span

    def revise(self, ran: ToolCall, asked: dict[str, Any], review: str | None) -> None:
        """Put the arguments a reviewer released on the call's span (the agent's too)."""
        span = self._calls.get(ran.call_id or "")
        if span is None:
            return
        span.set_attribute("gen_ai.tool.call.arguments", _json(ran.arguments))
        span.set_attribute("reinstate.tool.call.requested_arguments", _json(asked))
        if review is not None:
            span.set_attribute("reinstate.review.id", review)

    def result(self, step: ToolResult) -> None:
        """Close the call's span with what it returned, the error it raised, or its block."""
        from opentelemetry.trace import Status, StatusCode

        span = self._calls.pop(step.call_id or "", None)
        if span is None:
            return
        if step.blocked is not None:
            span.set_attribute("reinstate.tool.call.blocked", step.blocked)
        if step.error is not None or step.blocked:
            span.set_attribute("error.type", "blocked" if step.blocked else "_OTHER")
            span.set_status(Status(StatusCode.ERROR, step.error or "blocked"))
        else:
            span.set_attribute("gen_ai.tool.call.result", _json(step.result))
        span.end(end_time=_ns(step.at))

    def output(self, step: Output, decision: Decision, index: int) -> None:
        """Note an output for the run's output messages, and its decision as an event."""
        self._outputs.append({"role": "assistant",
                              "parts": [{"type": "text", "content": step.content}]})
        self._agent.add_event("reinstate.decision", {"reinstate.step": index,
                                                     **_decision(decision)},
                              timestamp=_ns(step.at))

    def finish(self, stop_reason: str, failure: BaseException | None) -> None:
        """End the calls still open and the run's span, saying why the run ended."""
        from opentelemetry import context as otel_context
        from opentelemetry.trace import Status, StatusCode

        end = _ns(datetime.now(UTC))
        for span in self._calls.values():  # routed to a person, or never answered
            span.end(end_time=end)
        self._calls.clear()
        if self._outputs:
            self._agent.set_attribute("gen_ai.output.messages", _json(self._outputs))
        self._agent.set_attribute("gen_ai.response.finish_reasons", [stop_reason])
        if failure is not None:
            self._agent.set_attribute("error.type", type(failure).__qualname__)
            self._agent.set_status(Status(StatusCode.ERROR, str(failure)))
        self._agent.end(end_time=end)
        otel_context.detach(self._token)  # type: ignore[arg-type]


def _decision(decision: Decision) -> dict[str, Any]:
    return {"reinstate.decision.effect": decision.effect,
            "reinstate.decision.rule": decision.rule,
            "reinstate.decision.reason": decision.reason}


def _json(value: Any) -> str:
    # pydantic's serializer, as the native log's: the same values, written the same way.
    return pydantic_core.to_json(value).decode()


def _ns(at: datetime | None) -> int:
    """A step's time as span nanoseconds, exactly (no float on the way)."""
    return ((at or datetime.now(UTC)) - _EPOCH) // timedelta(microseconds=1) * 1000
