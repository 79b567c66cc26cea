"""The CI recipes in docs/ work: their reinstate commands, run as the jobs would run them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from gates import SIGNING_KEY_ENV, Workspace, generate_key_pair
from gates._demo import apply_fix, lay_out
from tests.helpers import captured, restored

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ci_docs")]

ROOT = Path(__file__).parent.parent.parent
DEPLOY = 'reinstate check "$AGENT" --verdict verdict.intoto.json --public-key reinstate-signing.pub'


@dataclass
class Pipeline:
    """What a CI file asks for: its variables, each job's reinstate commands, the artifacts."""

    env: dict[str, str]
    gate: list[str]
    deploy: list[str]
    artifacts: list[str]
    base: str
    """The variable the CI system fills with the commit the gate holds the change to."""


def _reinstate_lines(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip().startswith("reinstate ")]


def github() -> Pipeline:
    """docs/github-actions.yml, read the way Actions reads it."""
    workflow: dict[str, Any] = yaml.safe_load((ROOT / "docs/github-actions.yml").read_text())
    jobs = workflow["jobs"]
    assert jobs["deploy"]["needs"] == "gate"
    deploy_steps = [s.get("name", s.get("uses", "")) for s in jobs["deploy"]["steps"]]
    assert deploy_steps.index("Cleared for full operation?") < deploy_steps.index("Deploy")

    def runs(job: str) -> list[str]:
        return _reinstate_lines([line for step in jobs[job]["steps"] if "run" in step
                                 for line in step["run"].splitlines()])

    upload = next(s for s in jobs["gate"]["steps"]
                  if s.get("uses", "").startswith("actions/upload-artifact"))
    checkout = next(s for s in jobs["gate"]["steps"]
                    if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # the base commit must be in the clone
    gate_step = next(s for s in jobs["gate"]["steps"] if s.get("name") == "Gate the agent")
    # A pull request is held to its base branch; a push to the commit before it.
    assert gate_step["env"]["AGAINST"] == ("${{ github.event_name == 'pull_request' && "
                                           "format('origin/{0}', github.base_ref) || "
                                           "github.event.before }}")
    return Pipeline(env=workflow["env"], gate=runs("gate"), deploy=runs("deploy"),
                    artifacts=upload["with"]["path"].split(), base="AGAINST")


def gitlab() -> Pipeline:
    """docs/gitlab-ci.yml, read the way GitLab reads it."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "docs/gitlab-ci.yml").read_text())
    gate, deploy = config["reinstate-gate"], config["reinstate-deploy"]
    assert deploy["needs"] == ["reinstate-gate"]
    artifacts = gate["artifacts"]
    assert gate["variables"]["GIT_DEPTH"] == 0  # the base commit must be in the clone
    return Pipeline(env=config["variables"], gate=_reinstate_lines(gate["script"]),
                    deploy=_reinstate_lines(deploy["script"]),
                    artifacts=[*artifacts["paths"], artifacts["reports"]["junit"]],
                    base="CI_MERGE_REQUEST_DIFF_BASE_SHA")


def _checkout(template: Path, into: Path) -> Path:
    """What a CI job's checkout holds: the workspace's files, never its runtime state."""
    shutil.copytree(template, into, ignore=shutil.ignore_patterns(".reinstate", "__pycache__"))
    return into


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=CI", "-c", "user.email=ci@example.com",
                           *args], cwd=root, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def _clone(template: Path, into: Path, change: Callable[[Path], None] | None) -> str:
    """The gate job's clone, with history: the base branch's commit, then the change under
    review committed on top of it. Returns the base commit."""
    _checkout(template, into)
    (into / ".gitignore").write_text(".reinstate/\n")
    _git(into, "init", "-q", "-b", "main")
    _git(into, "add", "-A")
    _git(into, "commit", "-qm", "base")
    base = _git(into, "rev-parse", "HEAD")
    if change is not None:
        change(into)
        _git(into, "add", "-A")
        _git(into, "commit", "-qm", "the pull request")
    return base


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One line of a job's script, in bash, with the installed `reinstate` on the PATH."""
    full = {**os.environ, **env, "REINSTATE_ACTOR": "ci", "COLUMNS": "200",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    full.pop("REINSTATE_WORKSPACE", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120, check=False)


def _pipeline(pipeline: Pipeline, template: Path, tmp_path: Path, env: dict[str, str],
              change: Callable[[Path], None] | None = None,
              ) -> tuple[list[int], list[int], Path]:
    """Run the gate job on ``change`` (a pull request), hand its artifacts to a fresh deploy
    checkout, run the deploy job."""
    gate_dir = tmp_path / "gate"
    base = _clone(template, gate_dir, change)
    gate = [_run(c, gate_dir, {**pipeline.env, pipeline.base: base, **env})
            for c in pipeline.gate]
    deploy_dir = _checkout(template, tmp_path / "deploy")
    for artifact in pipeline.artifacts:
        (deploy_dir / artifact).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gate_dir / artifact, deploy_dir / artifact)
    deploy = [_run(c, deploy_dir, pipeline.env) for c in pipeline.deploy]
    for result in (*gate, *deploy):
        assert "Traceback" not in result.stderr, result.stderr
    return [r.returncode for r in gate], [r.returncode for r in deploy], gate_dir


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """The gate job's secret (as its environment) and the public key, from `keygen`."""
    private, public = generate_key_pair(tmp_path_factory.mktemp("keys"))
    return {SIGNING_KEY_ENV: private.read_text()}, public


@pytest.fixture(scope="module")
def restored_template(tmp_path_factory: pytest.TempPathFactory,
                      signing: tuple[dict[str, str], Path]) -> Path:
    """A workspace whose incident was fixed, gated and restored, with its files committed
    (the public key among them)."""
    root = lay_out(tmp_path_factory.mktemp("restored") / "ws")
    restored(Workspace.find(root), apply_fix)
    shutil.copyfile(signing[1], root / "reinstate-signing.pub")
    return root


@pytest.mark.parametrize("read", [github, gitlab])
def test_recipe_gates_and_clears_a_restored_agent(read: Any, restored_template: Path,
                                                  signing: tuple[dict[str, str], Path],
                                                  tmp_path: Path) -> None:
    """Both jobs exit 0, the deploy job on the signed verdict alone, and the gate leaves a
    valid JSON verdict, JUnit XML and Markdown report."""
    pipeline = read()
    assert pipeline.gate and pipeline.deploy == [DEPLOY]
    assert "verdict.intoto.json" in pipeline.artifacts
    summary = tmp_path / "summary.md"
    gate, deploy, gate_dir = _pipeline(pipeline, restored_template, tmp_path,
                                       {"GITHUB_STEP_SUMMARY": str(summary), **signing[0]})
    assert gate == [0] and deploy == [0]
    verdict = json.loads((gate_dir / "verdict.json").read_text())
    schema = json.loads((ROOT / "schemas/verdict.json").read_text())
    assert Draft202012Validator(schema).is_valid(verdict) and verdict["outcome"] == "pass"
    assert ET.parse(gate_dir / "gate-junit.xml").getroot().get("failures") == "0"
    assert (gate_dir / "gate.md").read_text().startswith("## ✅ refund-agent may run in full")
    assert summary.read_text().startswith("## ✅ refund-agent may run in full")


def test_github_recipe_blocks_an_unresolved_incident(example: Workspace,
                                                     signing: tuple[dict[str, str], Path],
                                                     tmp_path: Path) -> None:
    """With an incident captured but not fixed, the gate fails and check refuses the deploy."""
    captured(example)
    shutil.copyfile(signing[1], example.root / "reinstate-signing.pub")
    gate, deploy, _ = _pipeline(github(), example.root, tmp_path, signing[0])
    assert gate == [1] and deploy == [1]


def _drop_the_incident(root: Path) -> None:
    """A pull request deleting INC-1's file, its baseline and its regression case."""
    (root / "regressions/refund-agent/INC-1-1.yaml").unlink()
    (root / "incidents/INC-1.yaml").unlink()
    shutil.rmtree(root / "incidents/INC-1.baseline")


@pytest.mark.parametrize("read", [github, gitlab])
def test_recipe_refuses_a_pull_request_that_drops_an_incident(
        read: Any, restored_template: Path, signing: tuple[dict[str, str], Path],
        tmp_path: Path) -> None:
    """From a fresh store, a pull request dropping an incident and its case fails the gate,
    and check refuses the deploy."""
    gate, deploy, gate_dir = _pipeline(read(), restored_template, tmp_path, signing[0],
                                       _drop_the_incident)
    assert gate == [1] and deploy == [1]
    verdict = json.loads((gate_dir / "verdict.json").read_text())
    ratchet = next(c for c in verdict["checks"] if c["name"] == "regression_ratchet")
    assert [(f["case"], f["kind"]) for f in ratchet["data"]["against"]["loosened"]] == [
        ("INC-1-1", "removed"), ("INC-1", "incident-deleted"), ("INC-1", "baseline-changed")]
def test_github_deploy_refuses_a_verdict_signed_by_another_key(
        restored_template: Path, tmp_path: Path) -> None:
    """A gate job signing with a key that is not the committed one cannot clear the deploy."""
    private, _ = generate_key_pair(tmp_path / "other")
    gate, deploy, _ = _pipeline(github(), restored_template, tmp_path,
                                {SIGNING_KEY_ENV: private.read_text()})
    assert gate == [0] and deploy == [1]
