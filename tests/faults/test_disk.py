"""The disk fills during a write: every write fails whole, says so, and leaves no half file."""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import Any

import pytest

from gates import Workspace
from tests.faults.conftest import Cli, Faults, assert_kept, recorded, reinstate, temp_files

pytestmark = pytest.mark.slow

AGENT = "refund-agent"
LOG = "logs/2026-11-25-refund-agent.jsonl"


@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file write fails as on a full disk: the data cannot be made durable (ENOSPC)."""
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)


def test_full_disk_during_an_incident_write(ws: Workspace, faults: Faults, cli: Cli,
                                            disk_full: None) -> None:
    """A finding that cannot be written is exit 3 saying the disk is full; the incident
    file is as it was and no temporary file is left."""
    faults.inject("disk full writing an incident")
    before = recorded(ws)
    done = cli(ws, "incident", "finding", "INC-1", "--layer", "review_gate", "--gap",
               "--description", "nothing reached a person")
    assert done.code == 3 and "No space left on device" in done.err, done.err
    assert_kept(before, recorded(ws))
    assert recorded(ws).files == before.files and temp_files(ws) == []


def test_full_disk_during_a_capture(ws: Workspace, faults: Faults, cli: Cli,
                                    disk_full: None) -> None:
    """A capture that cannot be written is exit 3; no case file, half or whole, appears."""
    faults.inject("disk full writing a regression case")
    before = recorded(ws)
    done = cli(ws, "capture", "INC-1", "--run", str(ws.root / LOG), "--run-id", "run-7f3a97",
               "--step", "4", "--tag", "prompt_injection")
    assert done.code == 3 and "No space left on device" in done.err, done.err
    assert recorded(ws).files == before.files and temp_files(ws) == []
    assert_kept(before, recorded(ws))


def test_full_disk_during_a_gate(ws: Workspace, faults: Faults) -> None:
    """A gate whose files cannot be written exits 3, never 0, and writes no verdict file."""
    faults.inject("disk full during a gate")
    before = recorded(ws)
    done = reinstate(ws, ["gate", AGENT, "--json", "verdict.json"], fault="disk-full")
    assert done.returncode == 3 and "No space left on device" in done.stderr, done.stderr
    assert not (ws.root / "verdict.json").exists() and temp_files(ws) == []
    assert_kept(before, recorded(ws))


def test_full_database_during_a_gate(ws: Workspace, faults: Faults, cli: Cli,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that cannot grow (SQLITE_FULL) keeps no part of the verdict: exit 3, the
    verdicts and the audit log as they were."""
    faults.inject("disk full writing the state store")
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(int(pages), 1)}")
        return conn
    before = recorded(ws)
    monkeypatch.setattr(sqlite3, "connect", connect)
    done = cli(ws, "gate", AGENT)
    monkeypatch.undo()
    assert done.code == 3 and "database or disk is full" in done.err, done.err
    after = recorded(ws)
    assert_kept(before, after)
    assert after.verdicts == before.verdicts and after.audit == before.audit
