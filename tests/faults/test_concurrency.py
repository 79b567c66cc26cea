"""Eight processes capturing, recording findings, opening incidents and gating one workspace
at once: every write lands once, ids stay unique, and nothing is lost or corrupted."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from evalsuite import load_cases
from gates import EvalsResult, Verdict, Workspace, open_store
from regressions import LAYERS, RegressionCase
from tests.faults.conftest import Cli, _argv, _env, assert_kept, recorded, temp_files

pytestmark = pytest.mark.slow

WRITERS = 8
AGENT = "refund-agent"
LOG = "logs/2026-11-25-refund-agent.jsonl"
# Each writer's capture; two repeat another's, so only six new cases may appear.
STEPS = [[4], [6], [8], [4, 6], [4, 8], [6, 8], [4], [6, 8]]


def _commands(writer: int) -> list[list[str]]:
    steps = [a for step in STEPS[writer] for a in ("--step", str(step))]
    return [
        ["capture", "INC-1", "--run", LOG, "--run-id", "run-7f3a97", *steps,
         "--tag", "prompt_injection"],
        ["incident", "finding", "INC-1", "--layer", LAYERS[writer % len(LAYERS)], "--gap",
         "--description", f"writer {writer} found a gap"],
        ["incident", "open", AGENT, "--severity", "sev4", "--summary", f"writer {writer}"],
        ["gate", AGENT],
    ]


def _run_at_once(ws: Workspace, gun: Path) -> list[tuple[int, str]]:
    """Start every writer, wait until all are ready, then release them together."""
    read, write = os.pipe()
    with gun.open("wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        writers = [subprocess.Popen(
            _argv("start-gun", tuple(_commands(n))), cwd=ws.root, pass_fds=(write,),
            env=_env({"FAULT_SIGNAL_FD": str(write), "START_GUN": str(gun)}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for n in range(WRITERS)]
        os.close(write)
        ready = b""
        while len(ready) < WRITERS:  # one byte from each writer, blocking until it comes
            chunk = os.read(read, WRITERS)
            assert chunk, "a writer died before it was ready"
            ready += chunk
        os.close(read)
        fcntl.flock(held, fcntl.LOCK_UN)  # the start gun
    return [(w.wait(timeout=300), w.communicate()[0]) for w in writers]


def test_eight_writers_lose_nothing(ws: Workspace, cli: Cli, tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    """32 concurrent writes by 8 processes: 6 new cases with unique ids (the 2 repeats
    written once), every finding and incident kept, 8 verdicts, an audit log that verifies."""
    before = recorded(ws)
    results = _run_at_once(ws, tmp_path / "start.gun")
    for _code, output in results:
        assert output.strip().endswith("exit codes: 0 0 0 1"), output

    assert_kept(before, recorded(ws), grown=frozenset({"incidents/INC-1.yaml"}))
    cases = load_cases(ws.regressions_dir(AGENT), RegressionCase, AGENT)
    assert sorted(c.id for c in cases.values()) == [f"INC-1-{n}" for n in range(1, 8)]
    assert sorted(tuple(c.recorded.harmful) for c in cases.values()) == sorted(
        {(4, 6, 8), *(tuple(s) for s in STEPS)})
    incident = ws.incidents().load("INC-1")
    captures = [e.detail.split(" from ")[0] for e in incident.history if e.action == "capture"]
    assert sorted(captures) == sorted(c.id for c in cases.values())
    assert sum(e.action == "finding" for e in incident.history) == WRITERS
    assert sorted(f.id for f in incident.findings) == ["F-1", "F-2", "F-3", "F-4"]
    assert sorted(f.layer for f in incident.findings) == sorted(LAYERS)
    opened = [i for i in ws.incidents().all(AGENT) if i.id != "INC-1"]
    assert sorted(i.summary for i in opened) == sorted(f"writer {n}" for n in range(WRITERS))
    assert sorted(int(i.id.split("-")[1]) for i in opened) == list(range(2, 2 + WRITERS))

    after = recorded(ws)
    assert len(after.verdicts) == len(before.verdicts) + WRITERS
    assert len(after.audit) == len(before.audit) + WRITERS
    for body in after.verdicts[len(before.verdicts):]:
        # Each verdict is bound to exactly the regression set it ran.
        verdict = Verdict.model_validate_json(body)
        evals = verdict.result(EvalsResult)
        assert evals is not None and evals.data is not None
        ran = sum(case.regression for case in evals.data.cases)
        held = sum(p.startswith("regressions/") for p in verdict.fingerprint.files)
        assert ran == held
    assert cli(ws, "audit", "verify").code == 0
    assert open_store(ws).head() == (after.audit[-1][0], after.audit[-1][8])
    assert temp_files(ws) == []
    request.node.user_properties.append(("writers", (WRITERS, WRITERS * len(_commands(0)))))
