"""SIGKILL in the middle of a capture, a gate, a restore and an incident write.

Each child process runs the real command and is killed at a named point (the fault hook
signals the test when it is reached, then waits), so the kill lands in the same place
every time. Afterwards nothing recorded is lost or half-written, and running the command
again finishes the job.
"""

from __future__ import annotations

import signal

import pytest

from evalsuite import load_model
from gates import Workspace, read_mode
from regressions import RegressionCase
from tests.faults.conftest import Cli, Faults, assert_kept, killed_at, recorded

pytestmark = pytest.mark.slow

AGENT = "refund-agent"
CAPTURE = ["capture", "INC-1", "--run", "logs/2026-11-25-refund-agent.jsonl", "--run-id",
           "run-7f3a97", "--step", "4", "--tag", "prompt_injection"]


def test_kill_during_capture(ws: Workspace, faults: Faults, cli: Cli) -> None:
    """Killed after the case is written but before the incident records it: the case is
    whole, the incident untouched, and capturing again records it without a duplicate."""
    faults.inject("SIGKILL mid-capture")
    before = recorded(ws)
    assert killed_at(ws, "kill-after-case-written", CAPTURE) == -signal.SIGKILL
    assert_kept(before, recorded(ws))
    case = load_model(ws.root / "regressions/refund-agent/INC-1-2.yaml", RegressionCase)
    assert case.recorded.harmful == [4]
    done = cli(ws, *CAPTURE[:3], str(ws.root / CAPTURE[3]), *CAPTURE[4:])
    assert done.code == 0 and "(its capture is now in the incident history)" in done.err
    history = ws.incidents().load("INC-1").history
    assert [e.detail.split(" from ")[0] for e in history if e.action == "capture"] == [
        "INC-1-1", "INC-1-2"]
    assert sorted(p.name for p in ws.regressions_dir(AGENT).iterdir()) == [
        "INC-1-1.yaml", "INC-1-2.yaml"]


def test_kill_during_the_verdict_transaction(ws: Workspace, faults: Faults, cli: Cli) -> None:
    """Killed with the verdict inserted but not committed: no trace of it, the audit log
    verifies, and the next gate records normally."""
    faults.inject("SIGKILL mid-gate")
    before = recorded(ws)
    assert killed_at(ws, "kill-in-verdict-transaction", ["gate", AGENT]) == -signal.SIGKILL
    after = recorded(ws)
    assert_kept(before, after)
    assert after.verdicts == before.verdicts and after.audit == before.audit
    assert cli(ws, "audit", "verify").code == 0
    assert cli(ws, "gate", AGENT).code == 1
    assert len(recorded(ws).verdicts) == len(before.verdicts) + 1
    assert cli(ws, "audit", "verify").code == 0


def test_kill_during_restore(restorable: Workspace, faults: Faults, cli: Cli) -> None:
    """Killed after the mode went back to full but before the incident was marked restored:
    restoring again finishes it, and the audit log verifies throughout."""
    faults.inject("SIGKILL mid-restore")
    ws = restorable
    before = recorded(ws)
    assert killed_at(ws, "kill-after-mode-restored", ["restore", AGENT]) == -signal.SIGKILL
    assert_kept(before, recorded(ws), modes=False)
    assert read_mode(ws, AGENT).mode == "full"
    assert ws.incidents().load("INC-1").phase == "resolving"
    assert cli(ws, "audit", "verify").code == 0
    done = cli(ws, "restore", AGENT)
    assert done.code == 0, done.err
    assert ws.incidents().load("INC-1").phase == "restored"
    assert cli(ws, "check", AGENT).code == 0
    assert cli(ws, "audit", "verify").code == 0


def test_kill_during_an_incident_write(ws: Workspace, faults: Faults, cli: Cli) -> None:
    """Killed with the new incident file written but not yet renamed over the old: the old
    file stands whole, and the finding can be recorded again."""
    faults.inject("SIGKILL mid-incident-write")
    finding = ["incident", "finding", "INC-1", "--layer", "review_gate", "--gap",
               "--description", "a $1,250 refund reached no person"]
    before = recorded(ws)
    assert killed_at(ws, "kill-before-rename", finding) == -signal.SIGKILL
    assert_kept(before, recorded(ws))
    assert ws.incidents().load("INC-1").findings == []
    assert cli(ws, *finding).code == 0
    assert [f.layer for f in ws.incidents().load("INC-1").findings] == ["review_gate"]
