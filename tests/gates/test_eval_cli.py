"""`reinstate eval` and `reinstate diff` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from evalsuite import InvalidInput
from gates import SIGNING_KEY_ENV, Workspace, generate_key_pair, load_inputs, run_evals
from tests.conftest import RunCli
from tests.helpers import fsynced, keys_found, plant_key_thief, under_a_shell

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


@pytest.mark.attack
def test_eval_never_lets_an_agent_reach_the_signing_key(example: Workspace,
                                                        tmp_path: Path) -> None:
    """`reinstate eval` run in a CI job whose environment holds $REINSTATE_SIGNING_KEY: an
    in-process agent read the key from the command's environment (and could from its
    parent's). The key now leaves eval's environment first, and an agent that could still
    reach it where it came from (in-process here) is refused, exit 2, before any agent
    starts. Run in a sandboxed process of its own, the agent runs and finds no key."""
    pem = generate_key_pair(tmp_path / "keys")[0].read_text()
    stolen = tmp_path / "stolen.txt"
    plant_key_thief(example, stolen, in_process=True)
    result = under_a_shell(["eval", "refund-agent", "--trials", "1"], example.root, pem)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("agents/refund-agent/agent.yaml: $.adapter.isolation: expected isolation: process "
            f"while ${SIGNING_KEY_ENV} is set") in result.stderr
    assert "set the key only for the step that runs the gate" in result.stderr
    assert not stolen.exists() and _run_files(example) == []
    # The same agent in a sandboxed process of its own: eval runs it, and it finds nothing.
    agent = example.agent_dir("refund-agent") / "agent.yaml"
    agent.write_text(agent.read_text().replace("isolation: in-process", "isolation: process"))
    result = under_a_shell(["eval", "refund-agent", "--trials", "1"], example.root, pem)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    found = keys_found(example)
    assert found and set(found) == {0}, found
    assert not stolen.exists()


@pytest.mark.attack
def test_run_evals_takes_the_key_out_of_the_environment(
        example: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From Python too: an engine built while $REINSTATE_SIGNING_KEY is set takes it out of
    `os.environ` and refuses an in-process agent, which would have read it there."""
    stolen = tmp_path / "stolen.txt"
    plant_key_thief(example, stolen, in_process=True)
    monkeypatch.setenv(SIGNING_KEY_ENV, generate_key_pair(tmp_path / "keys")[0].read_text())
    with pytest.raises(InvalidInput, match=r"\$\.adapter\.isolation: expected isolation"):
        run_evals(load_inputs(example, "refund-agent"), 1)
    assert SIGNING_KEY_ENV not in os.environ
    assert not stolen.exists()
