"""The fast decision path decides exactly as the plain one: a run's history kept incrementally
(evalsuite.History, its steps handed to CEL block by block) against fresh steps in plain lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalsuite import (
    History,
    Output,
    Run,
    Step,
    ToolCall,
    ToolResult,
    UserInput,
    read_log_runs,
    steps_as_data,
)
from gates import Controls, Workspace, load_inputs, run_evals
from gates._controls.replay import REPLAY_LAYERS, replay
from gates._demo import apply_fix, lay_out

AGENT = "refund-agent"

# Rules that read everything a condition may read, each in a form that takes the block-wise
# path on a long run: the history (twice, and inside a comprehension over itself, which
# the data budget charges), user inputs, the context, a predicate, and a rule that fails.
RULES: dict[str, Any] = {
    "deny_when": [
        {"id": "no-lookup", "expression":
            '!history.exists(s, s.kind == "tool_result" && s.tool == "lookup_order" '
            "&& s.result.order_id == args.order_id "
            "&& double(args.amount) <= double(s.result.total))"},
        {"id": "broken", "expression": "history[0].result.no_such_field == 1 && "
                                       "size(history) > 250 && size(history) < 1000"},
        {"id": "asked-twice", "expression":
            'history.filter(s, s.kind == "tool_call" && s.tool == "issue_refund").size() > 3 '
            '&& size(history.filter(s, history.exists(t, t.kind == s.kind))) > 0'},
        {"id": "every-call", "predicate": "speed_rules:mutating"},
    ],
    "review_when": [
        {"id": "store-credit-unasked", "expression":
            'size(history) > 20 && !user_inputs.exists(m, m.contains("store credit")) '
            '&& context.channel == "chat" && history[size(history) - 1].kind != "output"'},
    ],
}

# Mutates everything it is given, then answers from what it read first.
PREDICATE = """\
def mutating(data):
    first = data["history"][0] if data["history"] else {}
    answer = first.get("kind") == "never"
    for step in data["history"]:
        step.clear()
    data["history"].append({"kind": "forged"})
    data["args"]["amount"] = -1
    data["user_inputs"].clear()
    data["context"]["channel"] = "forged"
    return answer
"""


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The example workspace with its fix merged and the parity rules added to refunds."""
    root = lay_out(tmp_path_factory.mktemp("parity") / "ws")
    workspace = Workspace.find(root)
    apply_fix(workspace)
    return workspace


@pytest.fixture(scope="module")
def recorded(fixed: Workspace) -> list[Run]:
    """The example's logged runs and one trial of every eval and regression case."""
    runs = [r for log in sorted((fixed.root / "logs").glob("*.jsonl"))
            for r in read_log_runs(log)]
    evidence = run_evals(load_inputs(fixed, AGENT), trials=1, record=False)
    runs.extend(run for r in evidence.results for t in r.trials
                if (run := t.recorded_run) is not None)
    assert len(runs) > 20 and any(isinstance(s, ToolCall) for r in runs for s in r.steps)
    return runs


