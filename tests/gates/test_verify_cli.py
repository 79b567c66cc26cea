"""`reinstate verify`: what it cannot judge is never reported clean, and `--json` writes it all."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from gates import SIGNING_KEY_ENV, Workspace, generate_key_pair, record_change, record_finding
from regressions import LAYERS
from tests.conftest import RunCli, tree
from tests.helpers import ACTOR, captured, plant_key_thief, resolved, under_a_shell

# Each test runs verify (the eval suite against the agent), most in a child process.
pytestmark = pytest.mark.slow

SCHEMA = Path(__file__).parent.parent.parent / "schemas" / "verification.json"

Fix = Callable[[Workspace], list[str]]


def _one_permission_change(ws: Workspace, fixed: Fix) -> str:
    """The incident resolved by one permission change that addresses every finding."""
    incident_id = captured(ws)
    for layer in LAYERS:
        record_finding(ws, incident_id, layer=layer, gap=True, description=f"{layer} gap",
                       actor=ACTOR)
    fixed(ws)
    findings = [f.id for f in ws.incidents().load(incident_id).findings]
    record_change(ws, incident_id, layer="tool_permission_boundary", addresses=findings,
                  description="cap refunds and template emails", actor=ACTOR)
    return incident_id


def _valid(document: object) -> None:
    errors = list(Draft202012Validator(json.loads(SCHEMA.read_text())).iter_errors(document))
    assert errors == [], errors[0].message if errors else ""


def test_no_good_behaviour_makes_over_blocking_inconclusive(example: Workspace, fixed: Fix,
                                                            cli: RunCli) -> None:
    """Without an eval suite nothing good was replayed: over-blocking is inconclusive, exit 4."""
    incident_id = _one_permission_change(example, fixed)
    for case in (example.root / "evals" / "refund-agent").glob("*.yaml"):
        case.unlink()
    result = cli("verify", incident_id, "--json", "out/verification.json", cwd=example.root)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "1/1 changes verified; over-blocking inconclusive: the agent has no eval-suite " \
           "case, so no good behaviour was replayed → inconclusive" in result.stdout
    assert "over-blocked" not in result.stdout
    written = json.loads((example.root / "out" / "verification.json").read_text())
    _valid(written)
    assert written["outcome"] == "inconclusive"
    assert written["overblocking"]["status"] == "inconclusive"
    assert written["overblocking"]["good_runs"] == 0


def test_an_eval_suite_that_never_passes_replays_no_good_behaviour(
        example: Workspace, fixed: Fix, cli: RunCli) -> None:
    """When no eval-suite case passes, over-blocking is inconclusive and names the cases."""
    incident_id = _one_permission_change(example, fixed)
    cases = sorted((example.root / "evals" / "refund-agent").glob("*.yaml"))
    for path in cases:
        case = yaml.safe_load(path.read_text())
        case["expect"].append({"kind": "output_contains", "text": "words no agent says"})
        path.write_text(yaml.safe_dump(case, sort_keys=False))
    result = cli("verify", incident_id, "--json", "verification.json", cwd=example.root)
    assert result.returncode == 4, result.stdout + result.stderr
    assert (f"over-blocking inconclusive: none of its {len(cases)} eval-suite case(s) passed, "
            f"so no good behaviour was replayed → inconclusive") in result.stdout
    over = json.loads((example.root / "verification.json").read_text())["overblocking"]
    assert sorted(over["not_replayed"]) == sorted(p.stem for p in cases)


def test_an_errored_regression_case_is_an_error(example: Workspace, fixed: Fix,
                                                cli: RunCli) -> None:
    """A regression case the agent cannot run is shown as an error and exits 3."""
    incident_id = _one_permission_change(example, fixed)
    path = example.regressions_dir("refund-agent") / f"{incident_id}-1.yaml"
    case = yaml.safe_load(path.read_text())
    case["tools"] = []  # the agent's first lookup now has no fixture to answer it
    path.write_text(yaml.safe_dump(case, sort_keys=False))
    result = cli("verify", incident_id, "--json", "verification.json", cwd=example.root)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"• error: {incident_id}-1: could not run: MissingFixture(" in result.stdout
    assert "1 case(s) could not run → error" in result.stdout
    written = json.loads((example.root / "verification.json").read_text())
    assert written["outcome"] == "error"
    assert written["errors"][0].startswith(f"{incident_id}-1: could not run: MissingFixture(")
    assert written["overblocking"]["status"] == "pass"


def test_json_holds_the_whole_verification(example: Workspace, fixed: Fix,
                                           cli: RunCli) -> None:
    """--json writes every change with its replays, the over-blocking status and the
    control diffs, valid against schemas/verification.json."""
    incident_id = resolved(example, fixed)
    result = cli("verify", incident_id, "--json", "verification.json", cwd=example.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5/5 changes verified; 0 good behaviours over-blocked (" in result.stdout
    written = json.loads((example.root / "verification.json").read_text())
    _valid(written)
    assert next(iter(written)) == "schema_version"
    assert (written["incident"], written["agent"], written["outcome"]) == (
        incident_id, "refund-agent", "pass")
    assert [c["layer"] for c in written["changes"]] == [
        "tool_permission_boundary", "eval_coverage", "acceptance_criteria", "review_gate",
        "prompt"]
    permission = written["changes"][0]
    assert permission["verified"] is True
    assert permission["replays"][0]["before"] == "allow"
    assert permission["replays"][0]["after_rule"] == "permissions.tools.issue_refund.arguments"
    over = written["overblocking"]
    assert over["status"] == "pass" and over["good_runs"] > 0 and over["found"] == []
    assert sorted(written["control_diffs"]) == ["acceptance.yaml", "permissions.yaml",
                                                "review.yaml"]
    assert written["gaps"] == [] and written["errors"] == []
    assert (example.root / written["run_file"]).is_file()


def test_json_into_a_folder_is_refused_before_anything_runs(example: Workspace, fixed: Fix,
                                                            cli: RunCli) -> None:
    """--json naming a folder is one line and exit 2, and nothing is written."""
    incident_id = resolved(example, fixed)
    (example.root / "out").mkdir()
    before = tree(example.root)
    result = cli("verify", incident_id, "--json", "out", cwd=example.root)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "out: --json: expected a file to write, got a folder" in result.stderr
    assert tree(example.root) == before


@pytest.mark.attack
def test_verify_never_lets_an_agent_reach_the_signing_key(example: Workspace, fixed: Fix,
                                                          tmp_path: Path) -> None:
    """verify runs the agent: in a CI job whose environment holds $REINSTATE_SIGNING_KEY an
    in-process agent read it from verify's environment. The key now leaves it first and
    the agent, which could still read it from the process that started verify, is
    refused, exit 2, before it runs."""
    incident_id = _one_permission_change(example, fixed)
    stolen = tmp_path / "stolen.txt"
    plant_key_thief(example, stolen, in_process=True)
    pem = generate_key_pair(tmp_path / "keys")[0].read_text()
    result = under_a_shell(["verify", incident_id, "--trials", "1"], example.root, pem)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("agents/refund-agent/agent.yaml: $.adapter.isolation: expected isolation: process "
            f"while ${SIGNING_KEY_ENV} is set") in result.stderr
    assert not stolen.exists()
