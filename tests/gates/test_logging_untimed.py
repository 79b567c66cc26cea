"""The logging check and runs whose log gives no time: their age is unknown, so they are
never left out as old; they are checked beside the newest timed runs, and a gap in one
fails the check."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gates import Evidence, Workspace, load_inputs
from gates._gate.logging_check import logging as logging_check
from gates._response.investigation import investigate
from regressions import utc_now
from tests.gates.test_investigate import ANY_REFUND, OTLP, _edit_signature
from tests.helpers import ACTOR, LOG, captured

pytestmark = pytest.mark.slow

AGENT = "refund-agent"


def _checked(ws: Workspace) -> tuple[str, str, list[str]]:
    result = logging_check(load_inputs(ws, AGENT), Evidence([], frozenset()))
    return result.outcome, result.summary, result.findings


def _complete(run_id: str, at: str | None) -> list[dict[str, Any]]:
    """A run that answers the four questions, timed at ``at`` (or not at all)."""
    timed = {"at": at} if at is not None else {}
    return [
        {"schema_version": 1, "kind": "run", "run_id": run_id, "agent": AGENT,
         "context": {"customer": "c"}},
        {"run_id": run_id, "kind": "user_input", "content": "Where is my refund?", **timed},
        {"run_id": run_id, "kind": "reasoning", "content": "look it up", **timed},
        {"run_id": run_id, "kind": "output", "content": "It is on its way.", **timed},
    ]


def _gappy(run_id: str) -> list[dict[str, Any]]:
    """A run with no time, no context, a call without arguments or result, no answer."""
    return [
        {"schema_version": 1, "kind": "run", "run_id": run_id, "agent": AGENT},
        {"run_id": run_id, "kind": "tool_call", "tool": "issue_refund", "arguments": {},
         "arguments_logged": False, "call_id": "c1"},
    ]


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _gaps_on_record(ws: Workspace) -> None:
    """An investigation that found logging gaps (in a logged OTLP run), as of now."""
    incident_id = captured(ws)
    investigate(ws, incident_id, [ws.root / LOG], actor=ACTOR)
    _edit_signature(ws, incident_id, ANY_REFUND)
    shutil.copy(OTLP, ws.logs_dir / OTLP.name)
    done = investigate(ws, incident_id, [ws.root / LOG, ws.logs_dir / OTLP.name], actor=ACTOR)
    assert done.investigation.logging_gaps


def _only_these_logs(ws: Workspace) -> Path:
    shutil.rmtree(ws.logs_dir)
    ws.logs_dir.mkdir()
    return ws.logs_dir


@pytest.mark.attack
def test_untimed_runs_with_gaps_are_not_crowded_out_by_timed_ones(example: Workspace) -> None:
    """50 complete runs from last year and 20 untimed runs with every gap: the untimed ones
    are checked too, and the check fails on them (it passed on the 50 alone)."""
    logs = _only_these_logs(example)
    _write(logs / "a-old.jsonl", [r for i in range(50)
                                  for r in _complete(f"old-{i}", f"2025-01-01T00:{i:02d}:00Z")])
    _write(logs / "b-new.jsonl", [r for i in range(20) for r in _gappy(f"new-{i}")])
    outcome, summary, findings = _checked(example)
    assert outcome == "fail", summary
    assert "20 of 70 run(s)" in summary and "20 whose log gives no time" in summary
    assert {f.split(":")[0] for f in findings if f.startswith("new-")} == {
        f"new-{i}" for i in range(20)}
    assert any("log no time" in f for f in findings)


@pytest.mark.attack
def test_an_untimed_run_with_gaps_fails_the_check_after_an_investigation(
        example: Workspace) -> None:
    """Once gaps are on record, a complete run logged after the investigation does not hide
    an untimed run with gaps: it may be as new as the fix, so it fails the check."""
    _gaps_on_record(example)
    assert _checked(example)[0] == "fail"
    later = (utc_now() + timedelta(minutes=5)).isoformat()
    _write(example.logs_dir / "after-the-fix.jsonl", _complete("run-8a0001", later))
    assert _checked(example)[0] == "pass"
    _write(example.logs_dir / "untimed.jsonl", _gappy("run-untimed"))
    outcome, summary, findings = _checked(example)
    assert outcome == "fail", summary
    assert any(f.startswith("run-untimed: context") for f in findings), findings


def test_untimed_complete_runs_do_not_show_the_fix(example: Workspace) -> None:
    """After an investigation found gaps, complete runs without times cannot show they were
    logged after it: the check still fails, and says why."""
    _gaps_on_record(example)
    _write(example.logs_dir / "untimed.jsonl", _complete("run-untimed", None))
    outcome, summary, _ = _checked(example)
    assert outcome == "fail" and "cannot show they were logged after it" in summary, summary


def test_an_untimed_run_split_over_files_is_judged_whole(example: Workspace) -> None:
    """An untimed run whose answer is in another file is put together before it is judged:
    no gap for the part read first, and complete untimed runs pass."""
    logs = _only_these_logs(example)
    run = _complete("split", None)
    _write(logs / "a.jsonl", run[:3])
    _write(logs / "b.jsonl", [{k: v for k, v in run[3].items()}])
    _write(logs / "c.jsonl", _complete("timed", "2026-01-01T00:00:00Z"))
    outcome, summary, findings = _checked(example)
    assert (outcome, findings) == ("pass", []), summary
    assert "2 run(s) (1 recent run(s), 1 whose log gives no time)" in summary


@pytest.mark.attack
def test_runs_with_gaps_in_a_rotated_gzip_log_fail_the_check(example: Workspace) -> None:
    """Logs rotated and compressed (`.jsonl.gz`) are logs of the folder too: untimed runs
    with every gap, only in the compressed file, fail the check as they do uncompressed
    (left out, the check would pass on the complete runs beside them)."""
    import gzip

    _gaps_on_record(example)
    logs = _only_these_logs(example)
    _write(logs / "today.jsonl", [r for i in range(5) for r in _complete(
        f"run-ok-{i}", (utc_now() - timedelta(minutes=i)).isoformat())])
    _write(logs / "plain.jsonl", [r for i in range(3) for r in _gappy(f"run-gap-{i}")])
    plain = _checked(example)
    assert plain[0] == "fail"
    rotated = logs / "yesterday.jsonl.gz"
    rotated.write_bytes(gzip.compress((logs / "plain.jsonl").read_bytes()))
    (logs / "plain.jsonl").unlink()
    (logs / "notes.txt.gz").write_bytes(gzip.compress(b"not a log\n"))  # not a log's name
    outcome, summary, findings = _checked(example)
    assert (outcome, summary) == plain[:2] and plain[2]
    assert [f.replace("yesterday.jsonl.gz", "plain.jsonl") for f in findings] == plain[2]


@pytest.mark.attack
def test_a_run_handed_over_from_another_agent_is_still_checked(example: Workspace) -> None:
    """A conversation another agent began and handed over (its first part names
    triage-agent, a later part of the same run id names this agent) with every gap in
    this agent's part: the part is this agent's and fails the check (left out as the
    other agent's, the check passed on the complete runs beside it)."""
    logs = _only_these_logs(example)
    _write(logs / "today.jsonl", [r for i in range(3) for r in _complete(
        f"run-ok-{i}", (utc_now() - timedelta(minutes=i)).isoformat())])
    assert _checked(example)[0] == "pass"
    _write(logs / "handoff.jsonl", [
        {"schema_version": 1, "kind": "run", "run_id": "conv-1", "agent": "triage-agent"},
        {"run_id": "conv-1", "kind": "output", "content": "Handing you to refunds."},
        *_gappy("conv-1")])
    outcome, summary, findings = _checked(example)
    assert outcome == "fail", summary
    assert any(f.startswith("conv-1: tools") for f in findings), findings


@pytest.mark.attack
@pytest.mark.parametrize("name", ["app.jsonl.1", "app.jsonl-20261130", "app.jsonl.2.gz",
                                  "app.jsonl-20261130.gz", "APP.JSONL", "app.jsonl.zst"])
def test_runs_with_gaps_in_a_log_rotated_by_logrotate_fail_the_check(example: Workspace,
                                                                     name: str) -> None:
    """logrotate's names (numbered, dated with dateext, compressed with gzip or zstd, or a
    name in capitals) are logs of the folder: untimed runs with every gap in such a file
    fail the check, which passes without them. Files that are no log by their name are not
    read."""
    import gzip

    from backports.zstd import compress as zstd_compress

    _gaps_on_record(example)
    logs = _only_these_logs(example)
    _write(logs / "today.jsonl", [r for i in range(5) for r in _complete(
        f"run-ok-{i}", (utc_now() - timedelta(minutes=i)).isoformat())])
    for other in ("notes.txt", "app.jsonl.bak", ".hidden.jsonl", "app.jsonl.1.swp"):
        _write(logs / other, [r for i in range(3) for r in _gappy(f"run-other-{i}")])
    assert _checked(example)[0] == "pass"
    gappy = "".join(json.dumps(r) + "\n" for i in range(3) for r in _gappy(f"run-gap-{i}"))
    (logs / name).write_bytes(gzip.compress(gappy.encode()) if name.endswith(".gz")
                              else zstd_compress(gappy.encode()) if name.endswith(".zst")
                              else gappy.encode())
    outcome, _, findings = _checked(example)
    assert outcome == "fail" and any(f.startswith("run-gap-0: ") and name in f
                                     for f in findings), findings
