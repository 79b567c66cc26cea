"""What one gate reads of the stored history: its checkpoint, and the log's links up to it,
are tested once a decision, however many of the gate's stages ask the log a question, and
no stored row's text is passed over."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gates import SQLiteStore, Workspace, run_gate

AGENT = "refund-agent"
# The test of the log's links (chain_sql.linked_to), as the trace shows it (its number
# filled in); a pass over every stored row's text (the whole log read, or every row up to
# the checkpoint read in order).
LINKS_TEST = re.compile(r"LEFT JOIN audit AS earlier .* BETWEEN 2 AND (\d+) ")
ROWS_PASS = re.compile(r"^SELECT seq, at, .* FROM audit WHERE seq (<= \d+|> 0) ORDER BY seq$")


class _CountingStore(SQLiteStore):
    """A SQLite store that counts the tests of its checkpoint."""

    linked = 0

    def held_checkpoint(self) -> tuple[int, str] | None:
        self.linked += 1
        return super().held_checkpoint()


def _longer_history(workspace: Workspace, gates: int) -> None:
    """``gates`` more stored gates: the latest verdict saved again, one audit entry each."""
    store = SQLiteStore(workspace.state_path)
    verdict = store.latest_verdict(AGENT)
    assert verdict is not None
    for _ in range(gates):
        store.save_verdict(verdict.model_copy(deep=True), "ci")


@pytest.mark.slow
def test_a_gate_tests_the_checkpoint_once(back_in_full: Workspace) -> None:
    """A gate given a store tests its checkpoint once, not once for the incidents' standing
    and again for the ratchet's approvals; both read, neither verifies, so one test
    serves them."""
    _longer_history(back_in_full, 30)
    store = _CountingStore(back_in_full.state_path)
    assert run_gate(back_in_full, AGENT, actor="ci", store=store)
    assert store.linked == 1


@pytest.mark.slow
def test_the_gate_command_passes_over_no_stored_row(
        back_in_full: Workspace, sql_statements: list[str],
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """``reinstate gate``, whose stages each open the workspace's store, tests the log's
    links up to its checkpoint once, for its stages and for restore's conditions it prints
    (which verify its own verdict's entry, after that checkpoint, by content), and reads no
    stored row's text beyond what the decisions read, gate after gate."""
    _longer_history(back_in_full, 30)
    statements = sql_statements
    for _ in range(2):
        statements.clear()
        code, out, err = inline_cli(back_in_full, "gate", AGENT)
        assert code == 0, out + err
        tests = [int(m[1]) for s in statements if (m := LINKS_TEST.search(s))]
        assert len(tests) == 1, tests
        assert not [s for s in statements if ROWS_PASS.match(s)]
