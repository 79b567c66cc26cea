"""The ratchet against a git ref: a pull request gated from a fresh store cannot drop a case,
an incident or a baseline unless an approval is committed with it."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from evalsuite import InvalidInput
from gates import Workspace, approvals_path, approve_against, ratchet_against, run_gate
from gates._cli import main
from tests.conftest import tree
from tests.helpers import (
    GUARD,
    GUARD_WITH_HELPER,
    GUTTED_GUARD,
    GUTTED_HELPER,
    HELPER,
    STRICT_HELPER,
    commit_all,
    git,
    with_predicate_expectation,
)

AGENT = "refund-agent"
CASE = "regressions/refund-agent/INC-1-1.yaml"
ROOT = Path(__file__).parent.parent.parent


def edit_case(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the regression case's YAML in place."""
    path = root / CASE
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def drop_last_expectation(data: dict[str, Any]) -> None:
    """What a pull request loosening the case does: one expectation less."""
    data["expect"] = data["expect"][:-1]


def gate(root: Path, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """``reinstate gate refund-agent --new-store --against main`` as a CI job runs it: the
    exit code and the ratchet check."""
    out = tmp_path / "verdict.json"
    code = main(["-C", str(root), "--actor", "ci", "gate", AGENT, "--new-store", "--against",
                 "main", "--json", str(out), *extra])
    verdict = json.loads(out.read_text())
    return code, next(c for c in verdict["checks"] if c["name"] == "regression_ratchet")


@pytest.mark.slow
def test_untouched_pull_request_passes(repo: Path, tmp_path: Path) -> None:
    """A pull request that changes nothing in the regression set passes the gate."""
    code, ratchet = gate(repo, tmp_path)
    assert code == 0 and ratchet["outcome"] == "pass"
    assert ratchet["data"]["against"]["ref"] == "main"
    assert ratchet["data"]["against"]["commit"] == git(repo, "rev-parse", "main")


@pytest.mark.slow
@pytest.mark.attack
def test_dropping_an_expectation_fails_from_a_fresh_store(repo: Path, tmp_path: Path) -> None:
    """A committed pull request that drops an expectation fails the gate, naming the case."""
    edit_case(repo, drop_last_expectation)
    commit_all(repo, "loosen INC-1-1")
    code, ratchet = gate(repo, tmp_path)
    assert code == 1 and ratchet["outcome"] == "fail"
    assert ratchet["data"]["against"]["loosened"] == [{
        "case": "INC-1-1", "kind": "loosened",
        "what": "expectation acceptable-output-step-8 removed or changed"}]
    assert any(f.startswith("INC-1-1: expectation acceptable-output-step-8 removed or changed "
                            "since main") for f in ratchet["findings"])


@pytest.mark.slow
@pytest.mark.attack
def test_deleting_an_incident_its_baseline_and_its_case_fails(repo: Path,
                                                              tmp_path: Path) -> None:
    """Deleting the incident file, its baseline folder and its case fails naming each."""
    (repo / CASE).unlink()
    (repo / "incidents/INC-1.yaml").unlink()
    shutil.rmtree(repo / "incidents/INC-1.baseline")
    code, ratchet = gate(repo, tmp_path)
    assert code == 1
    assert ratchet["data"]["against"]["loosened"] == [
        {"case": "INC-1-1", "kind": "removed", "what": "removed from the regression set"},
        {"case": "INC-1", "kind": "incident-deleted",
         "what": "incident file incidents/INC-1.yaml deleted (or it no longer names "
                 "refund-agent)"},
        {"case": "INC-1", "kind": "baseline-changed",
         "what": "baseline folder incidents/INC-1.baseline/ deleted"},
    ]


@pytest.mark.slow
@pytest.mark.attack
def test_changing_a_baseline_file_fails(repo: Path, tmp_path: Path) -> None:
    """A baseline copy replaced by today's controls, its hash updated to match, fails."""
    baseline = repo / "incidents/INC-1.baseline/permissions.yaml"
    baseline.write_bytes((repo / "agents/refund-agent/permissions.yaml").read_bytes())
    incident_file = repo / "incidents/INC-1.yaml"
    incident = yaml.safe_load(incident_file.read_text())
    incident["containment"]["baseline"]["files"]["permissions.yaml"] = hashlib.sha256(
        baseline.read_bytes()).hexdigest()
    incident_file.write_text(yaml.safe_dump(incident, sort_keys=False))
    code, ratchet = gate(repo, tmp_path)
    assert code == 1
    assert ratchet["data"]["against"]["loosened"] == [{
        "case": "INC-1", "kind": "baseline-changed",
        "what": "baseline incidents/INC-1.baseline/permissions.yaml changed"}]


@pytest.mark.parametrize(("change", "what"), [
    (lambda root: edit_case(root, lambda d: d.update(threshold=0.5)),
     "threshold lowered from 1 to 0.5"),
    (lambda root: (root / "reinstate.toml").write_text(
        (root / "reinstate.toml").read_text().replace("trials = 3", "trials = 1")),
     "trials lowered from 3 to 1"),
], ids=["threshold", "default-trials"])
@pytest.mark.slow
@pytest.mark.attack
def test_lowering_the_bar_fails(repo: Path, tmp_path: Path, change: Callable[[Path], None],
                                what: str) -> None:
    """A lower threshold, or fewer default trials in reinstate.toml, fails the check."""
    assert "trials = 3" in (repo / "reinstate.toml").read_text()
    change(repo)
    code, ratchet = gate(repo, tmp_path)
    assert code == 1
    assert [f["what"] for f in ratchet["data"]["against"]["loosened"]] == [what]


@pytest.mark.slow
@pytest.mark.attack
def test_gate_trials_below_the_refs_fail(repo: Path, tmp_path: Path) -> None:
    """`gate --trials 1` runs a case that sets no trials for 1, below the 3 that
    reinstate.toml at the ref runs: a loosening, however it was asked for."""
    code, ratchet = gate(repo, tmp_path, "--trials", "1")
    assert code == 1
    assert ratchet["data"]["against"]["loosened"] == [
        {"case": "INC-1-1", "kind": "loosened", "what": "trials lowered from 3 to 1"}]
    assert ratchet["data"]["terms"]["INC-1-1"]["trials"] == 1  # a new store: what ran
    assert main(["-C", str(repo), "ratchet", "show", AGENT, "--against", "main"]) == 0
    assert main(["-C", str(repo), "--actor", "lead", "ratchet", "approve", AGENT, "INC-1-1",
                 "--against", "main", "--trials", "1", "--reason", "a smoke run"]) == 0
    assert gate(repo, tmp_path, "--trials", "1")[0] == 0


@pytest.mark.slow
@pytest.mark.attack
def test_a_predicate_gutted_since_the_ref_fails(repo: Path, tmp_path: Path) -> None:
    """A pull request that edits the predicate a regression expectation calls (to answer
    True) changes the case's terms: its code at the ref is what is compared, and only a
    committed approval of that code lets it pass."""
    with_predicate_expectation(repo)
    commit_all(repo, "INC-1-1: refunds go to the original payment method")
    git(repo, "branch", "-f", "main")  # merged: the ref holds the predicate
    assert gate(repo, tmp_path)[0] == 0
    shutil.rmtree(repo / ".reinstate")  # the pull request's CI job starts with no store
    (repo / GUARD).write_text(GUTTED_GUARD)
    commit_all(repo, "simplify the refund guard")
    code, ratchet = gate(repo, tmp_path)
    what = ("code of predicate guards.refunds:no_outside_refund changed (guards/refunds.py; "
            "code is not told tighter from looser, so any change needs an approval)")
    assert code == 1
    assert ratchet["data"]["against"]["loosened"] == [
        {"case": "INC-1-1", "kind": "loosened", "what": what}]
    assert main(["-C", str(repo), "ratchet", "show", AGENT, "--against", "main"]) == 1
    assert main(["-C", str(repo), "--actor", "lead", "ratchet", "approve", AGENT, "INC-1-1",
                 "--against", "main", "--reason", "rewritten; reviewed in #42"]) == 0
    assert gate(repo, tmp_path)[0] == 0


@pytest.mark.slow
@pytest.mark.attack
def test_a_helper_the_predicate_imports_gutted_since_the_ref_fails(repo: Path,
                                                                   tmp_path: Path) -> None:
    """A pull request that guts a helper the predicate imports from its package, leaving
    the predicate's own file as it was, changes the case's terms all the same."""
    with_predicate_expectation(repo)
    (repo / HELPER).write_text(STRICT_HELPER)
    (repo / GUARD).write_text(GUARD_WITH_HELPER)
    commit_all(repo, "INC-1-1: refunds go to the original payment method")
    git(repo, "branch", "-f", "main")  # merged: the ref holds the predicate and its helper
    assert gate(repo, tmp_path)[0] == 0
    shutil.rmtree(repo / ".reinstate")  # the pull request's CI job starts with no store
    (repo / HELPER).write_text(GUTTED_HELPER)
    commit_all(repo, "simplify the refund policy")
    code, ratchet = gate(repo, tmp_path)
    what = ("code that predicate guards.refunds:no_outside_refund may import changed (a file "
            "of [rules] predicate_modules; code is not told tighter from looser, so any "
            "change needs an approval)")
    assert code == 1
    assert ratchet["data"]["against"]["loosened"] == [
        {"case": "INC-1-1", "kind": "loosened", "what": what}]
    assert main(["-C", str(repo), "--actor", "lead", "ratchet", "approve", AGENT, "INC-1-1",
                 "--against", "main", "--reason", "rewritten; reviewed in #43"]) == 0
    assert gate(repo, tmp_path)[0] == 0


@pytest.mark.slow
def test_committed_approval_for_that_change_passes(repo: Path, tmp_path: Path) -> None:
    """An approval written by `ratchet approve --against` and committed lets the change pass."""
    edit_case(repo, lambda d: d.update(threshold=0.5))
    assert main(["-C", str(repo), "--actor", "lead", "ratchet", "show", AGENT,
                 "--against", "main"]) == 1
    assert main(["-C", str(repo), "--actor", "lead", "ratchet", "approve", AGENT, "INC-1-1",
                 "--against", "main", "--reason", "flaky at 1.0; see the postmortem"]) == 0
    assert main(["-C", str(repo), "ratchet", "show", AGENT, "--against", "main"]) == 0
    commit_all(repo, "lower INC-1-1's threshold, approved")
    approvals = yaml.safe_load(approvals_path(Workspace.find(repo), AGENT).read_text())
    schema = json.loads((ROOT / "schemas/ratchet-approvals.json").read_text())
    assert Draft202012Validator(schema).is_valid(approvals)
    assert list(approvals) == ["schema_version", "agent", "approvals"]
    assert [(a["case"], a["kind"], a["actor"]) for a in approvals["approvals"]] == [
        ("INC-1-1", "loosened", "lead")]
    code, ratchet = gate(repo, tmp_path)
    assert code == 0 and ratchet["outcome"] == "pass"
    assert ratchet["data"]["against"]["approved"][0]["why"] == "flaky at 1.0; see the postmortem"


@pytest.mark.slow
@pytest.mark.attack
def test_approval_bound_to_other_terms_does_not_count(repo: Path, tmp_path: Path) -> None:
    """An approval of threshold 0.5 does not cover a later threshold of 0.3."""
    edit_case(repo, lambda d: d.update(threshold=0.5))
    assert main(["-C", str(repo), "ratchet", "approve", AGENT, "INC-1-1", "--against", "main",
                 "--reason", "flaky"]) == 0
    edit_case(repo, lambda d: d.update(threshold=0.3))
    commit_all(repo, "lower it further")
    code, ratchet = gate(repo, tmp_path)
    assert code == 1
    assert [f["what"] for f in ratchet["data"]["against"]["loosened"]] == [
        "threshold lowered from 1 to 0.3"]


@pytest.mark.slow
@pytest.mark.attack
def test_an_approval_does_not_cover_an_expectation_added_later_and_removed(
        repo: Path, tmp_path: Path) -> None:
    """A lower threshold approved and merged; an expectation added and merged after it; a
    pull request removing that expectation brings the case back to exactly the terms the
    old approval names. Nobody approved that removal: it fails (it passed, the old entry of
    the approvals file listed as its approval)."""
    edit_case(repo, lambda d: d.update(threshold=0.5))
    assert main(["-C", str(repo), "ratchet", "approve", AGENT, "INC-1-1", "--against", "main",
                 "--reason", "flaky"]) == 0
    commit_all(repo, "lower INC-1-1's threshold, approved")
    approved = (repo / CASE).read_text()
    git(repo, "branch", "-f", "main", "HEAD")  # merged
    edit_case(repo, lambda d: d["expect"].append(
        {"id": "extra", "tool": "issue_refund", "kind": "tool_not_called"}))
    commit_all(repo, "one more expectation")
    git(repo, "branch", "-f", "main", "HEAD")  # merged
    (repo / CASE).write_text(approved)
    commit_all(repo, "drop the expectation again")
    code, ratchet = gate(repo, tmp_path)
    assert code == 1 and ratchet["outcome"] == "fail"
    assert [f["what"] for f in ratchet["data"]["against"]["loosened"]] == [
        "expectation extra removed or changed"]
    assert ratchet["data"]["against"]["approved"] == []


@pytest.mark.slow
def test_deleted_incident_approved_in_the_repository_passes(repo: Path,
                                                            tmp_path: Path) -> None:
    """Approving INC-1 and INC-1-1 covers the incident file, its baseline and its case."""
    (repo / CASE).unlink()
    (repo / "incidents/INC-1.yaml").unlink()
    shutil.rmtree(repo / "incidents/INC-1.baseline")
    for subject in ("INC-1", "INC-1-1"):
        assert main(["-C", str(repo), "ratchet", "approve", AGENT, subject, "--against", "main",
                     "--reason", "opened twice; INC-2 is the record"]) == 0
    code, ratchet = gate(repo, tmp_path)
    assert code == 0
    assert ratchet["outcome"] == "pass", ratchet["findings"]
    assert sorted(a["kind"] for a in ratchet["data"]["against"]["approved"]) == [
        "baseline-changed", "incident-deleted", "removed"]


@pytest.mark.parametrize(("ref", "expected"), [
    ("no-such-branch", "--against: unknown git ref 'no-such-branch'"),
    ("--exec=true", "--against: expected a git ref such as origin/main, got '--exec=true'"),
])
def test_bad_ref_is_exit_2_and_writes_nothing(repo: Path, ref: str, expected: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown ref, or one that reads as an option, is one line, exit 2, nothing written."""
    before = tree(repo)
    assert main(["-C", str(repo), "gate", AGENT, f"--against={ref}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {expected}") and "\n" not in err
    assert tree(repo) == before


def test_not_a_git_repository_is_exit_2(restored_template: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A workspace outside any git repository cannot be compared: exit 2, one line."""
    root = tmp_path / "ws"
    shutil.copytree(restored_template, root, ignore=shutil.ignore_patterns(".reinstate"))
    assert main(["-C", str(root), "gate", AGENT, "--against", "main"]) == 2
    err = capsys.readouterr().err
    assert "inside a git repository" in err and err.count("\n") == 1
    assert not (root / ".reinstate").exists()


def test_shallow_clone_says_to_fetch_the_ref(repo: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """In a shallow clone without the base commit, the error says how to fetch it."""
    edit_case(repo, lambda d: d.update(threshold=0.5))
    commit_all(repo, "loosen")
    base = git(repo, "rev-parse", "main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "pull-request",
        f"file://{repo}", str(clone))
    assert main(["-C", str(clone), "gate", AGENT, "--against", base]) == 2
    err = capsys.readouterr().err
    assert f"unknown git ref '{base}'" in err and "fetch-depth: 0" in err


def test_file_that_does_not_parse_at_the_ref_is_named(repo: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A case that is invalid at the ref is exit 2 naming REF:path, the line and the place."""
    git(repo, "switch", "-q", "main")
    edit_case(repo, lambda d: d.update(threshold="high"))
    commit_all(repo, "a bad case on main")
    git(repo, "switch", "-q", "pull-request")
    before = tree(repo)
    assert main(["-C", str(repo), "gate", AGENT, "--against", "main"]) == 2
    err = capsys.readouterr().err
    assert f"main:{CASE}:" in err and "$.threshold" in err
    assert tree(repo) == before


@pytest.mark.slow
def test_workspace_in_a_repository_subfolder(restored_template: Path, tmp_path: Path) -> None:
    """A workspace below the repository's top is compared at its own path."""
    top = tmp_path / "monorepo"
    root = top / "services" / "refunds"
    shutil.copytree(restored_template, root, ignore=shutil.ignore_patterns(".reinstate"))
    (top / "README.md").write_text("other services live here\n")
    git(top, "init", "-q", "-b", "main")
    commit_all(top, "base")
    ws = Workspace.find(root)
    assert ratchet_against(ws, AGENT, "main") == []
    (root / CASE).unlink()
    (root / "incidents/INC-1.yaml").unlink()
    found = ratchet_against(ws, AGENT, "main")
    assert [(f.case, f.kind) for f in found] == [("INC-1-1", "removed"),
                                                 ("INC-1", "incident-deleted")]
    verdict = run_gate(ws, AGENT, actor="ci", against="HEAD", new_store=True)
    ratchet = next(c for c in verdict.checks if c.name == "regression_ratchet")
    assert verdict.outcome == "fail" and ratchet.outcome == "fail"


def test_approve_without_a_change_is_refused(repo: Path) -> None:
    """Approving a case that lost nothing since the ref is an error and writes no file."""
    with pytest.raises(InvalidInput, match="INC-1-1 lost nothing since main"):
        approve_against(Workspace.find(repo), AGENT, "INC-1-1", reason="why not",
                        actor="lead", ref="main")
    assert not approvals_path(Workspace.find(repo), AGENT).exists()


def test_invalid_approvals_file_is_exit_2(repo: Path, capsys: pytest.CaptureFixture[str],
                                          ) -> None:
    """An approvals file that does not validate stops the gate naming its line and place."""
    path = approvals_path(Workspace.find(repo), AGENT)
    path.write_text("schema_version: 1\nagent: refund-agent\napprovals:\n"
                    "- case: INC-1-1\n  kind: loosened-a-bit\n")
    assert main(["-C", str(repo), "gate", AGENT, "--against", "main"]) == 2
    err = capsys.readouterr().err
    assert "refund-agent.ratchet-approvals.yaml:5" in err and "$.approvals[0].kind" in err
    assert not (repo / ".reinstate").exists()


def test_git_missing_is_exit_2(repo: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """Without git on PATH, --against cannot be checked: one line, exit 2, nothing written."""
    monkeypatch.setenv("PATH", str(repo / "no-such-folder"))
    before = tree(repo)
    assert main(["-C", str(repo), "ratchet", "show", AGENT, "--against", "main"]) == 2
    assert "expected the git command on PATH" in capsys.readouterr().err
    assert tree(repo) == before


def _deleted_with_approval_then_opened_again(repo: Path) -> None:
    """INC-1, its baseline and its case deleted with approvals, merged into main; then a
    new incident opened, contained and captured (ids are the next free number: INC-1 and
    INC-1-1 again), merged into main too."""
    from tests.helpers import captured

    (repo / CASE).unlink()
    (repo / "incidents/INC-1.yaml").unlink()
    shutil.rmtree(repo / "incidents/INC-1.baseline")
    for subject in ("INC-1", "INC-1-1"):
        assert main(["-C", str(repo), "ratchet", "approve", AGENT, subject, "--against", "main",
                     "--reason", "opened by mistake"]) == 0
    commit_all(repo, "drop INC-1, approved")
    git(repo, "branch", "-f", "main", "HEAD")
    assert captured(Workspace.find(repo)) == "INC-1"
    assert (repo / CASE).exists()
    commit_all(repo, "INC-1: a new harm")
    git(repo, "branch", "-f", "main", "HEAD")


@pytest.mark.slow
@pytest.mark.attack
def test_an_approval_does_not_cover_the_same_change_to_a_reused_id(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The approvals of deleting INC-1, its baseline and INC-1-1 stay in the approvals file
    after the merge. The new incident that got the same ids is deleted the same way in a
    later pull request: the old approvals were given for other files, so `ratchet show
    --against main` lists all three as not approved (exit 1)."""
    _deleted_with_approval_then_opened_again(repo)
    (repo / CASE).unlink()
    (repo / "incidents/INC-1.yaml").unlink()
    shutil.rmtree(repo / "incidents/INC-1.baseline")
    capsys.readouterr()
    assert main(["-C", str(repo), "ratchet", "show", AGENT, "--against", "main"]) == 1
    out = capsys.readouterr().out
    assert out.count("not approved") == 3, out
    assert "approved INC-1" not in out.replace("not approved", "")
