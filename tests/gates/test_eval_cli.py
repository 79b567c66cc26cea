"""`reinstate eval` and `reinstate diff` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gates import Workspace
from tests.conftest import RunCli
from tests.helpers import fsynced

pytestmark = pytest.mark.slow


def _run_files(ws: Workspace) -> list[Path]:
    return sorted((ws.state_path.parent / "runs").glob("*.jsonl"))


def test_eval_runs_the_chosen_cases_and_writes_a_run_file(example: Workspace,
                                                          cli: RunCli) -> None:
    """A glob picks cases; every trial lands in a run file; the exit code follows the outcome."""
    result = cli("eval", "refund-agent", "--cases", "refund-*", "--trials", "2",
                 cwd=example.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "eval: PASS" in result.stdout and "status-shipped" not in result.stdout
    assert "eval refund-agent: 12/12 trials" in result.stderr  # plain progress in a log
    [run_file] = _run_files(example)
    lines = [json.loads(line) for line in run_file.read_text().splitlines()]
    assert lines[0]["kind"] == "eval_run" and lines[0]["schema_version"] == 1
    trials = [line for line in lines[1:] if line["kind"] == "trial"]
    assert len(trials) == 12 and {t["case_id"] for t in trials} == {
        "refund-full-damaged", "refund-partial-chipped", "refund-outside-window",
        "refund-someone-elses-order", "refund-unknown-order", "refund-more-than-total"}
    assert not list((example.state_path.parent / "runs").glob("*.partial"))


def test_the_run_file_and_then_its_folder_are_fsynced(
        example: Workspace, inline_cli: Callable[..., tuple[int, str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run file is made durable, then renamed, then its folder fsynced for the rename."""
    reached = fsynced(monkeypatch)
    code, out, err = inline_cli(example, "eval", "refund-agent", "--cases", "refund-full-*",
                                "--trials", "1")
    assert code == 0, out + err
    [run_file] = _run_files(example)
    partial = run_file.with_name(run_file.name + ".partial")
    assert partial in reached
    assert reached[reached.index(partial) + 1:].count(run_file.parent) >= 1


def test_eval_of_no_case_is_a_usage_error(example: Workspace, cli: RunCli) -> None:
    """A glob that matches nothing says so, exit 2, and writes no run file."""
    result = cli("eval", "refund-agent", "--cases", "nothing-*", cwd=example.root)
    assert result.returncode == 2 and "no case id matches 'nothing-*'" in result.stderr
    assert _run_files(example) == []


def test_eval_cases_is_repeatable(example: Workspace, cli: RunCli) -> None:
    """Several --cases globs run every case any matches; a glob matching nothing is named."""
    result = cli("eval", "refund-agent", "--cases", "greeting", "--cases", "status-*",
                 "--trials", "1", "--all-cases", cwd=example.root)
    assert result.returncode == 0, result.stdout + result.stderr
    for case in ("greeting", "status-shipped", "status-delivered", "status-no-order-id"):
        assert case in result.stdout
    assert "praise" not in result.stdout
    typo = cli("eval", "refund-agent", "--cases", "greeting", "--cases", "stauts-*",
               cwd=example.root)
    assert typo.returncode == 2 and "no case id matches 'stauts-*'" in typo.stderr


def test_eval_through_the_second_adapter_agrees(example: Workspace, cli: RunCli) -> None:
    """The JSON-lines process and the Python function behave the same: diff finds nothing."""
    assert cli("eval", "refund-agent", "--trials", "1", cwd=example.root).returncode == 0
    assert cli("eval", "refund-agent", "--trials", "1", "--adapter", "jsonl",
               cwd=example.root).returncode == 0
    first, second = _run_files(example)
    result = cli("diff", str(first), str(second), cwd=example.root)
    assert result.returncode == 0, result.stdout
    assert "0 of 20 cases changed behaviour" in result.stdout


def test_diff_shows_what_changed_in_behaviour(example: Workspace, cli: RunCli) -> None:
    """After an agent change, diff names the case and the changed call."""
    assert cli("eval", "refund-agent", "--cases", "refund-partial-chipped", "--trials", "1",
               cwd=example.root).returncode == 0
    agent = example.agent_dir("refund-agent") / "refund_agent.py"
    agent.write_text(agent.read_text().replace('"reason": "customer request"',
                                               '"reason": "damaged in transit"'))
    assert cli("eval", "refund-agent", "--cases", "refund-partial-chipped", "--trials", "1",
               cwd=example.root).returncode == 0
    first, second = _run_files(example)
    result = cli("diff", str(first), str(second), cwd=example.root)
    assert result.returncode == 1
    assert "refund-partial-chipped" in result.stdout
    assert "damaged in transit" in result.stdout
    assert "1 of 1 cases changed behaviour" in result.stdout


def test_diff_of_a_file_that_is_not_a_run_file(example: Workspace, cli: RunCli) -> None:
    """A file that is not a run file is named with its line, exit 2."""
    bogus = example.root / "bogus.jsonl"
    bogus.write_text('{"hello": 1}\n')
    result = cli("diff", str(bogus), str(bogus), cwd=example.root)
    assert result.returncode == 2 and "bogus.jsonl:1" in result.stderr


# A run file's writer in a process of its own: it starts the file, says so, and finishes it
# when told (or is killed first, as a gate killed midway).
_WRITER = """
import sys
from datetime import datetime, timezone
from pathlib import Path
from evalsuite import EvalRunHeader, RunFileWriter
writer = RunFileWriter(Path(sys.argv[1]), EvalRunHeader(
    agent="refund-agent", started_at=datetime.now(timezone.utc), settings={}))
print("started", flush=True)
sys.stdin.readline()
writer.finish()
"""


def _writer(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == "started\n"
    return process


def test_a_killed_runs_partial_file_is_removed_and_a_live_ones_is_not(example: Workspace,
                                                                       cli: RunCli) -> None:
    """A run killed midway leaves its partial file; the next eval removes it, and leaves
    the partial file of a run still being written in another process, which then ends."""
    runs = example.state_path.parent / "runs"
    killed = _writer(runs / "20261201T000000000000Z-refund-agent.jsonl")
    killed.kill()
    killed.communicate()  # and its pipes closed
    abandoned = runs / "20261201T000000000000Z-refund-agent.jsonl.partial"
    assert abandoned.exists()
    live = _writer(runs / "20261201T000001000000Z-refund-agent.jsonl")
    try:
        result = cli("eval", "refund-agent", "--cases", "refund-full-*", "--trials", "1",
                     cwd=example.root)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not abandoned.exists()
        assert (runs / "20261201T000001000000Z-refund-agent.jsonl.partial").exists()
    finally:
        live.communicate("\n", timeout=60)
    assert live.returncode == 0
    assert (runs / "20261201T000001000000Z-refund-agent.jsonl").exists()
    assert sorted(p.name for p in runs.iterdir() if p.name.endswith(".partial")) == []
