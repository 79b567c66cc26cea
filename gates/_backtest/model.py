"""What a backtest found: the typed result ``reinstate backtest`` prints and ``--json`` writes.

One :class:`Backtest` per run of the controls over recorded history: what every rule fired
on, what changed against the controls compared with, how many calls went to a person, and,
for labelled runs, which harmful calls were stopped and which good calls were blocked.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from evalsuite import Record

LabelKind = Literal["harmful", "good"]
ChangeKind = Literal["newly_denied", "newly_routed", "newly_allowed"]
Effect = Literal["allow", "review", "deny"]


class Example(Record):
    """One recorded step, where it was read and what was decided on it."""

    where: str
    """``file:line`` (or ``file $.path``) the step was read from."""
    run_id: str
    """The run the step belongs to."""
    step: int
    """The step's position in its run, counted from 0 (as ``capture --step`` counts)."""
    what: str
    """The step: ``tool(arg=value, …)`` for a call, ``output`` for an output."""
    reason: str
    """Why the rule decided as it did."""


class RuleTally(Record):
    """What one rule did across the history."""

    rule: str
    """The rule, as a path into the control file (the form verdicts and replays show)."""
    effect: Effect
    """What the rule does when it fires: review (a person first) or deny."""
    calls: int = 0
    """Tool calls it fired on."""
    outputs: int = 0
    """Outputs it fired on."""
    runs: int = 0
    """Runs with at least one step it fired on."""
    examples: list[Example] = Field(default_factory=list)
    """The first few steps it fired on, in log order."""
    fail_closed: int = 0
    """Steps where the rule could not be evaluated and so held (fail closed)."""
    first_error: str | None = None
    """The first evaluation error, when there was one."""


class ToolLoad(Record):
    """Review load on one tool."""

    tool: str
    """The tool."""
    calls: int
    """Its recorded calls."""
    routed: int
    """Of them, the calls sent to a person (not denied outright)."""
    share_of_tool: float
    """``routed / calls``."""
    share_of_all: float
    """``routed`` as a share of every recorded tool call."""


class ReviewLoad(Record):
    """What the controls would send to people."""

    calls: int
    """Every recorded tool call."""
    routed: int
    """Calls sent to a person."""
    share: float
    """``routed / calls`` (0 when there are no calls)."""
    outputs: int
    """Every recorded output."""
    outputs_routed: int
    """Outputs held for a person."""
    tools: list[ToolLoad] = Field(default_factory=list)
    """Per tool, by name."""


class ChangeTally(Record):
    """One kind of change brought by one rule."""

    kind: ChangeKind
    """newly_denied, newly_routed or newly_allowed."""
    rule: str
    """The rule that now decides (for newly_allowed: the rule that decided before)."""
    steps: int
    """Steps that changed this way."""
    examples: list[Example] = Field(default_factory=list)
    """The first few of them, in log order."""


class Comparison(Record):
    """What changed against the controls compared with."""

    against: str
    """The controls compared with: ``today``, ``baseline:INC-n`` or a folder."""
    newly_denied: int = 0
    """Steps denied now that were allowed or sent to review."""
    newly_routed: int = 0
    """Steps sent to a person now that were allowed or denied."""
    newly_allowed: int = 0
    """Steps allowed now that were denied or sent to review."""
    changes: list[ChangeTally] = Field(default_factory=list)
    """Per kind of change and rule."""


class LabelledStep(Record):
    """A labelled run or step and what the controls did to it."""

    run_id: str
    """The labelled run."""
    step: int | None
    """The labelled step, counted from 0; none when the whole run is labelled."""
    where: str
    """Where the step (or the run's first record) was read."""
    label: LabelKind
    """harmful or good."""
    source: str
    """Where the label came from: the labels file and line, or the incident."""
    note: str = ""
    """The label's note."""
    effect: Effect
    """What the controls did: the strongest decision on the step (on any step, for a run)."""
    rule: str
    """The deciding rule (for a run: on its first stopped step)."""
    reason: str
    """Why."""
    stopped_at: int | None = None
    """For a whole labelled run: the first step the controls stopped."""


class Confusion(Record):
    """Labelled behaviour against what the controls did, each listed."""

    harmful_stopped: list[LabelledStep] = Field(default_factory=list)
    """Harmful calls, outputs or runs that the controls deny or send to a person."""
    harmful_allowed: list[LabelledStep] = Field(default_factory=list)
    """Harmful calls, outputs or runs that would still take effect."""
    good_left_alone: list[LabelledStep] = Field(default_factory=list)
    """Good calls, outputs or runs that go through untouched."""
    good_reviewed: list[LabelledStep] = Field(default_factory=list)
    """Good ones sent to a person first (review load, not a block)."""
    good_blocked: list[LabelledStep] = Field(default_factory=list)
    """Good ones denied outright."""


class Totals(Record):
    """The history backtested, and what the controls did to it in all."""

    runs: int = 0
    """Runs read."""
    steps: int = 0
    """Steps read."""
    calls: int = 0
    """Tool calls read."""
    outputs: int = 0
    """Outputs read."""
    calls_denied: int = 0
    """Calls denied (by the permissions, or by a failed acceptance criterion)."""
    calls_routed: int = 0
    """Calls sent to a person and not denied."""
    outputs_denied: int = 0
    """Outputs failing an acceptance criterion."""
    outputs_routed: int = 0
    """Outputs held for a person."""
    fail_closed: int = 0
    """Decisions made because a condition could not be evaluated."""


class Backtest(Record):
    """``reinstate backtest``: what the controls would have done across recorded history."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    agent: str
    """The agent backtested."""
    controls: str
    """The controls replayed: ``today``, ``baseline:INC-n``, a folder, or ``given``."""
    compare: str | None = None
    """The controls compared with, if any."""
    rule: str | None = None
    """With ``--rule``: the only rule that decided (every other allowed)."""
    logs: list[str] = Field(default_factory=list)
    """The logs read."""
    totals: Totals = Field(default_factory=Totals)
    """The history and what was decided in all."""
    rules: list[RuleTally] = Field(default_factory=list)
    """Every rule that fired, by path."""
    review_load: ReviewLoad
    """What would go to people."""
    comparison: Comparison | None = None
    """What changed against ``compare``."""
    confusion: Confusion | None = None
    """Labelled runs and steps against what was decided, when there are labels."""
    passed: bool
    """Every labelled harmful step stopped and no labelled good step denied (true without
    labels: unlabelled runs never fail), and something was decided; the exit code is 0
    exactly when this holds."""
    inconclusive: str | None = None
    """Why nothing could be decided (no tool call or output of the agent in the logs):
    never a figure of zero harm let through or zero good blocked. ``passed`` is then False
    and the exit code 4."""
    notes: list[str] = Field(default_factory=list)
    """What the reader should know about how this was computed."""
