"""What `reinstate eval` and `reinstate gate` print per case: a summary and the cases that
did not pass; every case with --all-cases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gates import Workspace

pytestmark = pytest.mark.slow

AGENT = "refund-agent"
Cli = Callable[..., tuple[int, str, str]]


def _break(ws: Workspace, case: str) -> None:
    """Make one eval case expect what the agent never says."""
    path = ws.root / "evals" / AGENT / f"{case}.yaml"
    path.write_text(path.read_text() + "- kind: output_contains\n  text: never said\n")


def test_eval_prints_a_summary_without_passing_rows(example: Workspace,
                                                    inline_cli: Cli) -> None:
    """A passing eval prints the case count and how many passing rows it left out, and no
    passing case's row."""
    code, out, _ = inline_cli(example, "eval", AGENT, "--cases", "status-*", "--trials", "1")
    assert code == 0, out
    assert "eval refund-agent (agent 1.4.0): 4 cases: 4 pass" in out
    assert "4 passing cases not listed (--all-cases lists them" in out
    assert "status-shipped" not in out


def test_eval_lists_the_case_that_failed(example: Workspace, inline_cli: Cli) -> None:
    """A failing case gets its row and its finding; the passing ones stay a count."""
    _break(example, "status-shipped")
    code, out, _ = inline_cli(example, "eval", AGENT, "--cases", "status-*", "--trials", "1")
    assert code == 1, out
    assert "4 cases: 3 pass, 1 fail" in out
    assert "│ status-shipped" in out and "status-delivered" not in out
    assert "3 passing cases not listed" in out


def test_eval_all_cases_lists_every_row(example: Workspace, inline_cli: Cli) -> None:
    """--all-cases gives every case its row and leaves nothing out."""
    code, out, _ = inline_cli(example, "eval", AGENT, "--cases", "status-*", "--trials", "1",
                              "--all-cases")
    assert code == 0, out
    for case in ("status-shipped", "status-delivered", "status-processing",
                 "status-no-order-id"):
        assert f"│ {case}" in out
    assert "not listed" not in out


def test_gate_lists_failing_eval_cases_and_all_on_request(example: Workspace,
                                                          inline_cli: Cli) -> None:
    """The gate lists the eval case that did not pass above its checks, counts the rest,
    and lists every case with --all-cases."""
    _break(example, "greeting")
    code, out, _ = inline_cli(example, "gate", AGENT, "--trials", "1")
    assert code == 1, out
    assert "eval cases that did not pass" in out and "│ greeting" in out
    assert "│ praise" not in out and "19 passing eval cases not listed" in out
    code, out, _ = inline_cli(example, "gate", AGENT, "--trials", "1", "--all-cases")
    assert code == 1, out
    assert "│ greeting" in out and "│ praise" in out and "not listed" not in out
