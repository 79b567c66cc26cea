"""The gate's closing line says what `restore` still needs when a passing verdict will not
restore yet, with restore's own words."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gates import Workspace, record_change
from tests.helpers import ACTOR, analysed

pytestmark = pytest.mark.slow

Cli = Callable[..., tuple[int, str, str]]


def _closing_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("verdict: "))


def test_a_pass_names_the_review_restore_still_needs(
        example: Workspace, fixed: Callable[..., object], inline_cli: Cli) -> None:
    """Resolved and gated green but with no post-incident review scheduled, the gate's
    closing line gives the reason `restore` refuses with, not "may be restored"."""
    incident = analysed(example)
    fixed(example)
    for layer, finding in (("tool_permission_boundary", "F-1"), ("eval_coverage", "F-2"),
                           ("acceptance_criteria", "F-3"), ("review_gate", "F-4")):
        record_change(example, incident, layer=layer, addresses=[finding],  # type: ignore[arg-type]
                      description=f"fix {layer}", actor=ACTOR)
    code, out, _ = inline_cli(example, "gate", "refund-agent")
    assert code == 0
    line = _closing_line(out)
    code, _, err = inline_cli(example, "restore", "refund-agent")
    assert code == 1
    refusals = [r.strip()[2:] for r in err.splitlines() if r.strip().startswith("- ")]
    assert refusals == [f"{incident} has no post-incident review scheduled"]
    assert line == ("verdict: PASS — refund-agent may NOT be restored yet: restore still "
                    f"needs: {refusals[0]}")


def test_a_pass_restore_accepts_says_it_may_be_restored(restorable: Workspace,
                                                        inline_cli: Cli) -> None:
    """With every restore condition met, the closing line promises the restore that then
    succeeds."""
    code, out, _ = inline_cli(restorable, "gate", "refund-agent")
    assert code == 0
    assert _closing_line(out) == "verdict: PASS — refund-agent may be restored to full operation"
    assert inline_cli(restorable, "restore", "refund-agent")[0] == 0
