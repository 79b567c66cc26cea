"""The ratchet on the controls: a control rule the last gate held the agent to cannot be
dropped or loosened and still gate green, unless an approval is on record.

The fixed demo agent no longer attempts what some of its rules stop, and other rules stop
the recorded harm too, so before the ratchet held the controls, deleting the order-total
rule (or widening where refunds may go) passed every other check."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from evalsuite import InvalidInput
from gates import RegressionRatchetResult, StoreUnavailable, Workspace, ratchet_status, run_gate
from gates._cli import main
from tests.gates.test_guard_proof import PAST_TOTAL_RULE, edit, without_the_total_rule
from tests.gates.test_ratchet_git import gate
from tests.helpers import commit_all, git

pytestmark = [pytest.mark.slow]

AGENT = "refund-agent"
RunCli = Callable[..., "object"]


def _ratchet(ws: Workspace) -> tuple[bool, RegressionRatchetResult]:
    verdict = run_gate(Workspace.find(ws.root), AGENT, actor="ci")
    result = verdict.result(RegressionRatchetResult)
    assert result is not None and result.data is not None
    return bool(verdict), result


def _permissions(ws: Workspace) -> Path:
    return ws.agent_dir(AGENT) / "permissions.yaml"


@pytest.mark.attack
def test_a_rule_taken_out_fails_the_gate_until_approved(back_in_full: Workspace,
                                                        cli: RunCli) -> None:
    """The order-total rule deleted: every other check still passes, the ratchet fails by
    the rule's path, again at the next gate (the old rule is held), and passes once an
    approval is on record; the gate after that holds the controls without it."""
    without_the_total_rule(back_in_full)
    for _ in range(2):  # an unapproved loosening keeps the old rule: every gate fails
        passed, result = _ratchet(back_in_full)
        assert not passed and result.outcome == "fail"
        assert [f.split(":")[0] for f in result.findings] == [PAST_TOTAL_RULE]
        assert "removed from the controls" in result.findings[0]
        assert f"reinstate ratchet approve {AGENT} {PAST_TOTAL_RULE}" in result.findings[0]
        assert result.data is not None and result.data.control_terms is not None
        assert PAST_TOTAL_RULE in result.data.control_terms
    shown = cli("ratchet", "show", AGENT, cwd=back_in_full.root)
    assert shown.returncode == 1 and PAST_TOTAL_RULE in shown.stdout, shown
    approved = cli("ratchet", "approve", AGENT, PAST_TOTAL_RULE, "--reason",
                   "refunds over $150 go to a person", cwd=back_in_full.root)
    assert approved.returncode == 0, approved.stderr
    passed, result = _ratchet(back_in_full)
    assert passed and [a.case for a in result.data.approved] == [PAST_TOTAL_RULE]
    assert result.data.control_terms is not None
    assert PAST_TOTAL_RULE not in result.data.control_terms
    passed, result = _ratchet(back_in_full)
    assert passed and result.findings == [] and result.data.approved == []


@pytest.mark.attack
def test_refunds_widened_with_their_review_rule_fail_the_gate(back_in_full: Workspace) -> None:
    """Refunds to any account, and the review rule for large refunds taken out: the recorded
    harm is still denied (it is over $500), so only the ratchet sees it. The argument
    schema's change is one no recorded step tells apart: the gate cannot show it is not
    looser."""
    permissions = _permissions(back_in_full)
    edit(permissions, "        refund_to: {const: original_payment_method}\n",
         "        refund_to: {type: string}\n")
    text = permissions.read_text()
    start = text.index("    review_when:\n      - id: large-refund\n")
    end = text.index("  close_account:\n")
    permissions.write_text(text[:start] + text[end:])
    passed, result = _ratchet(back_in_full)
    assert not passed and result.outcome == "fail"
    found = dict(f.split(": ", 1) for f in result.findings)
    assert sorted(found) == ["permissions.tools.issue_refund.arguments",
                             "permissions.tools.issue_refund.review_when.large-refund"]
    assert found["permissions.tools.issue_refund.review_when.large-refund"].startswith(
        "removed from the controls")
    assert "no step of a regression case's recorded run is stopped by it now" in found[
        "permissions.tools.issue_refund.arguments"]


@pytest.mark.attack
def test_a_review_rule_changed_to_let_the_recorded_harm_through(back_in_full: Workspace) -> None:
    """The large-refund review rule raised from $150 to $5,000: the recorded $1,250 refund
    no longer goes to a person under that rule. The change is a loosening, with the call as
    the example."""
    edit(_permissions(back_in_full), "amount: {exclusiveMinimum: 150}",
         "amount: {exclusiveMinimum: 5000}")
    found, _ = ratchet_status(back_in_full, AGENT)
    assert [f.case for f in found] == ["permissions.tools.issue_refund.review_when.large-refund"]
    assert "lets through 1 recorded step(s) it stopped before" in found[0].what
    assert "review before, allow now" in found[0].what


@pytest.mark.attack
def test_a_tool_newly_allowed_or_rated_less_risky_is_a_loosening(
        back_in_full: Workspace) -> None:
    """A tool the controls never had, now allowed, and a critical tool rated low (review
    rules route on risk): both loosen; a tool denied outright tightens and is taken, and
    so does taking out a rule of it."""
    permissions = _permissions(back_in_full)
    edit(permissions, "    risk: critical\n", "    risk: low\n")
    # Denied outright: its rules no longer matter, so taking them out loosens nothing.
    edit(permissions, "  issue_refund:\n    allowed: true\n",
         "  issue_refund:\n    allowed: false\n")
    without_the_total_rule(back_in_full)
    permissions.write_text(permissions.read_text() + (
        "  wire_transfer:\n    allowed: true\n    risk: high\n"
        "    description: Send money to any account.\n"))
    found, memory = ratchet_status(back_in_full, AGENT)
    assert {f.case: f.what for f in found} == {
        "permissions.tools.close_account.risk": "tool close_account rated low, was critical",
        "permissions.tools.wire_transfer.allowed": "tool wire_transfer newly allowed",
    }
    assert memory.control_terms is not None
    # Held as it was until approved: the next gate still sees the tool as new.
    assert memory.control_terms["permissions.tools.wire_transfer.allowed"].rule == {
        "allowed": False}
    assert memory.control_terms["permissions.tools.close_account.risk"].rule == {
        "risk": "critical"}


def test_added_rules_and_comments_pass_the_ratchet(back_in_full: Workspace) -> None:
    """What only adds (a new review condition) or changes no rule (a comment, a
    description) passes the ratchet as it is."""
    permissions = _permissions(back_in_full)
    edit(permissions, "        description: Refunds over $150 are confirmed by a person.\n",
         "        description: Over $150, a person confirms.\n")
    edit(permissions, "  close_account:\n", "      - id: any-reason\n"
         "        expression: has(args.reason)\n  close_account:\n")
    permissions.write_text("# reviewed again\n" + permissions.read_text())
    passed, result = _ratchet(back_in_full)
    assert result.outcome == "pass" and result.findings == [], result.findings
    assert result.data.control_terms is not None
    assert "permissions.tools.issue_refund.review_when.any-reason" in result.data.control_terms
    assert passed


@pytest.mark.attack
def test_held_rules_edited_in_the_stored_verdict_are_refused(back_in_full: Workspace) -> None:
    """The order-total rule dropped from the last verdict's memory in the store, then from
    permissions.yaml: the audit log does not vouch for the edited verdict, so the ratchet
    errs (exit 3) rather than forget the rule."""
    with sqlite3.connect(back_in_full.state_path) as conn:
        (seq, body), = conn.execute("SELECT id, body FROM verdicts ORDER BY id DESC LIMIT 1")
        data = json.loads(body)
        ratchet = next(c for c in data["checks"] if c["name"] == "regression_ratchet")
        del ratchet["data"]["control_terms"][PAST_TOTAL_RULE]
        conn.execute("UPDATE verdicts SET body = ? WHERE id = ?",
                     (json.dumps(data, separators=(",", ":")), seq))
    conn.close()
    without_the_total_rule(back_in_full)
    with pytest.raises(StoreUnavailable, match="changed behind the log"):
        ratchet_status(back_in_full, AGENT)


@pytest.mark.attack
def test_a_pull_request_dropping_a_rule_fails_from_a_fresh_store(repo: Path,
                                                                 tmp_path: Path) -> None:
    """A CI job starts from no store: git is the memory. A pull request taking the
    order-total rule out fails the gate against main, and passes once the approval written
    by `ratchet approve --against` is committed with it."""
    without_the_total_rule(Workspace.find(repo))
    commit_all(repo, "drop the order-total rule")
    code, ratchet = gate(repo, tmp_path)
    assert code == 1 and ratchet["outcome"] == "fail"
    assert ratchet["data"]["against"]["loosened"] == [{
        "case": PAST_TOTAL_RULE, "kind": "removed", "what": "removed from the controls"}]
    assert main(["-C", str(repo), "--actor", "lead", "ratchet", "approve", AGENT,
                 PAST_TOTAL_RULE, "--against", "main", "--reason",
                 "refunds over $150 go to a person"]) == 0
    commit_all(repo, "approved")
    code, ratchet = gate(repo, tmp_path)
    assert code == 0 and ratchet["outcome"] == "pass"
    assert [a["case"] for a in ratchet["data"]["against"]["approved"]] == [PAST_TOTAL_RULE]


@pytest.mark.attack
def test_what_only_the_agents_own_runs_show_tighter_is_not_taken(back_in_full: Workspace,
                                                                 ) -> None:
    """Refunds capped at $50 instead of $500: the recorded harm ($1,250) is denied either
    way, and only the agent's own eval runs (an $84.99 refund) are stopped now and were
    not before. The agent under test chooses what those runs do, so they never show a
    change tighter: it needs an approval."""
    edit(_permissions(back_in_full), "exclusiveMinimum: 0, maximum: 500}",
         "exclusiveMinimum: 0, maximum: 50}")
    _, result = _ratchet(back_in_full)
    assert result.outcome == "fail"
    assert [f.split(": ")[0] for f in result.findings] == [
        "permissions.tools.issue_refund.arguments"]


_DENY_WHEN = "    deny_when:\n      - id: refund-exceeds-order-total\n"


@pytest.mark.attack
@pytest.mark.parametrize("planted", [
    # A condition with the id ``allowed``: its path ends in ``.allowed``, as a tool's does.
    ("deny_when", _DENY_WHEN, "    deny_when:\n      - id: allowed\n        expression: 'false'\n"
                              "      - id: refund-exceeds-order-total\n"),
    # A denied tool whose dotted name spells issue_refund's deny_when list.
    ("tool", "  close_account:\n", "  issue_refund.deny_when:\n    allowed: false\n"
                                   "    risk: low\n  close_account:\n"),
])
def test_a_rule_is_not_taken_for_one_of_a_denied_tool(back_in_full: Workspace,
                                                      planted: tuple[str, str, str]) -> None:
    """A first gate takes in something harmless whose path spells a denied tool
    ``issue_refund.deny_when``; the next takes out the order-total rule. Its path starts
    like that tool's rules, but it is issue_refund's rule, and issue_refund is allowed:
    the removal fails the gate."""
    _, old, new = planted
    edit(_permissions(back_in_full), old, new)
    passed, result = _ratchet(back_in_full)
    assert passed and result.findings == [], result.findings
    text = _permissions(back_in_full).read_text()  # issue_refund's deny_when list taken out
    start = text.index("    deny_when:\n")
    _permissions(back_in_full).write_text(
        text[:start] + text[text.index("    review_when:\n      - id: large-refund"):])
    passed, result = _ratchet(back_in_full)
    assert not passed and result.outcome == "fail"
    assert PAST_TOTAL_RULE in [f.split(": ")[0] for f in result.findings]
    assert result.data.control_terms is not None
    assert PAST_TOTAL_RULE in result.data.control_terms


@pytest.mark.attack
def test_two_rules_at_one_path_are_refused(back_in_full: Workspace, cli: RunCli) -> None:
    """A second condition given the order-total rule's id: the memory keeps one rule per
    path, so the other would be held by no gate and could be taken out unseen. The gate
    refuses the controls as bad input (exit 2), naming the file and the path."""
    edit(_permissions(back_in_full), _DENY_WHEN, _DENY_WHEN
         + "        expression: args.refund_to != 'original_payment_method'\n"
         + "      - id: refund-exceeds-order-total\n")
    gated = cli("gate", AGENT, cwd=back_in_full.root)
    assert gated.returncode == 2, gated
    assert "permissions.yaml" in gated.stderr and "one rule per path" in gated.stderr
    assert PAST_TOTAL_RULE in gated.stderr
    with pytest.raises(InvalidInput, match="one rule per path"):
        ratchet_status(back_in_full, AGENT)



@pytest.mark.attack
def test_allowing_a_tool_again_is_approved_for_its_rules_as_they_were(
        back_in_full: Workspace, cli: RunCli) -> None:
    """close_account denied, allowed again with an approval, denied again while its
    review rule (a person confirms every closure) is taken out, then allowed again: the
    old approval was for the tool with that rule, so it does not cover this one."""
    permissions = _permissions(back_in_full)
    closure = ("    review_when:\n      - id: every-closure\n        description: Account "
               "closure cannot be undone; a person confirms every one.\n"
               "        arguments: {type: object}\n")
    allowed = "    allowed: true\n    risk: critical\n"
    denied = "    allowed: false\n    risk: critical\n"
    edit(permissions, allowed, denied)
    assert _ratchet(back_in_full)[1].findings == []
    edit(permissions, denied, allowed)
    approved = cli("ratchet", "approve", AGENT, "permissions.tools.close_account.allowed",
                   "--reason", "closures are back, each confirmed by a person",
                   cwd=back_in_full.root)
    assert approved.returncode == 0, approved.stderr
    _, result = _ratchet(back_in_full)
    assert result.outcome == "pass" and [a.case for a in result.data.approved] == [
        "permissions.tools.close_account.allowed"]
    edit(permissions, allowed + "    description: Close a customer account and erase its "
         "saved payment methods.\n" + closure, denied)
    assert _ratchet(back_in_full)[1].findings == []  # denied: its rules no longer matter
    edit(permissions, denied, allowed)
    _, result = _ratchet(back_in_full)
    assert result.outcome == "fail" and result.data.approved == []
    assert [f.split(": ")[0] for f in result.findings] == [
        "permissions.tools.close_account.allowed"]


def test_a_reordered_set_in_an_argument_schema_is_no_change(back_in_full: Workspace) -> None:
    """``required`` and ``enum`` listed in another order decide every call as before: no
    approval is asked. A value added to the ``enum`` (a template the agent may now send)
    is still a change the gate cannot show is not looser."""
    permissions = _permissions(back_in_full)
    edit(permissions, "required: [order_id, amount, refund_to]",
         "required: [refund_to, amount, order_id]")
    edit(permissions, "{enum: [refund_confirmation, order_status, ticket_update]}",
         "{enum: [ticket_update, refund_confirmation, order_status]}")
    passed, result = _ratchet(back_in_full)
    assert passed and result.findings == [], result.findings
    edit(permissions, "{enum: [ticket_update, refund_confirmation, order_status]}",
         "{enum: [ticket_update, refund_confirmation, order_status, free_text]}")
    _, result = _ratchet(back_in_full)
    assert [f.split(": ")[0] for f in result.findings] == [
        "permissions.tools.send_email.arguments"]


@pytest.mark.attack
def test_true_for_one_in_a_reordered_enum_is_a_change(back_in_full: Workspace) -> None:
    """A review condition on ``expedite: {enum: [true, "yes"]}`` rewritten as ``enum:
    ["yes", 1]``: reordered, and true == 1 to Python, but a refund with ``expedite: true``
    no longer goes to a person. It is a change, never a reordering."""
    edit(_permissions(back_in_full), "  close_account:\n", "      - id: expedited\n"
         "        arguments:\n          type: object\n          required: [expedite]\n"
         "          properties:\n            expedite: {enum: [true, \"yes\"]}\n"
         "  close_account:\n")
    _, result = _ratchet(back_in_full)
    assert result.findings == [], result.findings
    edit(_permissions(back_in_full), '{enum: [true, "yes"]}', '{enum: ["yes", 1]}')
    _, result = _ratchet(back_in_full)
    assert [f.split(": ")[0] for f in result.findings] == [
        "permissions.tools.issue_refund.review_when.expedited"]


@pytest.mark.attack
def test_a_tool_allowed_after_a_gate_that_held_no_rule_is_newly_allowed(
        tmp_path: Path) -> None:
    """An agent gated with no control rule at all (no tool, criterion or review rule):
    that memory is one, not none. A tool allowed after it is newly allowed and needs an
    approval, as after any other gate."""
    root = tmp_path / "ws"
    assert main(["init", str(root), "--agent", "bot"]) == 0
    agent = root / "agents" / "bot"
    permissions = (agent / "permissions.yaml").read_text()
    (agent / "permissions.yaml").write_text("schema_version: 1\nagent: bot\ntools: {}\n")
    (agent / "acceptance.yaml").write_text("schema_version: 1\nagent: bot\ncriteria: []\n")
    question = root / "evals" / "bot" / "example-question.yaml"
    text = question.read_text()
    text = text[:text.index("tools:")] + text[text.index("expect:"):]
    question.write_text(text.replace("  - kind: tool_called\n    tool: search_docs\n", ""))
    verdict = run_gate(Workspace.find(root), "bot", actor="ci")
    result = verdict.result(RegressionRatchetResult)
    assert result is not None and result.data is not None
    assert result.data.control_terms == {}
    (agent / "permissions.yaml").write_text(permissions)
    found, memory = ratchet_status(Workspace.find(root), "bot")
    assert [(f.case, f.what) for f in found] == [
        ("permissions.tools.search_docs.allowed", "tool search_docs newly allowed")]
    assert memory.control_terms is not None
    assert memory.control_terms["permissions.tools.search_docs.allowed"].rule == {
        "allowed": False}


@pytest.mark.attack
def test_a_condition_replaced_by_a_tool_at_its_path_is_removed(back_in_full: Workspace,
                                                               ) -> None:
    """A condition with the id ``allowed`` is held; the next change takes it out and puts
    a denied tool ``issue_refund.deny_when`` in its place, whose ``allowed`` rule has the
    very same path. That is the condition removed, not a tool's allowance tightened."""
    edit(_permissions(back_in_full), _DENY_WHEN, "    deny_when:\n      - id: allowed\n"
         "        expression: double(args.amount) > 400.0\n"
         "      - id: refund-exceeds-order-total\n")
    passed, result = _ratchet(back_in_full)
    assert passed and result.findings == [], result.findings
    edit(_permissions(back_in_full), "      - id: allowed\n"
         "        expression: double(args.amount) > 400.0\n", "")
    edit(_permissions(back_in_full), "  close_account:\n", "  issue_refund.deny_when:\n"
         "    allowed: false\n    risk: low\n  close_account:\n")
    passed, result = _ratchet(back_in_full)
    assert not passed
    found = dict(f.split(": ", 1) for f in result.findings)
    assert found["permissions.tools.issue_refund.deny_when.allowed"].startswith(
        "removed from the controls")


