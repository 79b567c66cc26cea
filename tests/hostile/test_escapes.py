"""Data that tries to leave the workspace or to run code: ids and paths from files and the
command line stay inside, and no data file makes reinstate execute anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from evalsuite import EvalCase, InvalidInput, load_model
from gates import (
    Workspace,
    load_baseline,
    open_incident,
    open_store,
    report_markdown,
    verdict_report,
)
from gates._cli import main
from tests.helpers import ACTOR, contained

ROOT = Path(__file__).parent.parent.parent
AGENT = "refund-agent"
CASE = "evals/refund-agent/greeting.yaml"


def _cli(ws: Workspace, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["-C", str(ws.root), "--actor", ACTOR, *args])
    return code, capsys.readouterr().err


def _edit_case(ws: Workspace, **fields: object) -> Path:
    path = ws.root / CASE
    data = yaml.safe_load(path.read_text())
    data.update(fields)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("command", [
    ("incident", "show", "../../etc/passwd"), ("contain", "../INC-1", "--mode", "review",
                                               "--notify", "legal", "--scope", "x"),
    ("capture", "INC-1/../../x", "--run", "logs/x.jsonl"),
    ("incident", "finding", "INC-1\x00", "--layer", "review_gate", "--gap", "--description", "x"),
])
def test_incident_ids_cannot_name_a_path(example: Workspace, capsys: pytest.CaptureFixture[str],
                                         command: tuple[str, ...]) -> None:
    """An incident id that is not INC-<n> is refused before it names any file."""
    code, err = _cli(example, capsys, *command)
    assert code == 2 and "is not an incident id: expected INC-<n>" in err
    assert not (example.root.parent / "x").exists()


def test_case_ids_cannot_name_a_path(example: Workspace) -> None:
    """A case id with a slash is refused by the case schema."""
    path = _edit_case(example, id="../../escaped")
    with pytest.raises(InvalidInput, match="String should match pattern"):
        load_model(path, EvalCase)


@pytest.mark.parametrize(("field", "value", "place"), [
    ("directory", "../../outside", "$.containment.baseline.directory"),
    ("files", {"../../../etc/passwd": "0" * 64}, "$.containment.baseline.files"),
])
def test_baseline_stays_in_the_incidents_folder(example: Workspace, field: str, value: object,
                                                place: str) -> None:
    """A baseline folder or file name from the incident file cannot reach outside."""
    incident_id = contained(example)
    path = example.incidents().path(incident_id)
    data = yaml.safe_load(path.read_text())
    data["containment"]["baseline"][field] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(InvalidInput) as caught:
        load_baseline(example, example.incidents().load(incident_id))
    assert caught.value.place.startswith(place)


@pytest.mark.parametrize("setting", ['regressions = "../outside"', 'state = "/tmp/state.db"',
                                     'incidents = "incidents/../../x"'])
def test_config_paths_stay_in_the_workspace(example: Workspace, setting: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A configured folder outside the workspace is refused, naming the setting."""
    config = example.root / "reinstate.toml"
    text = config.read_text().replace("[paths]\n", f"[paths]\n{setting}\n", 1)
    config.write_text("\n".join(line for line in text.splitlines()
                                if not line.startswith(setting.split(" ")[0] + " = \"")
                                or line == setting) + "\n")
    code, err = _cli(example, capsys, "gate", AGENT)
    assert code == 2 and "expected a path inside the workspace" in err


@pytest.mark.parametrize(("table", "setting"), [("paths", "state"), ("paths", "agents"),
                                              ("paths", "logs"), ("signing", "public_key")])
