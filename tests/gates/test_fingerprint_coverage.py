"""The verdict's fingerprint covers everything the verdict depends on: the workspace
configuration, the predicate modules, every file the agent reads and the controls' effective
content; and `check` refuses when the controls no longer load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gates import Fingerprint, Workspace, fingerprint, run_gate
from tests.helpers import copied

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fingerprint_coverage")]

AGENT = "refund-agent"
Cli = Callable[..., tuple[int, str, str]]
PREDICATES = "refund_rules.py"
POLICY = "agents/refund-agent/refund_policy.json"
HOLIDAYS = "shared/holidays.txt"


@pytest.fixture(scope="module")
def depending_template(restored_template: Path, tmp_path_factory: pytest.TempPathFactory,
                       ) -> Path:
    """The restored workspace with a predicate module in use, a data file in the agent's
    folder and one named by ``sources:``, gated green again; made once for this module."""
    root = tmp_path_factory.mktemp("depending") / "ws"
    workspace = copied(restored_template, root)
    (root / PREDICATES).write_text(
        "def weekend_refund(data):\n"
        "    return (data.get('context') or {}).get('channel') == 'weekend-chat'\n")
    config = root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["refund_rules"]\n')
    permissions = workspace.agent_dir(AGENT) / "permissions.yaml"
    data = yaml.safe_load(permissions.read_text())
    data["tools"]["issue_refund"]["review_when"].append(
        {"id": "weekend-chat", "predicate": "refund_rules:weekend_refund"})
    permissions.write_text(yaml.safe_dump(data, sort_keys=False))
    (root / POLICY).write_text('{"refund_window_days": 30}\n')
    (root / HOLIDAYS).parent.mkdir()
    (root / HOLIDAYS).write_text("2026-12-25\n")
    agent_file = workspace.agent_dir(AGENT) / "agent.yaml"
    agent_file.write_text(agent_file.read_text() + "sources: ['../../shared/*.txt']\n")
    assert run_gate(Workspace.find(root), AGENT, actor="ci")
    return root


@pytest.fixture
def depending(depending_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the workspace whose verdict depends on predicates and data files."""
    return copied(depending_template, tmp_path / "ws")


@pytest.fixture
def cli(inline_cli: Cli) -> Cli:
    """``reinstate -C WS ARGS`` in this process (tests/gates/conftest.py)."""
    return inline_cli


def _stale_naming(out: str, path: str) -> bool:
    stale = next((line for line in out.splitlines() if "is stale: changed since" in line), "")
    return path in stale


@pytest.mark.attack
def test_config_change_makes_the_verdict_stale(back_in_full: Workspace, cli: Cli) -> None:
    """A setting the gate read, changed after the gate, makes `check` refuse naming
    reinstate.toml."""
    assert cli(back_in_full, "check", AGENT)[0] == 0
    config = back_in_full.root / "reinstate.toml"
    config.write_text(config.read_text().replace("min_cases_per_input_type = 3",
                                                 "min_cases_per_input_type = 1"))
    code, out, _ = cli(back_in_full, "check", AGENT)
    assert code == 1
    assert _stale_naming(out, "reinstate.toml")


def test_config_put_back_is_current_again(back_in_full: Workspace, cli: Cli) -> None:
    """A setting changed and put back (reformatted, with a comment) leaves the verdict
    current: the configuration is hashed by what it says."""
    config = back_in_full.root / "reinstate.toml"
    original = config.read_text()
    config.write_text(original.replace("trials = 3", "trials = 1"))
    assert cli(back_in_full, "check", AGENT)[0] == 1
    config.write_text("# put back after the gate ran\n"
                      + original.replace("trials = 3", "trials   =   3  # as gated"))
    code, out, _ = cli(back_in_full, "check", AGENT)
    assert (code, "cleared" in out) == (0, True)


def test_comment_in_a_control_file_is_not_a_change(back_in_full: Workspace, cli: Cli) -> None:
    """A comment-only edit to permissions.yaml leaves the verdict current."""
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    permissions.write_text("# reviewed again on 2026-12-01, nothing to change\n"
                           + permissions.read_text() + "# end of the boundary\n")
    code, out, _ = cli(back_in_full, "check", AGENT)
    assert (code, "cleared" in out) == (0, True)


