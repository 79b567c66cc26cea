"""The sandbox an agent runs in during an eval: tools answer from fixtures; calls are kept.

No tool touches the world. Every call is recorded; today's permission policy, when the
caller gives one, is enforced at call time, so a call it denies never reaches a fixture
and the agent sees the denial, as it would in production.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evalsuite._case import EvalCase
from evalsuite._errors import EvalsuiteError
from evalsuite._run import Reasoning, Step, ToolCall, ToolResult, Usage, json_container


class MissingFixture(EvalsuiteError):
    """The agent called a tool the case has no fixture for: an error of the case, not a result."""

    exit_code = 3

    def __init__(self, case_id: str, tool: str, arguments: dict[str, Any]) -> None:
        self.case_id = case_id
        self.tool = tool
        self.arguments = arguments
        super().__init__(
            f"case {case_id}: no fixture answers {tool}({arguments}); "
            f"add one under 'tools' in the case file"
        )


MAX_STEPS = 10_000
"""Steps (tool calls and reasoning) one trial may record by default."""

MAX_TEXT = 16 * 1024 * 1024
"""Bytes of text (tool arguments as JSON, reasoning, the answer) one trial may record:
what one agent writes is held in the gate's memory until its verdict is made."""


MAX_DEPTH = 64
"""Levels of lists and objects a tool call's arguments may nest. Every record of a call
(the run file, a verdict quoting it) wraps them in levels of its own, and pydantic writes
at most 255 in all: an agent that sent arguments nested 400 deep (valid JSON, taken by the
session) made the run file's writer raise after the trial, ending the gate with a
traceback and no verdict (the last one, perhaps a pass on the same files, stood)."""


MAX_TOKENS = 2**53
"""Input or output tokens one trial may report in all (a JSON number every reader takes
exactly)."""

MAX_COST_USD = 1e9
"""US dollars one trial may report in all."""


class TrialOverrun(EvalsuiteError):
    """The agent recorded more in one trial than a trial may hold: an error of the trial.

    An agent that loops on tool calls or writes reasoning without end would otherwise grow
    the gate's memory until the system killed it, leaving no verdict (and the last one
    standing); measured, one looping trial held 4.6 GB after 120 s.
    """

    exit_code = 3


class ToolFailed(Exception):
    """Raised to the agent when a fixture answers with an error, as a real tool would."""


class ToolDenied(ToolFailed):
    """Raised to the agent when the permission policy denies the call."""


def refuse_invalid_unicode(what: str, value: Any) -> int:
    """Raise ValueError when ``value`` holds text that is not valid Unicode: a lone
    surrogate, which a JSON line or response can carry as ``\\ud800``. Returns the size of
    ``value`` as JSON text (0 when it is not JSON), which the trial's budget counts.

    Such text cannot be written as UTF-8, so an agent that sent it made the run file's
    writer raise after the trial, ending the eval or the gate with a traceback and no
    verdict (the last one, perhaps a pass, stood). Refused where it enters the session,
    it is that trial's error and is never recorded.
    """
    try:
        return len(json.dumps(value, ensure_ascii=False).encode())
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds text that is not valid Unicode (a lone surrogate); "
                         f"expected UTF-8 text") from None
    except (TypeError, ValueError, RecursionError):
        return 0  # not JSON at all: not this check's to refuse


def refuse_deep(what: str, value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ValueError when ``value`` nests lists, tuples or dicts more than ``limit``
    levels deep (a structure that holds itself counts as endless). Walked without
    recursion, so no depth the agent sends can break the check itself."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            raise ValueError(f"{what} nest more than {limit} levels of lists and objects; "
                             f"expected at most {limit}")
        stack.extend((child, depth + 1) for child in children)


