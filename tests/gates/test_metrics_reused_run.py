"""`metrics` over a log that starts a run id again: the runs are counted by id, so it says
which id was joined, where; before, "2 of 2 runs" and 100% success stood for three runs,
one of which failed, without a word."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunCli


def _run(run_id: str, started: str, success: bool) -> list[dict[str, object]]:
    return [{"schema_version": 1, "kind": "run", "run_id": run_id, "agent": "a",
             "started_at": started, "outcome": {"success": success}},
            {"run_id": run_id, "kind": "output", "content": "ok" if success else "no",
             "at": started}]


def test_a_run_id_started_again_in_one_log_is_said(tmp_path: Path, cli: RunCli) -> None:
    lines = [*_run("r-0", "2026-11-25T21:00:00Z", False),
             *_run("r-1", "2026-11-25T21:05:00Z", True),
             *_run("r-0", "2026-11-25T23:00:00Z", True)]
    log = tmp_path / "reused.jsonl"
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    starts = [(n, r) for n, r in enumerate(lines, 1) if r.get("kind") == "run"]
    assert len(starts) == 3 and len({r["run_id"] for _, r in starts}) == 2  # recounted
    again = [n for n, r in starts if r["run_id"] == "r-0"]
    result = cli("metrics", "--logs", str(log), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "metrics over 2 runs" in result.stdout  # counted by id, as before
    said = " ".join(result.stderr.split())
    assert "run r-0 is started again in one log" in said, result.stderr
    assert all(f"reused.jsonl:{n}" in said for n in again), said
    assert "counted as one run in the metrics" in said
    assert "r-1 is started again" not in said
    single = tmp_path / "single.jsonl"
    single.write_text("\n".join(json.dumps(line) for line in lines[:4]) + "\n")
    plain = cli("metrics", "--logs", str(single), cwd=tmp_path)
    assert plain.returncode == 0 and "started again" not in plain.stderr, plain.stderr