@pytest.mark.attack
def test_semantic_edit_to_a_control_file_is_stale(back_in_full: Workspace, cli: Cli) -> None:
    """A change to what permissions.yaml says makes `check` refuse naming the file."""
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace("maximum: 500", "maximum: 5000"))
    code, out, _ = cli(back_in_full, "check", AGENT)
    assert code == 1
    assert _stale_naming(out, "agents/refund-agent/permissions.yaml")


@pytest.mark.attack
def test_changed_predicate_module_is_stale(depending: Workspace, cli: Cli) -> None:
    """A predicate module listed in reinstate.toml, changed after the gate, makes `check`
    refuse naming the module's file."""
    assert cli(depending, "check", AGENT)[0] == 0
    module = depending.root / PREDICATES
    module.write_text(module.read_text().replace("'weekend-chat'", "'never'"))
    code, out, _ = cli(depending, "check", AGENT)
    assert code == 1
    assert _stale_naming(out, PREDICATES)


@pytest.mark.attack
@pytest.mark.parametrize("data_file", [POLICY, HOLIDAYS], ids=["agent-folder", "sources-glob"])
def test_changed_data_file_is_stale(depending: Workspace, cli: Cli, data_file: str) -> None:
    """A data file the agent reads (in its folder, or matched by ``sources:``), changed
    after the gate, makes `check` refuse naming it."""
    assert cli(depending, "check", AGENT)[0] == 0
    (depending.root / data_file).write_text("changed after the gate\n")
    code, out, _ = cli(depending, "check", AGENT)
    assert code == 1
    assert _stale_naming(out, data_file)


@pytest.mark.attack
def test_emptied_predicate_list_refuses_as_controls_no_longer_load(
        depending: Workspace, cli: Cli) -> None:
    """With the predicate module list emptied, `check` refuses saying the controls no
    longer load, and why."""
    config = depending.root / "reinstate.toml"
    config.write_text(config.read_text().replace('["refund_rules"]', "[]"))
    code, out, err = cli(depending, "check", AGENT)
    assert code == 1 and "Traceback" not in out + err
    reason = next(line for line in out.splitlines() if "no longer load" in line)
    assert "permissions.yaml" in reason and "not in predicate_modules" in reason


@pytest.mark.attack
def test_deleted_predicate_module_is_missing_and_refused(depending: Workspace,
                                                         cli: Cli) -> None:
    """A listed predicate module that was deleted is recorded as missing (stale, naming
    it) and the controls no longer load."""
    (depending.root / PREDICATES).unlink()
    assert fingerprint(depending, AGENT).files[PREDICATES] == "missing"
    code, out, _ = cli(depending, "check", AGENT)
    assert code == 1
    assert _stale_naming(out, PREDICATES)
    assert "no longer load" in out


def _with_rules_package(root: Path, listed: str, imports: str) -> None:
    """A ``review_when`` predicate ``rules.refund_rules:weekend_refund`` whose channel
    comes from a helper module ``rules/limits.py`` it imports, ``listed`` in
    reinstate.toml."""
    (root / "rules").mkdir()
    (root / "rules/__init__.py").write_text("")
    (root / "rules/limits.py").write_text("CHANNEL = 'weekend-chat'\n")
    (root / "rules/refund_rules.py").write_text(
        f"{imports}\n"
        "def weekend_refund(data):\n"
        "    return (data.get('context') or {}).get('channel') == CHANNEL\n")
    config = root / "reinstate.toml"
    config.write_text(config.read_text() + f'\n[rules]\npredicate_modules = ["{listed}"]\n')
    permissions = root / "agents" / AGENT / "permissions.yaml"
    data = yaml.safe_load(permissions.read_text())
    data["tools"]["issue_refund"]["review_when"].append(
        {"id": "weekend-chat", "predicate": "rules.refund_rules:weekend_refund"})
    permissions.write_text(yaml.safe_dump(data, sort_keys=False))