def _usage_problem(input_tokens: Any, output_tokens: Any, cost_usd: Any) -> str | None:
    """Why these usage figures cannot be counted, or None when they can."""
    for name, count in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"expected {name} as a whole number >= 0, got {count!r}"
    if cost_usd is not None and (not isinstance(cost_usd, int | float)
                                 or isinstance(cost_usd, bool)
                                 or not math.isfinite(cost_usd) or cost_usd < 0):
        return f"expected cost_usd as a finite number >= 0, got {cost_usd!r}"
    return None


@dataclass(frozen=True)
class PolicyDecision:
    """What the permission policy says about one call."""

    effect: Literal["allow", "review", "deny"]
    rule: str
    reason: str


@dataclass(frozen=True)
class Denial:
    """A call the permission policy denied: attempted by the agent, never made."""

    call: ToolCall
    """The call as the agent made it (the same object the trial's run holds)."""
    rule: str
    """The rule that denied it."""
    reason: str
    """Why, as the rule says."""

    def describe(self) -> str:
        """``attempted tool(…), denied by rule (reason)``."""
        return f"attempted {self.call.describe()}, denied by {self.rule} ({self.reason})"


# (call, the run before it, the run's context) → the decision; given by the gate.
ToolPolicy = Callable[[ToolCall, Sequence[Step], dict[str, Any]], PolicyDecision]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as an agent's model is told about it."""

    name: str
    description: str
    parameters: dict[str, Any]


