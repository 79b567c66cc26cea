"""What one gate reads of the stored history: the audit log before its checkpoint is passed
over once a gate, however many of the gate's stages ask the log a question."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gates import SQLiteStore, Workspace, run_gate

AGENT = "refund-agent"
# SQLiteStore.checkpoint's one statement, as the trace shows it (its number filled in).
CHECKPOINT_PASS = re.compile(r"^SELECT .* FROM audit WHERE seq <= (\d+) ORDER BY seq$")


class _CountingStore(SQLiteStore):
    """A SQLite store that counts the tests of its checkpoint: by content (a pass over the
    rows) and by structure (a pass over the index of links)."""

    tested = 0
    linked = 0

    def checkpoint(self) -> tuple[int, str] | None:
        self.tested += 1
        return super().checkpoint()

    def linked_checkpoint(self) -> tuple[int, str] | None:
        self.linked += 1
        return super().linked_checkpoint()


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
    and again for the ratchet's approvals; both read, neither verifies, so the structure's
    test serves them."""
    _longer_history(back_in_full, 30)
    store = _CountingStore(back_in_full.state_path)
    assert run_gate(back_in_full, AGENT, actor="ci", store=store)
    assert (store.linked, store.tested) == (1, 0)


@pytest.mark.slow
def test_the_gate_command_passes_over_the_history_once(
        back_in_full: Workspace, sql_statements: list[str],
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """``reinstate gate``, whose stages each open the workspace's store, runs the
    checkpoint's pass over the stored rows once, for restore's conditions it prints (read
    after its own verdict moved the checkpoint), gate after gate."""
    _longer_history(back_in_full, 30)
    statements = sql_statements
    for _ in range(2):
        statements.clear()
        code, out, err = inline_cli(back_in_full, "gate", AGENT)
        assert code == 0, out + err
        passes = [int(m[1]) for s in statements if (m := CHECKPOINT_PASS.match(s))]
        assert len(passes) == 1, passes
