"""A rate short of 100% never prints as 100%, nor one above 0% as 0%: rounding to the
figure's usual digits said that no run failed (2,499 of 2,500 read "100.0%") or that no
run escalated (1 of 2,500 read "0.0%")."""

from __future__ import annotations

import json
from pathlib import Path

from evalsuite import CaseResult, TrialResult
from gates._gate.checks import case_finding
from tests.conftest import RunCli


def test_metrics_print_a_rate_short_of_all_as_short_of_all(tmp_path: Path, cli: RunCli) -> None:
    """2,500 runs, one failed and one escalated: the table says 99.96% and 0.04%."""
    log = tmp_path / "runs.jsonl"
    with log.open("w") as out:
        for n in range(2500):
            out.write(json.dumps({"schema_version": 1, "kind": "run", "run_id": f"r-{n}",
                                  "agent": "a", "started_at": "2026-11-25T21:00:00Z",
                                  "outcome": {"success": n != 7, "escalated": n == 3}}) + "\n")
            out.write(json.dumps({"run_id": f"r-{n}", "kind": "output", "content": "ok",
                                  "at": "2026-11-25T21:00:01Z"}) + "\n")
    headers = [json.loads(line) for line in log.read_text().splitlines()]
    outcomes = [h["outcome"] for h in headers if h.get("kind") == "run"]
    succeeded = sum(o["success"] for o in outcomes)
    escalated = sum(o["escalated"] for o in outcomes)
    assert (succeeded, escalated, len(outcomes)) == (2499, 1, 2500)  # recounted from the log
    result = cli("metrics", "--logs", str(log), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.stdout.splitlines() if line.count("│") >= 3}
    assert rows["task success rate"] == f"{succeeded / len(outcomes):.2%}" == "99.96%", rows
    assert rows["escalation rate"] == f"{escalated / len(outcomes):.2%}" == "0.04%", rows


def test_an_inconclusive_case_near_all_prints_what_it_is() -> None:
    """399 of 400 trials against a 99.5% threshold: the finding said "pass rate 100%
    (399/400), 95% interval 99%–100% straddles the 100% threshold"."""
    trials = [TrialResult(trial=n + 1, passed=n != 0) for n in range(400)]
    result = CaseResult(case_id="c", tags=["t"], threshold=0.995, trials=trials)
    assert result.outcome == "inconclusive"
    high = result.statistics.high
    assert 0.999 < high < 1
    finding = case_finding(result)
    assert finding is not None
    assert "100%" not in finding, finding
    assert f"pass rate {399 / 400:.1%} (399/400)" in finding, finding
    assert f"–{high:.2%} straddles the 99.5% threshold" in finding, finding