@pytest.fixture(scope="module")
def strict(fixed: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Controls:
    """The fixed controls plus RULES on issue_refund, read from a copy of the workspace."""
    root = tmp_path_factory.mktemp("strict") / "ws"
    workspace = Workspace.find(lay_out(root))
    apply_fix(workspace)
    (root / "speed_rules.py").write_text(PREDICATE)
    config = root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["speed_rules"]\n')
    permissions = workspace.agent_dir(AGENT) / "permissions.yaml"
    data = yaml.safe_load(permissions.read_text())
    data["tools"]["issue_refund"].update(RULES)
    permissions.write_text(yaml.safe_dump(data, sort_keys=False))
    return Workspace.find(root).controls(AGENT)


def _long_run(runs: Sequence[Run], length: int) -> Run:
    """A run of ``length`` steps made of the recorded runs' steps, one after another."""
    steps = [s for r in runs for s in r.steps if r.context.get("channel") == "chat"]
    assert steps
    made = [steps[i % len(steps)] for i in range(length)]
    return Run(run_id="long", context={"customer_id": "C-1001", "channel": "chat"},
               steps=made)


def _fresh(step: Step) -> Step:
    return step.model_copy(deep=True)


def _decisions_incremental(run: Run, controls: Controls) -> list[tuple[str, ...]]:
    """Every layer's decision on every step, with one History for the run, as a backtest
    streams it."""
    history = History()
    found = []
    for step in run.steps:
        for layer in REPLAY_LAYERS:
            decision = replay(step, layer, controls, history=history, context=run.context)
            found.append((layer, decision.effect, decision.rule, decision.reason))
        history.append(step)
    return found


def _decisions_plain(run: Run, controls: Controls) -> list[tuple[str, ...]]:
    """The same decisions the plain way: fresh copies of the steps in plain lists."""
    found = []
    for index, step in enumerate(run.steps):
        for layer in REPLAY_LAYERS:
            before = [_fresh(s) for s in run.steps[:index]]
            decision = replay(_fresh(step), layer, controls, history=before,
                              context=dict(run.context))
            found.append((layer, decision.effect, decision.rule, decision.reason))
    return found


def test_every_recorded_step_decides_the_same_on_either_path(
        recorded: list[Run], fixed: Workspace) -> None:
    """Every step of the example's logs and eval runs gets the same decision, on every layer,
    with an incremental history as with fresh steps in plain lists."""
    controls = fixed.controls(AGENT)
    effects = set()
    for run in recorded:
        incremental = _decisions_incremental(run, controls)
        assert incremental == _decisions_plain(run, controls), run.run_id
        effects |= {d[1] for d in incremental}
    assert effects == {"allow", "review", "deny"}


@pytest.mark.slow
def test_long_run_with_rules_over_its_history_decides_the_same(
        recorded: list[Run], strict: Controls) -> None:
    """A 300-step run through rules over the history, the user inputs, the context, a
    mutating predicate and a failing expression decides the same on both paths."""
    run = _long_run(recorded, 300)
    incremental = _decisions_incremental(run, strict)
    assert incremental == _decisions_plain(run, strict)
    rules = {d[2] for d in incremental}
    assert any(r.endswith("deny_when.broken") for r in rules)
    assert {"allow", "deny"} <= {d[1] for d in incremental}
    reasons = " ".join(d[3] for d in incremental)
    assert "could not evaluate broken" in reasons


def test_history_too_big_to_reread_fails_closed_on_both_paths(recorded: list[Run],
                                                              strict: Controls) -> None:
    """A rule that rereads a long history inside a comprehension over it runs out of its
    data budget and fails closed the same way on both paths."""
    run = _long_run(recorded, 1_200)
    call = ToolCall(tool="issue_refund", arguments={"order_id": "A-1001", "amount": 10,
                                                    "refund_to": "original_payment_method"})
    steps = [*run.steps, *[call] * 4]
    decisions = []
    for history in (History(steps), [_fresh(s) for s in steps]):
        decision = replay(call, "permissions", strict, history=history, context=run.context)
        decisions.append((decision.effect, decision.rule, decision.reason))
    assert decisions[0] == decisions[1]
    assert decisions[0][1].endswith("asked-twice")
    assert "read its variables over and over" in decisions[0][2]


def test_a_predicate_cannot_change_what_later_decisions_read(recorded: list[Run],
                                                             strict: Controls) -> None:
    """A predicate that mutates everything it is given changes neither the recorded steps,
    nor the history's kept data, nor the next decision."""
    run = _long_run(recorded, 60)
    history = History(run.steps)
    kept = [dict(d) for d in history.data()]
    arguments = [dict(s.arguments) for s in run.steps if isinstance(s, ToolCall)]
    call = ToolCall(tool="issue_refund", arguments={"order_id": "A-1001", "amount": 10,
                                                    "refund_to": "original_payment_method"})
    context = dict(run.context)
    first = replay(call, "permissions", strict, history=history, context=context)
    assert replay(call, "permissions", strict, history=history, context=context) == first
    assert history.data() == kept == steps_as_data(run.steps)
    assert [s.arguments for s in run.steps if isinstance(s, ToolCall)] == arguments
    assert call.arguments["amount"] == 10 and context == run.context
    assert history.user_inputs() == [s.content for s in run.steps if isinstance(s, UserInput)]


def test_expressions_cannot_change_the_history_they_read(strict: Controls) -> None:
    """CEL reads the kept history through copies of its own, extension functions included:
    evaluating rules leaves the kept data as it was."""
    steps: list[Step] = []
    for n in range(40):
        steps += [UserInput(content=f"refund {n}"),
                  ToolCall(tool="lookup_order", arguments={"order_id": f"A-{n:04d}"},
                           call_id=f"c{n}"),
                  ToolResult(call_id=f"c{n}", result={"order_id": f"A-{n:04d}",
                                                     "total": 20.0, "items": ["a", "b"]}),
                  Output(content="done")]
    history = History(steps)
    before = steps_as_data(steps)
    call = ToolCall(tool="issue_refund", arguments={"order_id": "A-0003", "amount": 10,
                                                    "refund_to": "original_payment_method"})
    for layer in REPLAY_LAYERS:
        replay(call, layer, strict, history=history, context={"channel": "chat"})
    assert history.data() == before


def test_a_value_cel_cannot_take_fails_closed_even_when_unread(fixed: Workspace,
                                                               tmp_path: Path) -> None:
    """A rule that reads only the call's arguments still fails closed when the run's
    context holds something CEL cannot take, as it always has."""
    controls = fixed.controls(AGENT)
    call = ToolCall(tool="issue_refund", arguments={"order_id": "A-1001", "amount": 10,
                                                    "refund_to": "original_payment_method"})
    lookup = [ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"}, call_id="c"),
              ToolResult(call_id="c", result={"order_id": "A-1001", "total": 80.0})]
    for history in (lookup, History(lookup)):
        assert replay(call, "permissions", controls, history=history,
                      context={"channel": "chat"}).effect == "allow"
        odd = replay(call, "permissions", controls, history=history,
                     context={"seen": {"a", "b"}})
        assert odd.effect == "deny" and "failing closed" in odd.reason
