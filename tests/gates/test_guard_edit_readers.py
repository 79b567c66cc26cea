"""The readers of a guard's log see a reviewer's edited call as the call that ran: whole
runs hold the executed arguments (the agent's kept as ``requested``), and the backtest
decides later calls after the edited call, as the guard did live."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from evalsuite import InvalidInput, ToolCall, merge_parts, read_log, read_log_runs, write_runs
from gates import (
    Backtest,
    Workspace,
    backtest,
    backtest_runs,
)
from tests.gates.test_guard_edits import (
    AGENT,
    ASKED,
    EDITED,
    edited_run,
)

RULE = "refunds-past-order-total"


@pytest.mark.slow
def test_whole_runs_hold_the_arguments_that_ran(back_in_full: Workspace,
                                               tmp_path: Path) -> None:
    """A run read from the guard's log holds the edited refund, the agent's kept as asked."""
    log = tmp_path / "guard.jsonl"
    held = edited_run(back_in_full, log)["held"]
    [run] = read_log_runs(log)
    step = run.steps[held.step]
    assert isinstance(step, ToolCall) and step.arguments == EDITED
    assert step.call_id == held.call_id
    assert run.metadata[f"guard.edited.{held.step}"]["requested"] == ASKED
    assert run.metadata[f"guard.edited.{held.step}"]["by"] == "rita"


@pytest.mark.slow
def test_runs_show_prints_the_refund_that_ran(
        back_in_full: Workspace, tmp_path: Path,
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """``reinstate runs show`` prints the edited $100 refund at the held step, not the $200
    the agent asked for, and ``--json`` keeps the asked arguments in the run's metadata."""
    log = tmp_path / "guard.jsonl"
    held = edited_run(back_in_full, log)["held"]
    code, out, err = inline_cli(back_in_full, "runs", "show", "live-edit", str(log))
    assert code == 0, err
    lines = out.splitlines()
    at = lines.index(next(line for line in lines if line.startswith(f"step {held.step} ")))
    assert "issue_refund(order_id='A-1002', amount=100," in lines[at + 1]
    code, out, err = inline_cli(back_in_full, "runs", "show", "live-edit", str(log), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["run"]["steps"][held.step]["arguments"] == EDITED
    assert shown["run"]["metadata"][f"guard.edited.{held.step}"]["requested"] == ASKED


@pytest.mark.slow
def test_fast_and_model_paths_read_the_same_edited_run(back_in_full: Workspace,
                                                       tmp_path: Path) -> None:
    """The native log's fast path and its model path give the same run after an edit."""
    log = tmp_path / "guard.jsonl"
    held = edited_run(back_in_full, log)["held"]
    fast = merge_parts(read_log(log, "jsonl", defer_steps=True))
    slow = merge_parts(read_log(log, "jsonl"))
    assert fast == slow
    step = fast[0].steps[held.step]
    assert isinstance(step, ToolCall) and step.arguments == EDITED


@pytest.mark.slow
def test_backtest_decides_later_calls_as_the_guard_did(back_in_full: Workspace,
                                                      tmp_path: Path) -> None:
    """The backtest of the guard's log denies the $150 refund and lets the $130 one by, as
    the guard did live after the edit (the asked $200 would have denied both)."""
    log = tmp_path / "guard.jsonl"
    live = edited_run(back_in_full, log)
    assert live["second"].effect == "allow", live["second"]
    assert live["third"].effect == "deny" and live["third"].rule.endswith(RULE)
    result = backtest(back_in_full, AGENT, [log])
    [tally] = [r for r in result.rules if r.rule.endswith(RULE)]
    assert [e.step for e in tally.examples] == [live["third"].step]
    assert tally.calls == 1


@pytest.mark.slow
def test_backtest_of_runs_read_whole_decides_as_the_backtest_of_the_log(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """``backtest_runs`` over the edited run read whole decides the held refund as asked
    (routed to a person) and later refunds after the edit, as the log's backtest does."""
    log = tmp_path / "guard.jsonl"
    live = edited_run(back_in_full, log)
    from_log = backtest(back_in_full, AGENT, [log])
    whole = backtest_runs(back_in_full.controls(AGENT), read_log_runs(log), agent=AGENT)

    def decided(result: Backtest) -> list[tuple[str, str, int, list[int]]]:
        return [(r.rule, r.effect, r.calls, [e.step for e in r.examples]) for r in result.rules]

    assert decided(whole) == decided(from_log)
    assert whole.totals == from_log.totals and whole.review_load == from_log.review_load
    assert whole.totals.calls_routed >= 1
    [tally] = [r for r in whole.rules if r.rule.endswith(RULE)]
    assert [e.step for e in tally.examples] == [live["third"].step]


def guard_log(tmp_path: Path, edit: object, key: str = "guard.edited.1") -> Path:
    """A native log of one run (goal, one call) followed by a ``guard.edited`` line."""
    log = tmp_path / "forged.jsonl"
    lines = [
        {"schema_version": 1, "kind": "run", "run_id": "r1", "agent": AGENT},
        {"run_id": "r1", "kind": "user_input", "content": "refund order A-1002"},
        {"run_id": "r1", "kind": "tool_call", "tool": "issue_refund", "arguments": ASKED,
         "call_id": "c1"},
        {"kind": "run", "run_id": "r1", "metadata": {key: edit}},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return log


FORGED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not a call": (lambda p: guard_log(p, {"arguments": EDITED, "by": "x"}, "guard.edited.0"),
                   "step 0 of run 'r1' to be a tool call, got user_input"),
    "out of range": (lambda p: guard_log(p, {"arguments": EDITED, "by": "x"}, "guard.edited.7"),
                     "a step of run 'r1' logged before this line (it has 2 so far)"),
    "not an object": (lambda p: guard_log(p, {"arguments": "amount=100", "by": "x"}),
                      "valid dictionary"),
    "no index": (lambda p: guard_log(p, {"arguments": EDITED, "by": "x"}, "guard.edited.-1"),
                 "expected guard.edited.<n>"),
    "no editor": (lambda p: guard_log(p, {"arguments": EDITED}), "Field required"),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_an_odd_edit_is_refused_with_its_line(case: str, tmp_path: Path) -> None:
    """An edit naming a step that is no call, a step not yet logged, or holding arguments
    that are not an object, is refused naming the file, line 4 and the entry."""
    make, expected = FORGED[case]
    log = make(tmp_path)
    with pytest.raises(InvalidInput) as raised:
        read_log_runs(log)
    message = str(raised.value)
    assert "forged.jsonl:4" in message and "guard.edited." in message
    assert expected in message


@pytest.mark.slow
def test_backtest_refuses_an_odd_edit_in_one_line(
        back_in_full: Workspace, tmp_path: Path,
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """``reinstate backtest`` over a log whose edit names a user input exits 2 with one
    line naming the file and line, and writes nothing."""
    log = guard_log(tmp_path, {"arguments": EDITED, "by": "x"}, "guard.edited.0")
    out = tmp_path / "bt.json"
    code, _, err = inline_cli(back_in_full, "backtest", AGENT, str(log), "--json", str(out))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "forged.jsonl:4" in lines[0] and "tool call" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_an_edited_run_reads_the_same_after_ingest_and_after_a_whole_write(
        back_in_full: Workspace, tmp_path: Path,
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """``reinstate ingest --out`` and a run written back whole both read as the guard's log
    reads: the edited arguments in the step, the asked ones once, under ``requested``."""
    log = tmp_path / "guard.jsonl"
    held = edited_run(back_in_full, log)["held"]
    [read] = read_log_runs(log)
    ingested = tmp_path / "ingested.jsonl"
    code, _, err = inline_cli(back_in_full, "ingest", str(log), "--out", str(ingested))
    assert code == 0, err
    assert read_log_runs(ingested) == [read]
    whole = tmp_path / "whole.jsonl"
    write_runs([read], whole)
    [again] = read_log_runs(whole)
    assert again == read
    step = again.steps[held.step]
    assert isinstance(step, ToolCall) and step.arguments == EDITED
    assert again.metadata[f"guard.edited.{held.step}"]["requested"] == ASKED


@pytest.mark.slow
def test_ray_dataset_backtest_of_an_edited_run_gives_the_local_result(
        back_in_full: Workspace, tmp_path: Path,
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """``backtest --engine ray`` reads the edit from its own record, as the local engine
    does: the same result, the $150 refund alone denied by the history rule."""
    ray = pytest.importorskip("ray")  # the `test` extra installs it
    log = tmp_path / "guard.jsonl"
    third = edited_run(back_in_full, log)["third"]
    local, dataset = tmp_path / "local.json", tmp_path / "ray.json"
    code, _, err = inline_cli(back_in_full, "backtest", AGENT, str(log), "--json", str(local))
    assert code == 0, err
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        code, _, err = inline_cli(back_in_full, "backtest", AGENT, str(log), "--json",
                                  str(dataset), "--engine", "ray", "--workers", "1")
    finally:
        ray.shutdown()
    assert code == 0, err
    by_ray = json.loads(dataset.read_text())
    assert any(n.startswith("--engine ray: the logs were read as a Ray Dataset")
               for n in by_ray["notes"])
    by_ray["notes"] = [n for n in by_ray["notes"] if not n.startswith("--engine")]
    assert by_ray == json.loads(local.read_text())
    [tally] = [r for r in by_ray["rules"] if r["rule"].endswith(RULE)]
    assert [e["step"] for e in tally["examples"]] == [third.step]
