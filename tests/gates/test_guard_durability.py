"""When the guard's run log is on disk: every step before the guard returns, so a killed
agent leaves every call it was allowed, every stop and every answer logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite import ToolCall, ToolResult, read_log_runs
from gates import Workspace

# A guarded agent that runs the steps given as Python and is then killed (no close, no
# flush, no finally) or exits without ending its run, as the last line of STEPS says.
_AGENT = """
import os, signal, sys
from pathlib import Path
import gates
guard = gates.Guard(sys.argv[1], "refund-agent", log=Path(sys.argv[2]))
opened = guard.run("live-d", goal="status of A-1001", context={"customer_id": "C-1001"})
opened.__enter__()  # never left: the run is still open when the process ends
"""


def _agent(ws: Workspace, log: Path, steps: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _AGENT + steps, str(ws.root), str(log)],
                          capture_output=True, text=True, timeout=120, check=False)


_KILL = "os.kill(os.getpid(), signal.SIGKILL)\n"


@pytest.mark.slow
def test_an_allowed_call_is_on_disk_before_the_agent_runs_the_tool(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """An allowed call and its decision are logged when the agent is killed right after."""
    log = tmp_path / "guard.jsonl"
    done = _agent(back_in_full, log, 'guard.call("lookup_order", {"order_id": "A-1001"})\n'
                  + _KILL)
    assert done.returncode == -9, done.stderr
    [run] = read_log_runs(log)
    assert [type(s).__name__ for s in run.steps] == ["UserInput", "ToolCall"]
    assert run.metadata["guard.step.1"]["effect"] == "allow"
    assert run.context == {"customer_id": "C-1001"}


@pytest.mark.slow
def test_a_blocked_result_is_on_disk_at_once(back_in_full: Workspace, tmp_path: Path) -> None:
    """A call a person stopped is logged as blocked when the agent is killed right after."""
    log = tmp_path / "guard.jsonl"
    done = _agent(back_in_full, log, (
        'held = guard.call("lookup_order", {"order_id": "A-1001"})\n'
        'guard.result(held.call_id, error="rejected by a reviewer", blocked=True)\n' + _KILL))
    assert done.returncode == -9, done.stderr
    [run] = read_log_runs(log)
    assert isinstance(run.steps[-1], ToolResult) and run.steps[-1].blocked


@pytest.mark.slow
def test_a_tools_answer_is_on_disk_before_the_agent_goes_on(back_in_full: Workspace,
                                                            tmp_path: Path) -> None:
    """A tool's answer is logged when the agent is killed right after giving it, in a run
    with no end."""
    log = tmp_path / "guard.jsonl"
    done = _agent(back_in_full, log, (
        'call = guard.call("lookup_order", {"order_id": "A-1001"})\n'
        'guard.result(call.call_id, {"status": "shipped"})\n' + _KILL))
    assert done.returncode == -9, done.stderr
    [run] = read_log_runs(log)
    assert isinstance(run.steps[-1], ToolResult)
    assert run.steps[-1].result == {"status": "shipped"}
    assert run.outcome is None


@pytest.mark.slow
def test_a_clean_exit_writes_every_answer_of_a_run_left_open(back_in_full: Workspace,
                                                              tmp_path: Path) -> None:
    """A process that ends normally with a run still open leaves all its calls and answers
    logged, without the guard being closed."""
    log = tmp_path / "guard.jsonl"
    calls = 25
    done = _agent(back_in_full, log, (
        f"for n in range({calls}):\n"
        '    call = guard.call("lookup_order", {"order_id": f"A-1{n:03d}"})\n'
        '    assert call.effect == "allow", call\n'
        '    guard.result(call.call_id, {"status": "shipped", "n": n})\n'))
    assert done.returncode == 0, done.stderr
    [run] = read_log_runs(log)
    answers = [s for s in run.steps if isinstance(s, ToolResult)]
    assert [a.result for a in answers] == [{"status": "shipped", "n": n} for n in range(calls)]
    assert sum(isinstance(s, ToolCall) for s in run.steps) == calls