class AgentSession:
    """What an agent under eval sees: the conversation, its context, and sandboxed tools.

    An agent is a function ``respond(session) -> str`` (or ``async def``). It reads
    ``session.messages`` and ``session.context``, calls
    ``session.call_tool(name, arguments)`` and may record its reasoning with
    ``session.think(text)``. A call the policy denies raises :class:`ToolDenied`; a
    fixture's error raises :class:`ToolFailed`.
    """

    def __init__(self, case: EvalCase, *, policy: ToolPolicy | None = None,
                 tools: Sequence[ToolSpec] = (), max_steps: int = MAX_STEPS,
                 max_text: int = MAX_TEXT) -> None:
        self._case = case
        self._policy = policy
        self.tools = list(tools)
        self.messages: list[dict[str, str]] = [m.model_dump() for m in case.input.messages]
        # Copies, so an agent that edits what it is given cannot change the case's fixtures.
        self.context: dict[str, Any] = copy.deepcopy(case.input.context)
        self.steps: list[Step] = []
        self.missing_fixture: MissingFixture | None = None
        self.blocked = 0
        # Kept by the session, not read back from the steps: an agent cannot make a call
        # count as denied by writing a blocked result into what it reports.
        self.denials: list[Denial] = []
        self._tokens = [0, 0, 0]  # input, output, model calls
        self._cost: float | None = None
        self._ids = itertools.count(1)
        # What the trial may still record; once spent, the overrun is the trial's error
        # (kept, as a missing fixture is: an agent may swallow the exception).
        self._steps_left = max_steps
        self._text_left = max_text
        self._limits = (max_steps, max_text)
        self.overrun: TrialOverrun | None = None

    def spend(self, steps: int, text: int) -> None:
        """Count ``steps`` steps and ``text`` bytes against the trial's budget.

        Raises:
            TrialOverrun: the trial has recorded all it may (nothing more is recorded).
        """
        if self.overrun is None:
            self._steps_left -= steps
            self._text_left -= text
            if self._steps_left < 0 or self._text_left < 0:
                steps_cap, text_cap = self._limits
                what = (f"{steps_cap:,} steps (tool calls and reasoning; [gate] max_steps "
                        f"raises it)" if self._steps_left < 0
                        else f"{text_cap:,} bytes of tool arguments, reasoning and answer")
                self.overrun = TrialOverrun(
                    f"case {self._case.id}: the agent recorded more than {what} in one "
                    f"trial; the rest was not kept")
        if self.overrun is not None:
            raise self.overrun

    def call_tool(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call a tool; the answer comes from the case's fixtures, and the call is recorded."""
        refuse_deep("call_tool: the tool's arguments", arguments)  # before copying them
        arguments = copy.deepcopy(arguments or {})
        if not isinstance(tool, str) or not isinstance(arguments, dict):
            raise TypeError(f"call_tool needs a tool name and an arguments dict, got "
                            f"{tool!r}, {type(arguments).__name__}")
        self.spend(1, refuse_invalid_unicode("call_tool: the tool's name or arguments",
                                             [tool, arguments]))
        # Built without revalidation: the name and arguments were just checked.
        call = ToolCall.model_construct(tool=tool, arguments=arguments,
                                        call_id=f"call-{next(self._ids)}")
        if self._policy is not None:
            decision = self._policy(call, self.steps, self.context)
            if decision.effect == "deny":
                self.steps.append(call)
                self.blocked += 1
                self.denials.append(Denial(call, decision.rule, decision.reason))
                denial = f"denied by {decision.rule}: {decision.reason}"
                self.steps.append(ToolResult(tool=tool, call_id=call.call_id, error=denial,
                                             blocked=True))
                raise ToolDenied(denial)
        self.steps.append(call)
        fixture = self._case.fixture_for(tool, arguments)
        if fixture is None:
            self.missing_fixture = MissingFixture(self._case.id, tool, arguments)
            raise self.missing_fixture
        # The agent gets what the tool returned; the run records a JSON text result as the
        # value it holds (text kept beside it), as every log reader does, so rules read it.
        recorded, text = fixture.result, None
        if isinstance(recorded, str) and (value := json_container(recorded)) is not None:
            recorded, text = value, fixture.result
        self.steps.append(ToolResult.model_construct(
            tool=tool, call_id=call.call_id, result=copy.deepcopy(recorded), result_text=text,
            error=fixture.error))
        if fixture.error is not None:
            raise ToolFailed(fixture.error)
        return copy.deepcopy(fixture.result)

    def think(self, text: str) -> None:
        """Record a step of reasoning, as a model's thinking would appear in a log."""
        self.spend(1, refuse_invalid_unicode("think: the reasoning", text))
        self.steps.append(Reasoning(content=text))

    def add_usage(self, input_tokens: int = 0, output_tokens: int = 0,
                  cost_usd: float | None = None) -> None:
        """Count what one model call consumed (adapters that see usage report it here).

        Raises:
            ValueError: a count that is not a whole number >= 0, or a cost that is not a
                finite number >= 0 (a NaN or a negative cost made the trial's record
                unwritable, ending the gate with a traceback and no verdict), or totals
                beyond :data:`MAX_TOKENS` or :data:`MAX_COST_USD`.
        """
        problem = _usage_problem(input_tokens, output_tokens, cost_usd)
        if problem is not None:
            raise ValueError(f"add_usage: {problem}")
        tokens = (self._tokens[0] + input_tokens, self._tokens[1] + output_tokens)
        cost = None if cost_usd is None else (self._cost or 0.0) + cost_usd
        # Totals are checked, not only each call: counts each below any bound summed to an
        # integer too long to write as text (the stored verdict was then unreadable, said
        # to be an edited database) and costs each finite summed to infinity.
        if max(tokens) > MAX_TOKENS:
            raise ValueError(f"add_usage: the trial's tokens would exceed {MAX_TOKENS:,}; "
                             f"expected counts a model call can consume")
        if cost is not None and not cost <= MAX_COST_USD:
            raise ValueError(f"add_usage: the trial's cost would exceed ${MAX_COST_USD:,.0f}; "
                             f"expected what model calls can cost")
        self._tokens[0], self._tokens[1] = tokens
        self._tokens[2] += 1
        if cost is not None:
            self._cost = cost

    def usage(self) -> Usage | None:
        """What the trial's model calls consumed, if the adapter reported any."""
        if not self._tokens[2]:
            return None
        return Usage(input_tokens=self._tokens[0], output_tokens=self._tokens[1],
                     model_calls=self._tokens[2], cost_usd=self._cost)
