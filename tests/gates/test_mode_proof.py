"""The mode a platform reads is the mode the guard enforces: controls edited after the
agent's last passing gate read ``review`` in ``reinstate mode``, ``agent_mode()`` and the
OpenFeature provider, as the runtime guard holds them (``controls.unproven``), and ``full``
again once put back as gated. A deploy job or feature flag reading ``full`` would run the
agent without review wherever the guard is not in the path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite import ToolCall
from gates import Guard, Workspace, agent_mode, mode_reading, run_gate
from gates._controls.files import CONTROL_FILES
from gates._store import mode_light
from reinstate.openfeature import ReinstateProvider
from tests.conftest import RunCli
from tests.helpers import proven

AGENT = "refund-agent"
PERMISSIONS = "agents/refund-agent/permissions.yaml"
RULE = ("    deny_when:\n      - id: refund-exceeds-order-total\n",
        "double(s.result.total))\n")


def without_the_total_rule(ws: Workspace) -> str:
    """Delete the ``deny_when`` block (refund-exceeds-order-total) from permissions.yaml
    with a plain file write; the text before."""
    permissions = ws.root / PERMISSIONS
    text = permissions.read_text()
    start = text.index(RULE[0])
    end = text.index(RULE[1], start) + len(RULE[1])
    permissions.write_text(text[:start] + text[end:])
    return text


def guard_rule(ws: Workspace, tmp_path: Path) -> str:
    """The rule the runtime guard decides a plain order lookup by."""
    guard = Guard(ws.root, AGENT, log=tmp_path / "guard.jsonl")
    return guard.decide(ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"})).rule


def test_the_light_reads_control_files_are_the_controls() -> None:
    """The files a remembered proof is keyed by are the four control files."""
    assert mode_light.CONTROL_FILES == CONTROL_FILES


@pytest.mark.attack
@pytest.mark.slow
def test_mode_reads_review_when_a_rule_was_deleted_after_the_gate(
        back_in_full: Workspace, cli: RunCli, tmp_path: Path) -> None:
    """Restored, read once (so the light read has all it remembers), then a rule deleted
    from permissions.yaml: `reinstate mode` printed `full` while the guard sent every call
    to a person. It prints `review` now, the file and the fix on stderr, exit 3, and each
    later read (light or full) says the same."""
    first = cli("mode", AGENT, cwd=back_in_full.root)
    assert (first.returncode, first.stdout) == (0, "full\n"), first.stderr
    without_the_total_rule(back_in_full)
    for _ in range(2):
        done = cli("mode", AGENT, cwd=back_in_full.root)
        assert (done.returncode, done.stdout) == (3, "review\n"), done.stderr
        assert PERMISSIONS in done.stderr and "differ from its last passing verdict" in done.stderr
        assert f"reinstate gate {AGENT}" in done.stderr
    as_json = json.loads(cli("mode", AGENT, "--json", cwd=back_in_full.root).stdout)
    assert as_json["mode"] == "review" and PERMISSIONS in as_json["reason"]
    assert guard_rule(back_in_full, tmp_path) == "controls.unproven"
    # `check` refuses, naming the same file, and reads the mode `mode` reads.
    check = cli("check", AGENT, "--json", cwd=back_in_full.root)
    answer = json.loads(check.stdout)
    assert check.returncode == 1 and not answer["cleared"] and answer["mode"] == "review"
    assert any(f"`reinstate mode {AGENT}` reads review" in r and PERMISSIONS in r
               for r in answer["reasons"]), answer["reasons"]


@pytest.mark.attack
def test_agent_mode_reads_review_when_a_rule_was_deleted_after_the_gate(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """`agent_mode()` answered `full` on the edited controls, read light or in full."""
    assert agent_mode(AGENT, back_in_full.root) == "full"  # remembers what the light read needs
    without_the_total_rule(back_in_full)
    assert agent_mode(AGENT, back_in_full.root) == "review"
    assert agent_mode(AGENT, back_in_full.root) == "review"
    reading = mode_reading(AGENT, back_in_full.root)
    assert reading.mode == "review" and not reading.failed_closed
    assert reading.degraded is not None and PERMISSIONS in reading.degraded
    assert guard_rule(back_in_full, tmp_path) == "controls.unproven"


@pytest.mark.attack
def test_the_openfeature_flag_reads_review_when_a_rule_was_deleted_after_the_gate(
        back_in_full: Workspace) -> None:
    """The OpenFeature provider resolved `reinstate.mode.<agent>` to `full` (and
    `reinstate.full.<agent>` to true) on the edited controls."""
    provider = ReinstateProvider(back_in_full.root, cache_s=0)
    assert provider.resolve_string_details(f"reinstate.mode.{AGENT}", "suspended").value == "full"
    without_the_total_rule(back_in_full)
    mode = provider.resolve_string_details(f"reinstate.mode.{AGENT}", "suspended")
    full = provider.resolve_boolean_details(f"reinstate.full.{AGENT}", False)
    assert (mode.value, mode.variant, full.value) == ("review", "review", False)
    assert mode.error_code is None  # a mode, not a failure to read one
    assert PERMISSIONS in str(mode.flag_metadata["reason"])


@pytest.mark.attack
@pytest.mark.slow
def test_controls_put_back_as_gated_read_full_again(
        back_in_full: Workspace, cli: RunCli) -> None:
    """The rule put back (with a comment, which changes nothing a control says) is the gated
    controls again: `full` everywhere, with no new gate, and `check` clears."""
    permissions = back_in_full.root / PERMISSIONS
    gated = without_the_total_rule(back_in_full)
    assert agent_mode(AGENT, back_in_full.root) == "review"
    permissions.write_text(gated + "# reviewed again\n")
    for _ in range(2):  # the full read, then the light one it remembered for
        done = cli("mode", AGENT, cwd=back_in_full.root)
        assert (done.returncode, done.stdout, done.stderr) == (0, "full\n", "")
    assert agent_mode(AGENT, back_in_full.root) == "full"
    provider = ReinstateProvider(back_in_full.root, cache_s=0)
    assert provider.resolve_string_details(f"reinstate.mode.{AGENT}", "suspended").value == "full"
    assert cli("check", AGENT, cwd=back_in_full.root).returncode == 0


@pytest.mark.attack
def test_a_remembered_proof_does_not_vouch_for_other_controls(
        back_in_full: Workspace) -> None:
    """The light read answers `full` only for the very control bytes a full read proved:
    each edit, each put-back, each new gate is read again."""
    permissions = back_in_full.root / PERMISSIONS
    for _ in range(2):
        assert agent_mode(AGENT, back_in_full.root) == "full"
    gated = permissions.read_text()
    permissions.write_text(gated.replace("maximum: 500}", "maximum: 5000}"))
    assert mode_light.light_reading(AGENT, back_in_full.root) is None
    assert agent_mode(AGENT, back_in_full.root) == "review"
    assert agent_mode(AGENT, back_in_full.root) == "review"
    proven(back_in_full)  # the loosening approved, and gated as edited
    assert agent_mode(AGENT, back_in_full.root) == "full"
    permissions.write_text(gated)  # the earlier controls: the newer pass is not on them
    assert agent_mode(AGENT, back_in_full.root) == "full"  # an older pass after containment


def test_an_agent_never_gated_reads_its_mode_as_before(
        example: Workspace, cli: RunCli, tmp_path: Path) -> None:
    """No passing verdict (its only gate failed) and no containment: nothing proven to hold
    to, so the controls as they are read `full`, as the guard runs them."""
    permissions = example.root / PERMISSIONS
    text = permissions.read_text()
    old = "amount: {type: number, exclusiveMinimum: 0}"
    assert text.count(old) == 1
    permissions.write_text(text.replace(old, old[:-1] + ", maximum: 30}"))
    assert not run_gate(example, AGENT, actor="ci")
    assert agent_mode(AGENT, example.root) == "full"
    assert agent_mode(AGENT, example.root) == "full"
    done = cli("mode", AGENT, cwd=example.root)
    assert (done.returncode, done.stdout, done.stderr) == (0, "full\n", "")
    assert guard_rule(example, tmp_path) != "controls.unproven"
