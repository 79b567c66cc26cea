"""Faults of the workspace's files: a case, a control file or an incident invalid, missing
or unreadable. The gate never passes, restore and check never clear, the message names the
file, and nothing else on record changes."""

from __future__ import annotations

import re

import pytest

from gates import Workspace
from tests.faults.conftest import Cli, Faults, assert_kept, recorded, reinstate

pytestmark = pytest.mark.slow

FILES = {
    "case": "regressions/refund-agent/INC-1-1.yaml",
    "control": "agents/refund-agent/permissions.yaml",
    "incident": "incidents/INC-1.yaml",
}
# What the gate says when the file is missing: a gone case is the ratchet's to catch.
MISSING = {
    "case": (1, "INC-1-1: removed from the regression set"),
    "control": (2, "agents/refund-agent/permissions.yaml: file not found"),
    "incident": (2, "incident INC-1 has no record (incidents/INC-1.yaml is missing"),
}


@pytest.mark.parametrize("target", FILES)
def test_invalid_file_stops_the_gate(ws: Workspace, faults: Faults, cli: Cli,
                                     target: str) -> None:
    """Malformed YAML stops the gate with exit 2 naming the file and line; restore and check
    refuse."""
    faults.inject(f"{target} file invalid")
    (ws.root / FILES[target]).write_text("schema_version: 1\nid: [unclosed\n")
    before = recorded(ws)
    gate = cli(ws, "gate", "refund-agent")
    assert gate.code == 2, gate.out + gate.err
    assert re.search(rf"{re.escape(FILES[target])}:\d+: malformed YAML", gate.err), gate.err
    assert cli(ws, "restore", "refund-agent").code in (1, 2)
    assert cli(ws, "check", "refund-agent").code in (1, 2)
    assert_kept(before, recorded(ws))
    assert recorded(ws).verdicts == before.verdicts


@pytest.mark.parametrize("target", FILES)
def test_missing_file_never_passes(ws: Workspace, faults: Faults, cli: Cli, target: str) -> None:
    """A deleted case fails the ratchet, a deleted control or incident file stops the gate;
    restore and check refuse either way."""
    faults.inject(f"{target} file missing")
    (ws.root / FILES[target]).unlink()
    before = recorded(ws)
    code, message = MISSING[target]
    gate = cli(ws, "gate", "refund-agent")
    assert gate.code == code, gate.out + gate.err
    assert message in gate.out + gate.err
    restore = cli(ws, "restore", "refund-agent")
    assert restore.code in (1, 2), restore.out
    assert cli(ws, "check", "refund-agent").code in (1, 2)
    assert_kept(before, recorded(ws))


def test_missing_incident_file_refuses_restore(ws: Workspace, faults: Faults, cli: Cli) -> None:
    """The audit log remembers which incident contained the agent: without its file,
    restore is refused by name."""
    faults.inject("incident file missing at restore")
    (ws.root / FILES["incident"]).unlink()
    restore = cli(ws, "restore", "refund-agent")
    assert restore.code == 1
    assert "INC-1 contained refund-agent (audit entry 1) but its incident file is missing" in (
        restore.err)


@pytest.mark.parametrize("target", FILES)
def test_unreadable_file_stops_the_gate(ws: Workspace, faults: Faults, target: str) -> None:
    """A file nobody may read (mode 000) stops the gate with exit 2 naming it; restore and
    check refuse; the agent stays in review (suspended when the unreadable file is the
    incident that contained it)."""
    faults.inject(f"{target} file unreadable")
    path = ws.root / FILES[target]
    path.chmod(0)
    before = recorded(ws)
    try:
        done = reinstate(ws, ["gate", "refund-agent"], ["restore", "refund-agent"],
                         ["check", "refund-agent"], ["mode", "refund-agent"],
                         as_other_user=True)
    finally:
        path.chmod(0o644)
    gate, restore, check, mode = (int(c) for c in done.stdout.split("exit codes:")[1].split())
    assert gate == 2, done.stdout + done.stderr
    assert f"{FILES[target]}: cannot read the file ([Errno 13] Permission denied" in done.stderr
    assert restore in (1, 2) and check in (1, 2)
    # Without the incident file nobody can tell whether it still holds the agent.
    expected = (3, "suspended") if target == "incident" else (0, "review")
    assert (mode, done.stdout.splitlines()[-2]) == expected
    assert_kept(before, recorded(ws))