@pytest.mark.parametrize("command", ["mode", "check", "gate", "restore"])
def test_config_path_with_a_nul_is_one_clear_error(example: Workspace, table: str,
                                                   setting: str, command: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A configured path holding a NUL (which no file name can) is refused where it is
    written, exit 2, by every command: never a traceback, nor a `mode` with no answer."""
    config = example.root / "reinstate.toml"
    nul = f'{setting} = "a\\u0000b"'  # TOML's escape: the file itself holds no NUL
    lines = [line for line in config.read_text().splitlines()
             if not line.startswith(f"{setting} = ")]
    if table == "paths":
        lines.insert(lines.index("[paths]") + 1, nul)
    else:
        lines += [f"[{table}]", nul]
    config.write_text("\n".join(lines) + "\n")
    code, err = _cli(example, capsys, command, AGENT)
    assert code == 2
    assert (f"reinstate.toml: $.{table}.{setting}: expected a path without NUL characters"
            in err)


def test_agent_source_folder_stays_in_the_workspace(example: Workspace,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """agent.yaml cannot point the adapter at code outside the workspace."""
    agent = example.agent_dir(AGENT) / "agent.yaml"
    agent.write_text(agent.read_text().replace("path: .", "path: ../../.."))
    code, err = _cli(example, capsys, "gate", AGENT)
    assert code == 2 and "agent.yaml: $.adapter: expected a path inside the workspace" in err


def test_yaml_tags_never_build_objects(example: Workspace,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A Python tag in a case file is malformed YAML, not a command."""
    marker = example.root / "PWNED"
    path = example.root / CASE
    path.write_text(path.read_text() + f"\nx: !!python/object/apply:os.system "
                                       f"['touch {marker}']\n")
    code, err = _cli(example, capsys, "gate", AGENT)
    assert code == 2 and "malformed YAML" in err and not marker.exists()


def test_case_predicate_from_a_module_not_allowed_never_runs(
        example: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A case expectation naming a workspace module that reinstate.toml does not allow is
    refused before the module is imported."""
    marker = example.root / "imported.txt"
    (example.root / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                          f"def ok(data):\n    return True\n")
    data = yaml.safe_load((example.root / CASE).read_text())
    _edit_case(example, expect=[*data["expect"], {"kind": "predicate", "predicate": "evil:ok"}])
    code, err = _cli(example, capsys, "gate", AGENT)
    assert code == 2 and "module 'evil' is not in predicate_modules" in err
    assert not marker.exists()


def test_allowed_module_name_never_reaches_the_standard_library(
        example: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Allowing ``os`` lets only a workspace file called os.py be loaded, never the real one."""
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["os"]\n')
    data = yaml.safe_load((example.root / CASE).read_text())
    _edit_case(example, expect=[*data["expect"], {"kind": "predicate", "predicate": "os:system"}])
    code, err = _cli(example, capsys, "gate", AGENT)
    assert code == 2 and "no module 'os' in the workspace" in err


def test_expressions_are_not_python(example: Workspace,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A CEL expression written as Python is refused when the file is read; nothing runs."""
    marker = example.root / "PWNED"
    data = yaml.safe_load((example.root / CASE).read_text())
    _edit_case(example, expect=[*data["expect"], {
        "kind": "expression", "expression": f"__import__('os').system('touch {marker}') == 0"}])
    code, err = _cli(example, capsys, "gate", AGENT)
    assert code == 2 and CASE in err and not marker.exists()


@pytest.mark.slow
def test_subprocess_agent_command_is_never_a_shell(example: Workspace,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A subprocess agent's command is run as a program, so shell syntax in it runs nothing."""
    marker = example.root / "PWNED"
    agent = example.agent_dir(AGENT) / "agent.yaml"
    data = yaml.safe_load(agent.read_text())
    data["adapter"] = {"kind": "subprocess", "command": [f"true; touch {marker}"]}
    agent.write_text(yaml.safe_dump(data, sort_keys=False))
    code, _ = _cli(example, capsys, "gate", AGENT)
    assert code == 3 and not marker.exists()


def test_no_module_runs_a_shell() -> None:
    """No module calls a shell: no shell=True, os.system, os.popen or *_shell."""
    banned = {("os", "system"), ("os", "popen"), ("asyncio", "create_subprocess_shell"),
              ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
    for package in ("evalsuite", "regressions", "gates"):
        for path in (ROOT / package).rglob("*.py"):
            if "_example" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    assert (node.value.id, node.attr) not in banned, f"{path}: {node.attr}"
                if isinstance(node, ast.keyword) and node.arg == "shell":
                    assert isinstance(node.value, ast.Constant) and not node.value.value, path


def test_templates_in_data_are_shown_not_run(example: Workspace) -> None:
    """Template syntax in an incident summary reaches the report as text."""
    open_incident(example, AGENT, summary="{{ 7*7 }} {% raw %}", severity="sev4", actor=ACTOR)
    open_store(example).create()
    report = report_markdown(verdict_report(example, AGENT))
    assert "{{ 7\\*7 }} {% raw %}" in report and "49" not in report  # Markdown-escaped *
