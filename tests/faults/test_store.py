"""Faults of the state store: locked by another writer, read-only, corrupted, missing.

No command answers ``full`` or stores a pass it cannot record; containment that cannot be
recorded says the agent is NOT contained; the files on record stay as they were.
"""

from __future__ import annotations

import sqlite3

import pytest

from gates import Workspace
from tests.faults.conftest import Cli, Faults, assert_kept, recorded, reinstate

pytestmark = pytest.mark.slow

AGENT = "refund-agent"


def _second_incident(cli: Cli, ws: Workspace) -> str:
    opened = cli(ws, "incident", "open", AGENT, "--severity", "sev3", "--summary",
                 "another refund to store credit")
    assert opened.code == 0, opened.err
    return "INC-2"


def _contain(cli: Cli, ws: Workspace, incident: str) -> object:
    return cli(ws, "contain", incident, "--mode", "suspended", "--notify",
               "legal,compliance,eng-lead", "--scope", "one refund")


def test_locked_store_is_an_error_and_reads_go_on(ws: Workspace, faults: Faults, cli: Cli,
                                                  held_lock: sqlite3.Connection,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """While another connection holds a write transaction, the gate and containment fail
    with exit 3 saying the store is locked, and the mode is still read as it is."""
    faults.inject("state store locked during a gate")
    faults.inject("state store locked during containment")
    monkeypatch.setenv("REINSTATE_LOCK_TIMEOUT", "0.2")
    before = recorded(ws)
    gate = cli(ws, "gate", AGENT)
    assert gate.code == 3 and "database is locked" in gate.err, gate.err
    incident = _second_incident(cli, ws)
    contain = _contain(cli, ws, incident)
    assert contain.code == 3  # type: ignore[attr-defined]
    assert f"{AGENT} is NOT contained" in contain.err  # type: ignore[attr-defined]
    mode = cli(ws, "mode", AGENT)
    assert (mode.code, mode.out.strip()) == (0, "review")
    held_lock.execute("ROLLBACK")
    held_lock.execute("BEGIN IMMEDIATE")  # the fixture rolls back what it holds at the end
    assert_kept(before, recorded(ws))


def test_read_only_store_is_an_error(ws: Workspace, faults: Faults) -> None:
    """A store that cannot be written fails the gate and containment with exit 3; the mode
    is never answered as full."""
    faults.inject("state store read-only")
    folder = ws.state_path.parent
    files = [p for p in folder.iterdir() if p.name.startswith("state.db")]
    for path in files:
        path.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = recorded(ws)
        done = reinstate(ws, ["incident", "open", AGENT, "--severity", "sev3", "--summary", "x"],
                         ["contain", "INC-2", "--mode", "suspended", "--notify",
                          "legal,compliance,eng-lead", "--scope", "one refund"],
                         ["gate", AGENT], ["mode", AGENT], as_other_user=True)
    finally:
        folder.chmod(0o755)
        for path in files:
            path.chmod(0o644)
    opened, contain, gate, _ = (int(c) for c in done.stdout.split("exit codes:")[1].split())
    assert (opened, contain, gate) == (0, 3, 3), done.stdout + done.stderr
    assert f"{AGENT} is NOT contained" in done.stderr
    assert "readonly database" in done.stderr
    assert "full" not in done.stdout.split("exit codes:")[0].splitlines()[-1]
    assert_kept(before, recorded(ws))


def test_corrupted_store_answers_nothing_but_suspended(ws: Workspace, faults: Faults,
                                                       cli: Cli) -> None:
    """A store that is not a database: gate, restore, check and audit verify exit 3, and the
    mode is suspended; the files on record are untouched."""
    faults.inject("state store corrupted")
    before = recorded(ws)
    for path in ws.state_path.parent.glob("state.db-*"):
        path.unlink()
    ws.state_path.write_bytes(b"this is not a database\x00" * 2000)
    for command in (("gate", AGENT), ("restore", AGENT), ("check", AGENT), ("audit", "verify")):
        done = cli(ws, *command)
        assert done.code == 3, (command, done.out, done.err)
        assert "file is not a database" in done.err
    mode = cli(ws, "mode", AGENT)
    assert (mode.code, mode.out.strip()) == (3, "suspended")
    assert recorded(ws, store=False).files == before.files


def test_missing_store_never_reads_as_full(ws: Workspace, faults: Faults, cli: Cli) -> None:
    """With the store deleted the agent is suspended and the gate will not start a new one;
    once a gate is told to (--new-store), the incident files still keep the agent in
    review, and it is not cleared."""
    faults.inject("state store missing")
    before = recorded(ws)
    for path in ws.state_path.parent.glob("state.db*"):
        path.unlink()
    mode = cli(ws, "mode", AGENT)
    assert (mode.code, mode.out.strip()) == (3, "suspended")
    refused = cli(ws, "gate", AGENT)
    assert refused.code == 3 and "INC-1 was contained" in refused.err
    assert not ws.state_path.exists()
    assert cli(ws, "gate", AGENT, "--new-store").code == 1
    mode = cli(ws, "mode", AGENT)
    assert (mode.code, mode.out.strip()) == (3, "review")
    assert "INC-1 contained it and the audit log holds no restore" in mode.err
    check = cli(ws, "check", AGENT)
    assert check.code == 1 and "is in review mode" in check.out
    assert recorded(ws).files == before.files
