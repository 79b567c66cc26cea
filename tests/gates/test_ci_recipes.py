"""The GitHub Action (action.yml) and the GitLab template (ci/gitlab/) work as copied: their
shell steps, run in a real shell on the example workspace, install reinstate from this
repository, gate, and leave the artifacts, the step summary and the gate's exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gates import Workspace
from gates._demo import apply_fix, lay_out
from tests.helpers import captured, restored

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ci_recipes")]

ROOT = Path(__file__).parent.parent.parent
ACTION = ROOT / "action.yml"
GITLAB = ROOT / "ci/gitlab/reinstate.gitlab-ci.yml"
ARTIFACTS = {"verdict.json", "gate-junit.xml", "gate.md"}
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


@pytest.fixture(scope="module")
def ci_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh Python environment, as a CI runner's, into which both recipes' install steps
    install reinstate from this repository's checkout; returns its bin folder."""
    venv = tmp_path_factory.mktemp("runner") / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    binary = venv / "bin"
    action = _action()
    install = next(s for s in action["runs"]["steps"] if "pip install" in s.get("run", ""))
    values = _action_values(action, {"agent": "refund-agent"}, tmp_path_factory.mktemp("t"))
    done = _shell(_substitute(install["run"], values), ROOT, {"PATH": _path(binary)})
    assert done.returncode == 0, done.stderr
    script = _gitlab()[".reinstate-gate"]["script"]
    install_line = next(line for line in script if "pip install" in line)
    done = _shell(install_line, ROOT, {"PATH": _path(binary), "REINSTATE_SOURCE": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert (binary / "reinstate").is_file()
    return binary


def _path(binary: Path) -> str:
    return f"{binary}{os.pathsep}{os.environ.get('PATH', '')}"


def _shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A step's script, as the runners run it: bash, stopping at the first failing line."""
    full = {**{k: v for k, v in os.environ.items()
               if not k.startswith(("REINSTATE_", "GITHUB_", "VIRTUAL_ENV"))},
            "COLUMNS": "200", "REINSTATE_ACTOR": "ci", **env}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=cwd, env=full, capture_output=True, text=True, timeout=600,
                          check=False)


def _action() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    assert loaded["runs"]["using"] == "composite"
    return loaded


def _gitlab() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(GITLAB.read_text())
    return loaded


def _action_values(action: dict[str, Any], given: dict[str, str], temp: Path) -> dict[str, str]:
    """What Actions puts in each ``${{ … }}`` of the action: inputs (given, else their
    defaults), the action's own checkout, the runner's temp folder."""
    inputs = {name: str(given.get(name, spec.get("default", "")))
              for name, spec in action["inputs"].items()}
    assert set(given) <= set(inputs)
    return {**{f"inputs.{k}": v for k, v in inputs.items()},
            "github.action_path": str(ROOT), "runner.temp": str(temp)}


def _substitute(text: str, values: dict[str, str]) -> str:
    """Each ``${{ expression }}`` replaced; an expression the test does not know fails it."""
    return EXPRESSION.sub(lambda m: values[m.group(1)], text)


def _run_action(given: dict[str, str], repo: Path, binary: Path, tmp_path: Path,
                ) -> tuple[int, dict[str, str], Path, list[dict[str, Any]]]:
    """Every step of the composite action after the install, as Actions runs them.

    Returns the last step's exit code (the job's), the step outputs, the summary file and the
    ``uses:`` steps met (with their inputs substituted)."""
    action = _action()
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    values = _action_values(action, given, temp)
    summary, outputs_file = tmp_path / "summary.md", tmp_path / "outputs"
    summary.touch()
    outputs: dict[str, str] = {}
    used: list[dict[str, Any]] = []
    failed, code = False, 0
    for step in action["runs"]["steps"]:
        if failed and step.get("if") != "always()":
            continue
        if "uses" in step:
            used.append({"uses": step["uses"], **{k: _substitute(str(v), values)
                                                  for k, v in step.get("with", {}).items()}})
            continue
        if "pip install" in step["run"]:
            continue  # done once for the module by ci_python
        env = {k: _substitute(str(v), values) for k, v in step.get("env", {}).items()}
        outputs_file.write_text("")
        done = _shell(_substitute(step["run"], values), repo, {
            **env, "PATH": _path(binary), "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(outputs_file), "RUNNER_TEMP": str(temp)})
        assert "Traceback" not in done.stderr, done.stderr
        for line in outputs_file.read_text().splitlines():
            key, _, value = line.partition("=")
            outputs[key] = value
            values[f"steps.{step.get('id')}.outputs.{key}"] = value
        code = done.returncode
        failed = failed or code != 0
    return code, outputs, summary, used


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=CI", "-c", "user.email=ci@example.com",
                           *args], cwd=root, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def _repository(tmp_path: Path, prepare: Callable[[Workspace], object]) -> tuple[Path, str]:
    """A team's repository holding the example workspace under ``agent-ws/``, committed;
    returns it and its commit."""
    repo = tmp_path / "repo"
    root = lay_out(repo / "agent-ws")
    prepare(Workspace.find(root))
    (repo / ".gitignore").write_text(".reinstate/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "the agent's workspace")
    return repo, _git(repo, "rev-parse", "HEAD")


def _fixed(ws: Workspace) -> None:
    restored(ws, apply_fix)


def test_action_gates_a_fixed_agent_and_keeps_the_verdict(ci_python: Path,
                                                          tmp_path: Path) -> None:
    """On a fixed and restored workspace the action exits 0, writes the report to the step
    summary once, and uploads a passing verdict, the JUnit XML and the report."""
    repo, base = _repository(tmp_path, _fixed)
    code, outputs, summary, used = _run_action(
        {"agent": "refund-agent", "workspace": "agent-ws", "against": base}, repo, ci_python,
        tmp_path)
    assert code == 0 and outputs["exit-code"] == "0"
    upload = next(u for u in used if u["uses"].startswith("actions/upload-artifact@"))
    kept = Path(upload["path"])
    assert {p.name for p in kept.iterdir()} == ARTIFACTS
    assert Path(outputs["verdict"]) == kept / "verdict.json"
    assert json.loads((kept / "verdict.json").read_text())["outcome"] == "pass"
    report = (kept / "gate.md").read_text()
    assert summary.read_text() == report  # once: the gate's own append is switched off
    assert report.startswith("## ✅ refund-agent may run in full")
    assert ET.parse(kept / "gate-junit.xml").getroot().get("failures") == "0"


def test_action_fails_with_the_gates_code_and_still_keeps_the_verdict(
        ci_python: Path, tmp_path: Path) -> None:
    """With an incident captured but not fixed, the action's last step exits 1 (the gate's
    fail) after the upload step got the failing verdict and its report."""
    repo, _ = _repository(tmp_path, captured)
    code, outputs, summary, used = _run_action(
        {"agent": "refund-agent", "workspace": "agent-ws"}, repo, ci_python, tmp_path)
    assert code == 1 and outputs["exit-code"] == "1"
    upload = next(u for u in used if u["uses"].startswith("actions/upload-artifact@"))
    kept = Path(upload["path"])
    assert {p.name for p in kept.iterdir()} == ARTIFACTS
    assert json.loads((kept / "verdict.json").read_text())["outcome"] == "fail"
    assert "may NOT" in summary.read_text()


def _run_gitlab(variables: dict[str, str], repo: Path, binary: Path) -> int:
    """The template's job script after the install, as a GitLab runner runs it: the job's
    variables over the template's, one shell, stopping at the first failing line."""
    job = _gitlab()[".reinstate-gate"]
    assert job["artifacts"]["when"] == "always"
    env = {**{k: str(v) for k, v in job["variables"].items()}, **variables,
           "PATH": _path(binary)}
    script = "\n".join(line for line in job["script"] if "pip install" not in line)
    done = _shell(script, repo, env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


@pytest.mark.parametrize(("prepare", "expected"), [(_fixed, ("pass", 0)),
                                                     (captured, ("fail", 1))])
def test_gitlab_template_gates_and_keeps_its_artifacts(
        prepare: Callable[[Workspace], object], expected: tuple[str, int], ci_python: Path,
        tmp_path: Path) -> None:
    """The template's job exits with the gate's code and leaves the verdict, the report and
    the JUnit report where its artifacts section names them."""
    repo, base = _repository(tmp_path, prepare)
    code = _run_gitlab({"REINSTATE_AGENT": "refund-agent", "REINSTATE_SOURCE": str(ROOT),
                        "REINSTATE_WORKSPACE": "agent-ws",
                        "CI_MERGE_REQUEST_DIFF_BASE_SHA": base}, repo, ci_python)
    assert code == expected[1]
    artifacts = _gitlab()[".reinstate-gate"]["artifacts"]
    kept = [repo / path for path in artifacts["paths"]]
    assert {p.name for folder in kept for p in folder.iterdir()} == ARTIFACTS
    verdict = json.loads((repo / "reinstate-verdict/verdict.json").read_text())
    assert verdict["outcome"] == expected[0]
    ET.parse(repo / artifacts["reports"]["junit"])


def test_gitlab_template_names_a_missing_variable(ci_python: Path, tmp_path: Path) -> None:
    """Without REINSTATE_AGENT the job stops at once, naming the variable to set."""
    job = _gitlab()[".reinstate-gate"]
    done = _shell("\n".join(job["script"]), tmp_path,
                  {**{k: str(v) for k, v in job["variables"].items()},
                   "REINSTATE_SOURCE": str(ROOT), "PATH": _path(ci_python)})
    assert done.returncode != 0 and "set REINSTATE_AGENT" in done.stderr


REGISTRY_INSTALL = re.compile(r"pip3?\s+install\s+(?:-\S+\s+)*[\"']?reinstate(?![\w@/.-])")


def test_recipes_install_from_the_repository_not_a_registry() -> None:
    """No recipe or doc installs reinstate by name from a package registry it is not on."""
    files = [ROOT / "README.md", ACTION, *sorted((ROOT / "docs").rglob("*")),
             *sorted((ROOT / "ci").rglob("*"))]
    offending = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in files if f.is_file()
                 for m in REGISTRY_INSTALL.finditer(f.read_text())]
    assert offending == []