def _reinstate(root: Path, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """``python -m gates -C ROOT ARGS`` in a new process run from ``cwd`` (the workspace
    by default: Python then puts it on ``sys.path``, as CI jobs run the tool)."""
    env = {**os.environ, "REINSTATE_ACTOR": "test.engineer", "COLUMNS": "200"}
    env.pop("REINSTATE_WORKSPACE", None)
    done = subprocess.run([sys.executable, "-m", "gates", "-C", str(root), *args],
                          cwd=cwd or root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    return done.returncode, done.stdout, done.stderr


def _cleared(command: str, code: int, out: str) -> bool:
    """Whether `check` cleared the agent, or `restore` restored it."""
    return code == 0 and ("NOT cleared" not in out if command == "check" else True)


# `check` on the workspace back in full operation (it clears while the verdict is current);
# `restore` on the one contained with a resolved incident (it restores on a current one).
ON = {"check": "back_in_full", "restore": "restorable"}


@pytest.mark.attack
@pytest.mark.parametrize("command", ["check", "restore"])
def test_an_unlisted_module_a_predicate_imports_does_not_clear(
        request: pytest.FixtureRequest, command: str) -> None:
    """A listed predicate module that imports a workspace module reinstate.toml does not
    list (``rules/limits.py``, found on ``sys.path`` as the tool runs from the workspace)
    is refused at load, naming it: the helper is in no fingerprint, so an edit of it after
    a passing gate would change what the controls decide while `check` cleared and
    `restore` restored."""
    root = request.getfixturevalue(ON[command]).root
    _with_rules_package(root, "rules.refund_rules", "from rules.limits import CHANNEL")
    code, out, err = _reinstate(root, "gate", AGENT)
    (root / "rules/limits.py").write_text("CHANNEL = 'never'\n")  # loosened after the gate
    assert code == 2, out + err
    assert "rules/limits.py" in err and "does not list" in err and "Traceback" not in err
    code, out, err = _reinstate(root, command, AGENT)
    assert not _cleared(command, code, out), out + err
    assert code == 1 and "rules/limits.py" in out + err, out + err


@pytest.mark.attack
@pytest.mark.parametrize("command", ["check", "restore"])
def test_a_helper_kept_in_a_pycache_folder_of_a_listed_package_does_not_clear(
        request: pytest.FixtureRequest, command: str) -> None:
    """A listed package's predicate that imports a helper kept in the package's
    ``__pycache__`` folder (``from .__pycache__.limits import CHANNEL``), which the
    fingerprint and the ratchet pass over as Python's cache, is refused at load, naming
    it: before, the gate passed and an edit of the helper after it left `check` clearing
    and `restore` restoring on a verdict "on today's files"."""
    root = request.getfixturevalue(ON[command]).root
    _with_rules_package(root, "rules", "from .__pycache__.limits import CHANNEL")
    (root / "rules/__pycache__").mkdir()
    (root / "rules/limits.py").rename(root / "rules/__pycache__/limits.py")
    code, out, err = _reinstate(root, "gate", AGENT)
    assert code == 2, out + err
    assert "rules.__pycache__.limits" in err and "no fingerprint covers" in err
    assert "Traceback" not in out + err
    (root / "rules/__pycache__/limits.py").write_text("CHANNEL = 'never'\n")  # loosened
    code, out, err = _reinstate(root, command, AGENT)
    assert not _cleared(command, code, out), out + err


@pytest.mark.attack
@pytest.mark.parametrize(("command", "imports"), [
    ("check", "from rules.limits import CHANNEL"),
    ("check", "from .limits import CHANNEL"),
    ("restore", "from rules import limits\nCHANNEL = limits.CHANNEL"),
], ids=["check-absolute", "check-relative", "restore-from-package"])
def test_an_edited_helper_of_a_listed_package_does_not_clear(
        request: pytest.FixtureRequest, tmp_path: Path, command: str, imports: str) -> None:
    """The README's layout, a listed package whose predicate imports a sibling module, is
    gated green from any directory (the package is found in the workspace, not on
    ``sys.path``); an edit of the sibling after the gate makes `check` and `restore`
    refuse, naming it stale."""
    root = request.getfixturevalue(ON[command]).root
    _with_rules_package(root, "rules", imports)
    code, out, err = _reinstate(root, "gate", AGENT, cwd=tmp_path)
    assert code == 0, out + err
    if command == "check":
        code, out, err = _reinstate(root, "check", AGENT)
        assert _cleared(command, code, out), out + err
    (root / "rules/limits.py").write_text("CHANNEL = 'never'\n")
    code, out, err = _reinstate(root, command, AGENT)
    assert not _cleared(command, code, out), out + err
    assert code == 1 and _stale_naming(out + err, "rules/limits.py"), out + err


@pytest.mark.attack
@pytest.mark.parametrize("command", ["check", "gate"])
def test_sources_glob_escaping_the_workspace_is_refused(back_in_full: Workspace, cli: Cli,
                                                        command: str) -> None:
    """A ``sources:`` glob reaching outside the workspace is one clean error naming
    agent.yaml and ``$.sources[0]``, exit 2, and the gate stores nothing."""
    outside = back_in_full.root.parent / "outside"
    outside.mkdir()
    (outside / "secrets.txt").write_text("not the agent's\n")
    agent_file = back_in_full.agent_dir(AGENT) / "agent.yaml"
    agent_file.write_text(agent_file.read_text() + "sources: ['../../../outside/*.txt']\n")
    before = back_in_full.state_path.read_bytes()
    code, out, err = cli(back_in_full, command, AGENT)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    assert "agent.yaml" in err and "$.sources[0]" in err and "inside the workspace" in err
    assert back_in_full.state_path.read_bytes() == before


@pytest.mark.attack
def test_verdict_from_before_the_new_digests_is_stale(back_in_full: Workspace) -> None:
    """A fingerprint stored before the configuration and predicates were covered still
    loads, dumps exactly as stored, and never counts as current."""
    today = fingerprint(back_in_full, AGENT)
    stored = today.model_dump(exclude={"config", "predicates"})
    stored["files"] = {p: d for p, d in stored["files"].items() if p != "reinstate.toml"}
    body = json.dumps(stored, separators=(",", ":"))
    old = Fingerprint.model_validate_json(body)
    assert old.model_dump_json() == body
    assert today.changed_since(old) == ["reinstate.toml"]
    assert Fingerprint.model_validate({**stored, "files": today.files}).changed_since(today)


@pytest.mark.attack
@pytest.mark.parametrize("where", ["inside", "outside"])
def test_a_file_under_a_linked_folder_of_the_agent_is_fingerprinted(
        back_in_full: Workspace, cli: Cli, tmp_path: Path, where: str) -> None:
    """A folder of the agent's that is a symbolic link (to a shared folder of the workspace,
    or one outside it) holds code the agent can import (its Python adapter's ``path`` is
    its folder). Its files are the agent's: a change to one after the gate is stale, in
    the full check and in the light one that follows it. Before, the walk did not enter a
    linked folder, so its files were in no fingerprint and `check` kept clearing."""
    target = (back_in_full.root / "shared_lib" if where == "inside"
              else tmp_path / "outside" / "lib")
    target.mkdir(parents=True)
    (target / "refund_limits.py").write_text("LIMIT = 500\n")
    (back_in_full.agent_dir(AGENT) / "limits").symlink_to(target, target_is_directory=True)
    assert run_gate(back_in_full, AGENT, actor="ci")
    # Named as the workspace names a path: where it resolves to, inside the workspace.
    assert any(name.endswith("refund_limits.py")
               for name in fingerprint(back_in_full, AGENT).files)
    assert cli(back_in_full, "check", AGENT)[0] == 0
    (target / "refund_limits.py").write_text("LIMIT = 50_000  # after the gate\n")
    for _ in range(2):  # the full check, then the light one it remembered facts for
        code, out, _ = cli(back_in_full, "check", AGENT)
        assert code == 1 and _stale_naming(out, "refund_limits.py"), out


@pytest.mark.attack
@pytest.mark.parametrize("command", ["check", "gate"])
def test_reinstates_own_folder_inside_the_agents_folder_is_refused(
        back_in_full: Workspace, cli: Cli, command: str) -> None:
    """``[paths] logs`` set to a folder of the agent's: the fingerprint walks past the
    logs, so a prompt kept there could change and the verdict stay current. One clean
    error naming the setting, exit 2; the gate stores nothing."""
    data = back_in_full.agent_dir(AGENT) / "data"
    data.mkdir()
    (data / "prompt.txt").write_text("Refunds over 500 USD need a human.\n")
    config = back_in_full.root / "reinstate.toml"
    config.write_text(config.read_text().replace(
        'state = ".reinstate/state.db"\n',
        f'state = ".reinstate/state.db"\nlogs = "agents/{AGENT}/data"\n'))
    before = back_in_full.state_path.read_bytes()
    code, out, err = cli(back_in_full, command, AGENT)
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    assert "[paths] logs" in err and f"agents/{AGENT}/data" in err and "fingerprint" in err
    assert back_in_full.state_path.read_bytes() == before
