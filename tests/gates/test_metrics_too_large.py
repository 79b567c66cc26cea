"""`metrics` over counts and costs too large to add up: unknown, never "$inf" or a crash."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunCli


def _log(path: Path, usages: list[dict[str, object]]) -> Path:
    """One successful run per usage; the cost is written as a JSON literal as given."""
    lines = []
    for n, usage in enumerate(usages):
        header = json.dumps({"schema_version": 1, "kind": "run", "run_id": f"r-{n}",
                             "agent": "a", "outcome": {"success": True}, "usage": usage})
        lines += [header, json.dumps({"run_id": f"r-{n}", "kind": "output", "content": "ok"})]
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    """metric → (value, from) as the table prints them, its folded lines joined."""
    rows: dict[str, list[list[str]]] = {}
    name = ""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 3:
            continue
        if cells[1]:  # a row's first line holds its value
            name = cells[0]
            rows[name] = [[cells[0]], [cells[1]], [cells[2]]]
        elif name:
            for i in range(3):
                rows[name][i].append(cells[i])
    return {" ".join(v[0]).strip(): (" ".join(v[1]).strip(), " ".join(v[2]).strip())
            for v in rows.values()}


def test_costs_adding_up_past_a_float_are_unknown(tmp_path: Path, cli: RunCli) -> None:
    """Two runs costing $1e308 each (and one logging 1e999, read as infinity) summed to
    infinity: "cost per successful run $inf over 2 successful runs"."""
    for name, costs in (("sum", [1e308, 1e308]), ("inf", [float("inf")])):
        log = _log(tmp_path / f"{name}.jsonl", [{"cost_usd": c} for c in costs])
        if name == "inf":
            log.write_text(log.read_text().replace("Infinity", "1e999"))
        assert sum(costs) == float("inf")  # recounted: no finite figure exists
        result = cli("metrics", "--logs", str(log), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        value, basis = _rows(result.stdout)["cost per successful run"]
        assert value == "unknown" and "inf" not in result.stdout, result.stdout
        assert "usage.cost_usd" in basis


def test_counts_too_large_for_a_float_are_unknown_not_a_traceback(tmp_path: Path,
                                                                  cli: RunCli) -> None:
    """A run logging 10**400 model calls and input tokens stopped `metrics` with an
    OverflowError (average iterations) or a ValidationError (tokens) traceback."""
    log = _log(tmp_path / "big.jsonl", [{"model_calls": 10 ** 400, "input_tokens": 10 ** 400},
                                        {"model_calls": 3, "output_tokens": 7}])
    result = cli("metrics", "--logs", str(log), cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = _rows(result.stdout)
    for metric in ("average iterations per completed task", "model calls", "input tokens"):
        assert rows[metric][0] == "unknown", rows
    assert rows["output tokens"][0] == "7", rows  # what can be counted still is
