"""Counting what was decided: per rule, per change, per tool and per label.

A :class:`Tally` receives every decided step (see :mod:`gates._backtest.decide`), keeps
counts and the first few examples in log order, and merges with the tally of another
process exactly, so splitting the runs across processes changes nothing in the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from evalsuite import Step, ToolCall
from gates._backtest.decide import Decided, Order, RunState, routed
from gates._backtest.labels import BacktestLabel
from gates._backtest.model import (
    ChangeKind,
    ChangeTally,
    Comparison,
    Confusion,
    Example,
    LabelledStep,
    ReviewLoad,
    RuleTally,
    ToolLoad,
    Totals,
)
from gates._controls.judge import STRENGTH, strongest
from gates._controls.policy import Decision

EXAMPLES = 3
FAIL_CLOSED = "failing closed"


def failed_closed(decision: Decision) -> bool:
    """Whether a rule held only because it could not be evaluated."""
    return decision.reason.endswith(FAIL_CLOSED) or decision.reason.startswith(
        "could not evaluate")


@dataclass
class Counts:
    """The totals while they are counted (a plain class: counting must be cheap)."""

    runs: int = 0
    steps: int = 0
    calls: int = 0
    outputs: int = 0
    calls_denied: int = 0
    calls_routed: int = 0
    outputs_denied: int = 0
    outputs_routed: int = 0
    fail_closed: int = 0

    def add(self, other: Counts) -> None:
        """Add another tally's counts."""
        for name in dataclasses.fields(self):
            setattr(self, name.name, getattr(self, name.name) + getattr(other, name.name))

    def model(self) -> Totals:
        """The counts as the result shows them."""
        return Totals(**dataclasses.asdict(self))


@dataclass
class _Rule:
    effect: str
    calls: int = 0
    outputs: int = 0
    runs: int = 0
    examples: list[tuple[Order, Example]] = field(default_factory=list)
    fail_closed: int = 0
    first_error: tuple[Order, str] | None = None


@dataclass
class _Change:
    steps: int = 0
    examples: list[tuple[Order, Example]] = field(default_factory=list)


@dataclass
class _Run:
    """A labelled run, while it is read: its strongest decision so far."""

    label: BacktestLabel
    effect: str = "allow"
    rule: str = ""
    reason: str = "no step of the run was stopped"
    stopped_at: int | None = None