def test_two_rules_at_one_path_at_the_ref_name_the_file_there(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main holds two conditions with one id; the pull request does not. The gate against
    main cannot hold both (exit 2), and names main's file, not the working tree's."""
    git(repo, "switch", "-q", "main")
    edit(_permissions(Workspace.find(repo)), _DENY_WHEN, _DENY_WHEN
         + "        expression: args.refund_to != 'original_payment_method'\n"
         + "      - id: refund-exceeds-order-total\n")
    commit_all(repo, "two rules with one id")
    git(repo, "switch", "-q", "pull-request")
    code = main(["-C", str(repo), "--actor", "ci", "gate", AGENT, "--new-store",
                 "--against", "main"])
    assert code == 2
    err = capsys.readouterr().err
    assert "main:agents/refund-agent/permissions.yaml" in err and "one rule per path" in err


def _with_a_120_refund_case(ws: Workspace) -> None:
    """A regression case written by hand: INC-1-1 with the recorded refund at $120."""
    cases = ws.regressions_dir(AGENT)
    text = (cases / "INC-1-1.yaml").read_text()
    assert text.startswith("id: INC-1-1\n") or "\nid: INC-1-1\n" in text
    (cases / "by-hand-1.yaml").write_text(
        text.replace("id: INC-1-1\n", "id: by-hand-1\n", 1).replace("1250.0", "120.0"))


@pytest.mark.attack
def test_a_case_written_by_hand_beside_the_change_does_not_vouch_for_it(
        back_in_full: Workspace) -> None:
    """The large-refund review bound moved from $150 to $100, with a case written by hand
    in the same change whose recorded $120 refund the new bound reviews and the old did
    not. Nothing vouches for that case (no incident records it captured, no gate held it),
    so it does not show the change tighter: an approval is needed. Once a gate has held
    the case, it does."""
    _with_a_120_refund_case(back_in_full)
    bound = "amount: {exclusiveMinimum: 150}"
    edit(_permissions(back_in_full), bound, "amount: {exclusiveMinimum: 100}")
    found, _ = ratchet_status(back_in_full, AGENT)
    assert [f.case for f in found] == [
        "permissions.tools.issue_refund.review_when.large-refund"]
    assert "no step of a regression case's recorded run is stopped by it now" in found[0].what
    edit(_permissions(back_in_full), "amount: {exclusiveMinimum: 100}", bound)
    _, result = _ratchet(back_in_full)  # the case held, on the controls as gated
    assert result.outcome == "pass" and "by-hand-1" in result.data.terms
    edit(_permissions(back_in_full), bound, "amount: {exclusiveMinimum: 100}")
    found, _ = ratchet_status(back_in_full, AGENT)
    assert found == []
