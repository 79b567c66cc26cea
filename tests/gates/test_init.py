"""`reinstate init` lays out a workspace that the other commands work in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite import Step, ToolCall, ToolResult
from gates import Workspace, decide_call
from tests.conftest import RunCli, tree

pytestmark = pytest.mark.slow


def test_init_with_an_agent_gives_a_gateable_workspace(tmp_path: Path, cli: RunCli) -> None:
    """A new agent's workspace runs the gate, which flags the empty checklist, not a pass."""
    result = cli("init", "team", "--agent", "billing-agent", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "team"
    for path in ("reinstate.toml", ".gitignore", "agents/billing-agent/agent.yaml",
                 "agents/billing-agent/permissions.yaml",
                 "evals/billing-agent/example-question.yaml",
                 ".reinstate/state.db"):
        assert (root / path).is_file(), path
    assert (root / "incidents").is_dir() and (root / "regressions").is_dir()
    gate = cli("gate", "billing-agent", cwd=root)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "operating_checklist" in gate.stdout and "owner is empty" in gate.stdout
    mode = cli("mode", "billing-agent", cwd=root)
    assert mode.stdout.strip() == "full"


CHECKLIST = """\
schema_version: 1
agent: {agent}
owner: help-team@example.com
allowed_tools: [search_docs]
tool_risk: {{search_docs: low}}
data_sources: [product docs]
completion_criteria: [the question is answered from the docs]
review_path: the help team's queue
rollback_plan: switch the agent off in the help widget
"""
# One logged conversation, as the agent's runtime would write it: the gate's logging check
# reads the agent's logs under logs/.
LOG = [
    {"schema_version": 1, "kind": "run", "run_id": "run-1", "agent": "{agent}",
     "agent_version": "0.1.0", "started_at": "2026-11-29T10:00:00Z",
     "context": {"channel": "chat"}},
    {"run_id": "run-1", "kind": "user_input", "content": "How do I reset my password?"},
    {"run_id": "run-1", "kind": "reasoning", "content": "look it up in the docs"},
    {"run_id": "run-1", "kind": "tool_call", "tool": "search_docs",
     "arguments": {"query": "reset password"}, "call_id": "c1"},
    {"run_id": "run-1", "kind": "tool_result", "tool": "search_docs", "call_id": "c1",
     "result": {"answer": "Use the reset link."}},
    {"run_id": "run-1", "kind": "output", "content": "Use the reset link on the sign-in page."},
]


def test_a_new_agent_passes_its_evals_and_check_once_its_checklist_is_filled(
        tmp_path: Path, cli: RunCli) -> None:
    """A scaffolded agent passes `reinstate eval`; with its checklist filled in and a log,
    the gate passes and `reinstate check` clears it."""
    assert cli("init", "team", "--agent", "help-agent", cwd=tmp_path).returncode == 0
    root = tmp_path / "team"
    evals = cli("eval", "help-agent", "--all-cases", cwd=root)
    assert evals.returncode == 0, evals.stdout + evals.stderr
    assert "example-question" in evals.stdout and "PASS" in evals.stdout
    (root / "agents/help-agent/checklist.yaml").write_text(CHECKLIST.format(agent="help-agent"))
    (root / "logs").mkdir()
    (root / "logs/help-agent.jsonl").write_text("".join(
        json.dumps(line).replace("{agent}", "help-agent") + "\n" for line in LOG))
    gate = cli("gate", "help-agent", cwd=root)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    check = cli("check", "help-agent", cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "cleared" in check.stdout


def test_the_scaffold_rule_denies_a_fourth_search(tmp_path: Path, cli: RunCli) -> None:
    """The scaffolded tool's CEL rule reads the history: a fourth search in one
    conversation is denied by it, the first three are allowed."""
    assert cli("init", "team", "--agent", "help-agent", cwd=tmp_path).returncode == 0
    controls = Workspace.find(tmp_path / "team").controls("help-agent")
    history: list[Step] = []
    effects = []
    for turn in range(4):
        call = ToolCall(tool="search_docs", arguments={"query": "reset"}, call_id=f"c{turn}")
        decision = decide_call(controls, call, history)
        effects.append((decision.effect, decision.rule))
        history += [call, ToolResult(call_id=f"c{turn}", result={"answer": "a"})]
    assert effects == [("allow", "permissions.tools.search_docs")] * 3 + [
        ("deny", "permissions.tools.search_docs.deny_when.search-limit")]


def test_init_adds_an_agent_to_a_workspace_and_touches_nothing_else(
        tmp_path: Path, cli: RunCli) -> None:
    """`init --agent` in an existing workspace adds that agent's folders, leaves every other
    file (another agent's tuned controls, the settings, the state store) as it was, and the
    new agent's evals pass."""
    assert cli("init", "--agent", "help-agent", cwd=tmp_path).returncode == 0
    (tmp_path / "reinstate.toml").write_text("# tuned by the team\nschema_version = 1\n")
    (tmp_path / "agents/help-agent/review.yaml").write_text(
        "schema_version: 1\nagent: help-agent\nrules: []  # tuned\n")
    before = tree(tmp_path)
    result = cli("init", "--agent", "billing-agent", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = tree(tmp_path)
    added = {path for path in after if path not in before}
    assert {path for path in before if after.get(path) != before[path]} == set()
    assert added == {f"agents/billing-agent/{name}" for name in (
        "agent.yaml", "agent.py", "permissions.yaml", "acceptance.yaml", "review.yaml",
        "checklist.yaml")} | {"evals/billing-agent/example-question.yaml"}
    evals = cli("eval", "billing-agent", cwd=tmp_path)
    assert evals.returncode == 0, evals.stdout + evals.stderr


@pytest.mark.parametrize("existing", ["agents/help-agent", "evals/help-agent"])
def test_init_refuses_an_agent_the_workspace_has(tmp_path: Path, cli: RunCli,
                                                 existing: str) -> None:
    """Adding an agent whose control or eval folder exists is refused, naming the agent and
    the folder, and nothing is written."""
    assert cli("init", cwd=tmp_path).returncode == 0
    (tmp_path / existing).mkdir(parents=True)
    before = tree(tmp_path)
    result = cli("init", "--agent", "help-agent", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{existing} already exists" in result.stderr and "'help-agent'" in result.stderr
    assert tree(tmp_path) == before and not any((tmp_path / existing).iterdir())


def test_init_refuses_an_existing_workspace(tmp_path: Path, cli: RunCli) -> None:
    """Running init twice changes nothing the first run wrote."""
    assert cli("init", cwd=tmp_path).returncode == 0
    (tmp_path / "reinstate.toml").write_text("# tuned by the team\nschema_version = 1\n")
    before = tree(tmp_path)
    result = cli("init", cwd=tmp_path)
    assert result.returncode == 2 and "already" in result.stderr
    assert tree(tmp_path) == before


def test_init_over_a_store_left_without_its_configuration_keeps_it(
        restorable: Workspace, cli: RunCli) -> None:
    """`init` in a folder whose reinstate.toml is gone but whose state store is not writes
    the configuration, keeps the store's history, and does not claim to have made it."""
    (restorable.root / "reinstate.toml").unlink()
    result = cli("init", cwd=restorable.root)
    assert result.returncode == 0, result.stderr
    assert "reinstate.toml" in result.stdout and "state.db" not in result.stdout
    audit = cli("audit", cwd=restorable.root)
    assert "gate pass" in audit.stdout, audit.stdout + audit.stderr  # the history kept


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


def test_init_lays_out_the_workspace_in_the_folder_named_by_dash_c(tmp_path: Path,
                                                                   cli: RunCli) -> None:
    """`reinstate -C DIR init` writes into DIR, not into the working directory."""
    (tmp_path / "team").mkdir()
    (tmp_path / "elsewhere").mkdir()
    result = cli("-C", str(tmp_path / "team"), "init", "--agent", "billing-agent",
                 cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "team" / "reinstate.toml").is_file()
    assert list((tmp_path / "elsewhere").iterdir()) == []
    nested = cli("-C", str(tmp_path / "team"), "init", "sub", cwd=tmp_path / "elsewhere")
    assert nested.returncode == 0, nested.stderr
    assert (tmp_path / "team" / "sub" / "reinstate.toml").is_file()
