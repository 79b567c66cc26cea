"""Control-change evidence stays proportionate: a harm repeated over many regression cases
is stored once per change with the ids of the cases it was replayed in, and every place a
verdict is shown still names the step, its decisions and the cases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gates import CasesReplay, Verdict, Workspace, run_gate
from gates._cli import main
from tests.helpers import ACTOR, resolved

Fix = Callable[[Workspace], list[str]]
AGENT = "refund-agent"
COPIES = ("INC-1-2", "INC-1-3")
CALL = ("issue_refund(order_id='A-1001', amount=1250.0, currency='USD', "
        "refund_to='store_credit:C-7731', reason='customer request')")


def _with_copies(ws: Workspace) -> list[str]:
    """Two more regression cases, each the captured one under its own id and file (an
    incident's cases often repeat one harm); every case id, in file order."""
    folder = ws.regressions_dir(AGENT)
    text = (folder / "INC-1-1.yaml").read_text()
    for case_id in COPIES:
        (folder / f"{case_id}.yaml").write_text(
            text.replace("id: INC-1-1\n", f"id: {case_id}\n", 1))
    return ["INC-1-1", *COPIES]


@pytest.fixture
def gated(example: Workspace, fixed: Fix) -> tuple[Workspace, Verdict, list[str]]:
    """The example resolved with three regression cases alike, gated once."""
    resolved(example, fixed)
    cases = _with_copies(example)
    return example, run_gate(example, AGENT, actor=ACTOR, trials=1), cases


@pytest.mark.slow
def test_a_harm_repeated_over_cases_is_one_row_naming_every_case(
        gated: tuple[Workspace, Verdict, list[str]]) -> None:
    """A permission change's harmful call, alike in three cases, is one row with the three
    case ids and its decisions, and still counts as three steps stopped."""
    _, verdict, cases = gated
    assert verdict.outcome == "pass", [c.findings for c in verdict.checks]
    permission = next(v for v in verdict.verifications if v.layer == "tool_permission_boundary")
    assert permission.verified and permission.reason == "6 harmful step(s) stopped today"
    assert len(permission.replays) == 2
    refund = permission.replays[0]
    assert isinstance(refund, CasesReplay)
    assert (refund.step, refund.cases, refund.before, refund.after, refund.after_rule) == (
        f"step 4: {CALL}", cases, "allow", "deny", "permissions.tools.issue_refund.arguments")
    acceptance = next(v for v in verdict.verifications if v.layer == "acceptance_criteria")
    assert [(r.step, r.cases) for r in acceptance.replays  # type: ignore[union-attr]
            ] == [("harmful behaviour", cases)]
    # The permission and review changes replay the call: twice, not twice per case (the
    # acceptance change's reason quotes it once more).
    assert verdict.model_dump_json().count(CALL) == 3


@pytest.mark.slow
def test_the_gate_and_report_name_the_cases_a_grouped_row_covers(
        gated: tuple[Workspace, Verdict, list[str]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTML report and the gate's terminal table show a grouped step with how many cases
    it covers and their ids."""
    ws, _, _ = gated
    monkeypatch.setenv("COLUMNS", "200")
    out = ws.root / "report.html"
    assert main(["-C", str(ws.root), "report", AGENT, "--html", str(out)]) == 0
    html = out.read_text()
    assert f"step 4: {CALL} in 3 cases (INC-1-1, INC-1-2, INC-1-3)" in html.replace(
        "&#39;", "'")
    assert main(["-C", str(ws.root), "gate", AGENT, "--trials", "1"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "step 4: issue_refund(…) in 3 cases (INC-1-1, INC-1-2, INC-1-3)" in printed
