"""Bad input through the real CLI: one clear line naming file and place, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from gates import Workspace
from tests.conftest import RunCli, tree
from tests.helpers import contained


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture drifted: {old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _assert_one_clear_line(result: object, *needles: str) -> None:
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr


@pytest.mark.slow
def test_malformed_yaml_names_file_and_line(example: Workspace, cli: RunCli) -> None:
    """A case file that is not YAML stops the gate before anything runs or is written."""
    case = example.evals_dir("refund-agent") / "greeting.yaml"
    _edit(case, "description: A bare greeting", "description: [A bare greeting")
    before = tree(example.root)
    result = cli("gate", "refund-agent", "--json", "v.json", cwd=example.root)
    _assert_one_clear_line(result, "evals/refund-agent/greeting.yaml:", "malformed YAML")
    assert tree(example.root) == before


@pytest.mark.slow
def test_unknown_tool_in_case_is_named_with_suggestion(example: Workspace, cli: RunCli) -> None:
    """A case naming a tool the permissions do not know points at the field and suggests one."""
    case = example.evals_dir("refund-agent") / "refund-full-damaged.yaml"
    _edit(case, "- kind: tool_called\n  tool: issue_refund",
          "- kind: tool_called\n  tool: issue_refnd")
    before = tree(example.root)
    result = cli("gate", "refund-agent", cwd=example.root)
    _assert_one_clear_line(result, "refund-full-damaged.yaml:", "$.expect[0].tool",
                           "unknown tool 'issue_refnd'", "did you mean 'issue_refund'")
    assert tree(example.root) == before


@pytest.mark.slow
def test_invalid_json_schema_in_permissions(example: Workspace, cli: RunCli) -> None:
    """An argument constraint that is not a valid JSON Schema is reported at its place."""
    permissions = example.agent_dir("refund-agent") / "permissions.yaml"
    _edit(permissions, "amount: {type: number, exclusiveMinimum: 0}",
          "amount: {type: numeric, exclusiveMinimum: 0}")
    before = tree(example.root)
    result = cli("gate", "refund-agent", cwd=example.root)
    _assert_one_clear_line(result, "permissions.yaml:", "$.tools.issue_refund.arguments",
                           "invalid JSON Schema")
    assert tree(example.root) == before


@pytest.mark.slow
def test_unknown_incident_id(example: Workspace, cli: RunCli) -> None:
    """Containing an incident that does not exist changes no mode and writes nothing."""
    incident_id = contained(example)
    before = tree(example.root)
    result = cli("contain", "INC-7", "--mode", "suspended", "--notify", "legal",
                 "--scope", "x", cwd=example.root)
    _assert_one_clear_line(result, "unknown incident 'INC-7'", incident_id)
    assert tree(example.root) == before


@pytest.mark.slow
def test_illegal_phase_transition(example: Workspace, cli: RunCli) -> None:
    """A control change before any root-cause finding is refused with what is allowed."""
    incident_id = contained(example)
    before = tree(example.root)
    result = cli("incident", "change", incident_id, "--layer", "review_gate",
                 "--addresses", "F-1", "--description", "route refunds", cwd=example.root)
    _assert_one_clear_line(result, f"Can't record a control change for {incident_id} when in "
                                   "contained", "analysing, resolving")
    assert tree(example.root) == before


@pytest.mark.slow
def test_second_containment_is_illegal(example: Workspace, cli: RunCli) -> None:
    """Containing twice is refused and leaves the first containment as it was."""
    incident_id = contained(example)
    before = tree(example.root)
    result = cli("contain", incident_id, "--mode", "suspended", "--notify", "legal",
                 "--scope", "x", cwd=example.root)
    _assert_one_clear_line(result, f"Can't contain {incident_id} when in contained")
    assert tree(example.root) == before


@pytest.mark.slow
def test_hand_edited_incident_is_validated_on_read(example: Workspace, cli: RunCli) -> None:
    """A mistake typed into an incident file is reported with its line and JSON path."""
    incident_id = contained(example)
    path = example.incidents().path(incident_id)
    _edit(path, "severity: sev2", "severity: critical")
    line = path.read_text().splitlines().index("severity: critical") + 1
    result = cli("incident", "show", incident_id, cwd=example.root)
    _assert_one_clear_line(result, f"incidents/{incident_id}.yaml:{line}:", "$.severity",
                           "'sev1', 'sev2', 'sev3' or 'sev4'")


@pytest.mark.slow
def test_unknown_agent_suggests_the_close_one(example: Workspace, cli: RunCli) -> None:
    """A misspelt agent name gets a suggestion."""
    result = cli("mode", "refund-agnt", cwd=example.root)
    _assert_one_clear_line(result, "unknown agent 'refund-agnt'", "did you mean 'refund-agent'")


@pytest.mark.slow
def test_no_workspace_says_how_to_make_one(tmp_path: Path, cli: RunCli) -> None:
    """Outside a workspace the CLI says so and how to start one."""
    result = cli("gate", "refund-agent", cwd=tmp_path)
    _assert_one_clear_line(result, "no reinstate workspace", "reinstate init")


@pytest.mark.slow
@pytest.mark.parametrize("step", ["9", "0"])
def test_capture_of_a_step_that_is_not_an_action(example: Workspace, cli: RunCli,
                                                  step: str) -> None:
    """Capturing a step that did no harm (a user input, or past the end) is refused."""
    incident_id = contained(example)
    before = tree(example.root)
    result = cli("capture", incident_id, "--run", "logs/2026-11-25-refund-agent.jsonl",
                 "--run-id", "run-7f3a97", "--step", step, cwd=example.root)
    _assert_one_clear_line(result, "2026-11-25-refund-agent.jsonl", f"step {step}")
    assert tree(example.root) == before


@pytest.mark.slow
def test_capture_from_a_truncated_log_names_the_line(example: Workspace, cli: RunCli) -> None:
    """A log cut off mid-line is reported with the line number."""
    incident_id = contained(example)
    log = example.root / "logs" / "cut.jsonl"
    lines = (example.root / "logs/2026-11-25-refund-agent.jsonl").read_text().splitlines()
    log.write_text("\n".join([*lines[:3], lines[3][:40]]) + "\n")
    before = tree(example.root)
    result = cli("capture", incident_id, "--run", "logs/cut.jsonl", cwd=example.root)
    _assert_one_clear_line(result, "logs/cut.jsonl:4", "not valid JSON")
    assert tree(example.root) == before