@dataclass
class Tally:
    """Everything counted so far; picklable, and mergeable in log order."""

    labels: dict[tuple[str, int | None], BacktestLabel] = field(default_factory=dict)
    totals: Counts = field(default_factory=Counts)
    rules: dict[str, _Rule] = field(default_factory=dict)
    changes: dict[tuple[str, str], _Change] = field(default_factory=dict)
    tool_calls: dict[str, int] = field(default_factory=dict)
    tool_routed: dict[str, int] = field(default_factory=dict)
    labelled: list[tuple[Order, LabelledStep]] = field(default_factory=list)
    _fired: dict[str, set[str]] = field(default_factory=dict)
    _runs: dict[str, _Run] = field(default_factory=dict)

    @classmethod
    def for_labels(cls, labels: Iterable[BacktestLabel]) -> Tally:
        """An empty tally that watches ``labels`` (a step label wins over a run label)."""
        return cls(labels={(label.run_id, label.step): label for label in labels})

    def step(self, decided: Decided) -> None:
        """Count one decided call or output."""
        totals = self.totals
        totals.steps += 1
        is_call = isinstance(decided.step, ToolCall)
        best = strongest(decided.now)
        sent = routed(decided.now)
        if is_call:
            assert isinstance(decided.step, ToolCall)
            tool = decided.step.tool
            totals.calls += 1
            totals.calls_denied += best.effect == "deny"
            totals.calls_routed += sent
            self.tool_calls[tool] = self.tool_calls.get(tool, 0) + 1
            self.tool_routed[tool] = self.tool_routed.get(tool, 0) + sent
        else:
            totals.outputs += 1
            totals.outputs_denied += best.effect == "deny"
            totals.outputs_routed += sent
        stopping = {d.rule: d for d in decided.now.values() if d.stopped}
        if stopping:
            fired = self._fired.setdefault(decided.run_id, set())
            for decision in stopping.values():
                self._rule(decision, decided, is_call)
                fired.add(decision.rule)
        if decided.before is not None:
            self._change(strongest(decided.before), best, decided)
        self._label(decided, best)

    def other(self, run_id: str, step: Step) -> None:
        """Count a step that takes no effect."""
        self.totals.steps += 1

    def run_done(self, run_id: str, state: RunState) -> None:
        """Close a run: count the rules that fired in it and settle its run label."""
        self.totals.runs += 1
        for rule in self._fired.pop(run_id, ()):
            self.rules[rule].runs += 1
        label = self.labels.get((run_id, None))
        if label is None:
            return
        run = self._runs.pop(run_id, None) or _Run(label)
        self.labelled.append((state.order, LabelledStep(
            run_id=run_id, step=None, where=state.where, label=label.label, source=label.source,
            note=label.note, effect=run.effect, rule=run.rule or "none",
            reason=run.reason, stopped_at=run.stopped_at)))

    def _rule(self, decision: Decision, decided: Decided, is_call: bool) -> None:
        tally = self.rules.get(decision.rule)
        if tally is None:
            tally = self.rules[decision.rule] = _Rule(effect=decision.effect)
        tally.calls += is_call
        tally.outputs += not is_call
        if len(tally.examples) < EXAMPLES:
            tally.examples.append((decided.order, _example(decided, decision)))
        if failed_closed(decision):
            tally.fail_closed += 1
            self.totals.fail_closed += 1
            if tally.first_error is None:
                tally.first_error = (decided.order, decision.reason)

    def _change(self, before: Decision, after: Decision, decided: Decided) -> None:
        if before.effect == after.effect:
            return
        kind: ChangeKind
        if after.effect == "deny":
            kind, rule = "newly_denied", after.rule
        elif after.effect == "review":
            kind, rule = "newly_routed", after.rule
        else:
            kind, rule = "newly_allowed", before.rule
        change = self.changes.setdefault((kind, rule), _Change())
        change.steps += 1
        if len(change.examples) < EXAMPLES:
            shown = after if after.stopped else before
            change.examples.append((decided.order, _example(
                decided, shown.model_copy(update={
                    "reason": f"{before.effect} → {after.effect}: {shown.reason}"}))))

    def _label(self, decided: Decided, best: Decision) -> None:
        label = self.labels.get((decided.run_id, decided.index))
        if label is not None:
            self.labelled.append((decided.order, LabelledStep(
                run_id=decided.run_id, step=decided.index, where=decided.where,
                label=label.label, source=label.source, note=label.note, effect=best.effect,
                rule=best.rule, reason=best.reason)))
        run_label = self.labels.get((decided.run_id, None))
        if run_label is None:
            return
        run = self._runs.setdefault(decided.run_id, _Run(run_label))
        if STRENGTH[best.effect] > STRENGTH[run.effect]:
            run.effect, run.rule, run.reason = best.effect, best.rule, best.reason
            run.stopped_at = decided.index

    def merge(self, other: Tally) -> None:
        """Add another process's tally (runs never straddle two tallies)."""
        self.totals.add(other.totals)
        for rule, theirs in other.rules.items():
            mine = self.rules.setdefault(rule, _Rule(effect=theirs.effect))
            mine.calls += theirs.calls
            mine.outputs += theirs.outputs
            mine.runs += theirs.runs
            mine.fail_closed += theirs.fail_closed
            mine.examples = sorted(mine.examples + theirs.examples)[:EXAMPLES]
            errors = [e for e in (mine.first_error, theirs.first_error) if e is not None]
            mine.first_error = min(errors) if errors else None
        for key, change in other.changes.items():
            ours = self.changes.setdefault(key, _Change())
            ours.steps += change.steps
            ours.examples = sorted(ours.examples + change.examples)[:EXAMPLES]
        for tool, count in other.tool_calls.items():
            self.tool_calls[tool] = self.tool_calls.get(tool, 0) + count
        for tool, count in other.tool_routed.items():
            self.tool_routed[tool] = self.tool_routed.get(tool, 0) + count
        self.labelled += other.labelled

    def rule_tallies(self) -> list[RuleTally]:
        """Every rule that fired, by path."""
        return [RuleTally(rule=rule, effect=t.effect, calls=t.calls,
                          outputs=t.outputs, runs=t.runs,
                          examples=[e for _, e in sorted(t.examples)],
                          fail_closed=t.fail_closed,
                          first_error=t.first_error[1] if t.first_error else None)
                for rule, t in sorted(self.rules.items())]

    def review_load(self) -> ReviewLoad:
        """What would go to people, per tool and in all."""
        calls = self.totals.calls
        routed_calls = self.totals.calls_routed
        return ReviewLoad(
            calls=calls, routed=routed_calls, share=_share(routed_calls, calls),
            outputs=self.totals.outputs, outputs_routed=self.totals.outputs_routed,
            tools=[ToolLoad(tool=tool, calls=count, routed=self.tool_routed.get(tool, 0),
                            share_of_tool=_share(self.tool_routed.get(tool, 0), count),
                            share_of_all=_share(self.tool_routed.get(tool, 0), calls))
                   for tool, count in sorted(self.tool_calls.items())])

    def comparison(self, against: str) -> Comparison:
        """What changed against the controls compared with."""
        counts = {kind: sum(c.steps for (k, _), c in self.changes.items() if k == kind)
                  for kind in ("newly_denied", "newly_routed", "newly_allowed")}
        return Comparison(
            against=against, **counts,
            changes=[ChangeTally(kind=kind, rule=rule,
                                 steps=change.steps,
                                 examples=[e for _, e in sorted(change.examples)])
                     for (kind, rule), change in sorted(self.changes.items())])

    def unsettled(self) -> list[tuple[BacktestLabel, int]]:
        """Each label not settled exactly once, with how often it was: a label read in
        the first pass over the logs that the deciding pass never met (or met twice) is
        a label the confusion table would drop (or count twice)."""
        times: dict[tuple[str, int | None], int] = {}
        for _, item in self.labelled:
            times[(item.run_id, item.step)] = times.get((item.run_id, item.step), 0) + 1
        return [(label, times.get(key, 0)) for key, label in self.labels.items()
                if times.get(key, 0) != 1]

    def confusion(self) -> Confusion:
        """Each labelled step or run, sorted into what the controls did to it."""
        confusion = Confusion()
        for _, item in sorted(self.labelled, key=lambda pair: pair[0]):
            if item.label == "harmful":
                bucket = confusion.harmful_stopped if item.effect != "allow" \
                    else confusion.harmful_allowed
            elif item.effect == "deny":
                bucket = confusion.good_blocked
            elif item.effect == "review":
                bucket = confusion.good_reviewed
            else:
                bucket = confusion.good_left_alone
            bucket.append(item)
        return confusion




def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _example(decided: Decided, decision: Decision) -> Example:
    return Example(where=decided.where, run_id=decided.run_id, step=decided.index,
                   what=decided.what, reason=decision.reason)
