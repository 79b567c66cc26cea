"""``--engine ray``: evals, gates and backtests on a local Ray cluster give the local results."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff

from gates import Workspace, run_gate
from gates._demo import grow_example_log
from tests.helpers import LOG

ray = pytest.importorskip("ray")  # the `test` extra installs it; reinstate[ray] for users

AGENT = "refund-agent"
Cli = Callable[..., tuple[int, str, str]]
# Wall times differ from run to run; everything else must not.
TIMES = [r"\['(seconds|created_at|started_at|at|duration_s)'\]", r"\['audit_head'\]",
         r"\['settings'\]", r"\['run_file'\]", r"\['verdict_id'\]", r"\['id'\]"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of two CPUs, started by the test, stopped after the module."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _rows(path: Path) -> list[dict[str, Any]]:
    """A run file's records, trials in (case, trial) order: their order of arrival varies."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    head, trials = rows[:1], rows[1:]
    return head + sorted(trials, key=lambda r: (r["case_id"], r["result"]["trial"]))


def _run_file(out: str, ws: Workspace) -> Path:
    line = next(x for x in out.splitlines() if x.startswith("run file: "))
    return ws.root / line.removeprefix("run file: ")


@pytest.mark.slow
def test_eval_on_ray_gives_the_local_output_and_run_file(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """The example's eval on Ray prints the same summary and writes the same run file."""
    code, local_out, _ = inline_cli(example, "eval", AGENT, "--all-cases")
    assert code == 0
    code, ray_out, err = inline_cli(example, "eval", AGENT, "--all-cases",
                                    "--engine", "ray", "--workers", "2")
    assert code == 0, err
    local, on_ray = _run_file(local_out, example), _run_file(ray_out, example)
    assert local != on_ray
    assert len(_rows(on_ray)) == len(_rows(local)) == 61  # header + 20 cases x 3 trials
    diff = DeepDiff(_rows(local), _rows(on_ray), exclude_regex_paths=TIMES)
    assert not diff, diff
    strip = [x for x in local_out.splitlines() if not x.startswith("run file: ")]
    assert strip == [x for x in ray_out.splitlines() if not x.startswith("run file: ")]


@pytest.mark.slow
def test_gate_on_ray_stores_the_local_verdict(cluster: None, example: Workspace,
                                              tmp_path: Path) -> None:
    """A gate whose evals ran on Ray stores the verdict the local engine's gate stores."""
    from gates._demo import lay_out  # a second, identical workspace

    other = Workspace.find(lay_out(tmp_path / "other"))
    local = run_gate(example, AGENT, actor="ci")
    on_ray = run_gate(other, AGENT, actor="ci", engine="ray", workers=2)
    assert local.outcome == "pass"
    diff = DeepDiff(local.model_dump(mode="json"), on_ray.model_dump(mode="json"),
                    exclude_regex_paths=TIMES)
    assert not diff, diff


@pytest.mark.slow
def test_backtest_on_ray_of_100000_steps_gives_the_local_result(
        cluster: None, example: Workspace, inline_cli: Cli,
        fixed: Callable[[Workspace], list[str]]) -> None:
    """A 100,000-step log read as a Ray Dataset at two workers gives the local JSON and
    output; only the note saying so differs."""
    baseline = shutil.copytree(example.root / "agents" / AGENT, example.root / "baseline")
    fixed(example)
    log, steps = grow_example_log(example, 100_000)
    assert steps >= 100_000
    common = ("backtest", AGENT, "--logs", str(log), "--compare", str(baseline))
    code, local_out, err = inline_cli(example, *common, "--json", str(example.root / "local.json"))
    assert code == 0, err
    code, ray_out, err = inline_cli(example, *common, "--json", str(example.root / "ray.json"),
                                    "--engine", "ray", "--workers", "2")
    assert code == 0, err
    local = json.loads((example.root / "local.json").read_text())
    assert local["totals"]["runs"] >= 10_000
    on_ray = json.loads((example.root / "ray.json").read_text())
    note = "--engine ray: the logs were read as a Ray Dataset (jsonl)"
    assert any(n.startswith(note) for n in on_ray["notes"])
    on_ray["notes"] = [n for n in on_ray["notes"] if not n.startswith(note)]
    diff = DeepDiff(local, on_ray)
    assert not diff, diff
    assert [x for x in ray_out.splitlines() if note not in x] == local_out.splitlines()


# Appended to the example agent: on the case asking a refund past the order's total, its
# first attempt kills the Ray worker running it (an unsandboxed agent can), as an agent
# would after misbehaving, so that only a second attempt of that trial would be seen.
KILLS_ITS_WORKER = """

_respond = respond


def respond(session):
    import os
    import signal
    from pathlib import Path

    text = session.messages[-1]["content"]
    marker = Path({marker!r})
    if "Refund $150 for A-1004" in text and not marker.exists():
        marker.write_text("killed")
        pid = os.getppid()
        while pid > 1:
            if Path(f"/proc/{{pid}}/cmdline").read_bytes().startswith(b"ray::"):
                os.kill(pid, signal.SIGKILL)
            stat = Path(f"/proc/{{pid}}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
    return _respond(session)
"""


@pytest.mark.slow
@pytest.mark.attack
def test_an_agent_that_kills_its_ray_worker_fails_the_gate(
        cluster: None, example: Workspace, inline_cli: Cli, tmp_path: Path) -> None:
    """A trial whose agent killed the Ray worker running it is not run again: Ray's retry
    ran it anew and the gate stored a pass, where locally the gate dies with its agent's
    victim. The gate errs (exit 3), no verdict."""
    marker = tmp_path / "first-attempt"
    agent = example.root / "agents" / AGENT / "refund_agent.py"
    agent.write_text(agent.read_text() + KILLS_ITS_WORKER.format(marker=str(marker)))
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text().replace("[gate]",
                                                 '[agent]\nsandbox = "none"\n\n[gate]'))
    code, out, err = inline_cli(example, "gate", AGENT, "--engine", "ray", "--workers", "2")
    assert marker.exists()  # the worker was killed once
    assert code == 3, out
    assert "verdict:" not in out
    assert "error: --engine ray:" in err and "died" in err


