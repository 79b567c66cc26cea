"""`reinstate init` lays out a workspace that the other commands work in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RunCli, tree

pytestmark = pytest.mark.slow


def test_init_with_an_agent_gives_a_gateable_workspace(tmp_path: Path, cli: RunCli) -> None:
    """A new agent's workspace runs the gate, which flags the empty checklist, not a pass."""
    result = cli("init", "team", "--agent", "billing-agent", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "team"
    for path in ("reinstate.toml", ".gitignore", "agents/billing-agent/agent.yaml",
                 "agents/billing-agent/permissions.yaml", "evals/billing-agent/example-echo.yaml",
                 ".reinstate/state.db"):
        assert (root / path).is_file(), path
    assert (root / "incidents").is_dir() and (root / "regressions").is_dir()
    gate = cli("gate", "billing-agent", cwd=root)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "operating_checklist" in gate.stdout and "owner is empty" in gate.stdout
    mode = cli("mode", "billing-agent", cwd=root)
    assert mode.stdout.strip() == "full"


def test_init_refuses_an_existing_workspace(tmp_path: Path, cli: RunCli) -> None:
    """Running init twice changes nothing the first run wrote."""
    assert cli("init", cwd=tmp_path).returncode == 0
    (tmp_path / "reinstate.toml").write_text("# tuned by the team\nschema_version = 1\n")
    before = tree(tmp_path)
    result = cli("init", cwd=tmp_path)
    assert result.returncode == 2 and "already" in result.stderr
    assert tree(tmp_path) == before


def test_init_refuses_an_agent_name_that_is_a_path(tmp_path: Path, cli: RunCli) -> None:
    """An agent name cannot point outside the workspace."""
    result = cli("init", "ws", "--agent", "../escape", cwd=tmp_path)
    assert result.returncode == 2 and "expected a name" in result.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "ws").exists()


def test_config_in_pyproject_is_found(tmp_path: Path, cli: RunCli) -> None:
    """[tool.reinstate] in pyproject.toml makes a folder a workspace, with its settings."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.reinstate]\nschema_version = 1\n'
        '[tool.reinstate.paths]\nstate = "var/state.db"\n')
    (tmp_path / "agents" / "a").mkdir(parents=True)
    result = cli("audit", cwd=tmp_path / "agents")
    assert result.returncode == 3 and "var/state.db" in result.stderr


def test_config_path_outside_the_workspace_is_refused(tmp_path: Path, cli: RunCli) -> None:
    """A configured path may not leave the workspace."""
    (tmp_path / "reinstate.toml").write_text('schema_version = 1\n[paths]\nincidents = "../x"\n')
    result = cli("incident", "list", cwd=tmp_path)
    assert result.returncode == 2 and "$.paths.incidents" in result.stderr