def test_an_unknown_engine_is_one_line_and_exit_2(example: Workspace, inline_cli: Cli) -> None:
    """--engine spark is refused in one line naming the option, before anything runs."""
    for command in (("eval", AGENT), ("gate", AGENT), ("backtest", AGENT, "--logs", LOG)):
        code, out, err = inline_cli(example, *command, "--engine", "spark")
        assert (code, out) == (2, "")
        assert err.strip() == "error: --engine: expected one of local, ray, got 'spark'"
    assert not (example.root / ".reinstate" / "runs").exists()


def test_workers_without_ray_is_refused(example: Workspace, inline_cli: Cli) -> None:
    """--workers with the local engine is a usage mistake, said in one line, exit 2."""
    code, _, err = inline_cli(example, "eval", AGENT, "--workers", "2")
    assert code == 2
    assert err.strip() == "error: --workers: applies only with --engine ray"


def test_ray_missing_is_one_line_and_exit_3(example: Workspace, inline_cli: Cli,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray installed, --engine ray says how to install it, exit 3, nothing run."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = inline_cli(example, "backtest", AGENT, "--logs", LOG, "--engine", "ray")
    assert code == 3
    assert err.strip() == ("error: --engine ray needs Ray, which is not installed: "
                           "pip install 'reinstate[ray]'")
    code, _, err = inline_cli(example, "eval", AGENT, "--engine", "ray")
    assert code == 3
    assert "pip install 'reinstate[ray]'" in err and "Traceback" not in err
    assert not (example.root / ".reinstate" / "runs").exists()
