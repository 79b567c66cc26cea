"""Attacks on the way back to full operation: hand edits, store edits, races, a removed
history. Each one tries to clear an agent that must not be cleared, and must fail."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock, Timeout

from gates import (
    Guard,
    Refused,
    StateStore,
    Workspace,
    agent_mode,
    check,
    contain,
    open_incident,
    open_store,
    restore,
)
from regressions import utc_now
from tests.conftest import CLI, RunCli, tree
from tests.helpers import ACTOR, captured, contained, copied

pytestmark = pytest.mark.slow

AGENT = "refund-agent"


@pytest.fixture(scope="module")
def contained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with INC-1 contained in review and nothing else done."""
    from gates._demo import lay_out

    root = lay_out(tmp_path_factory.mktemp("integrity") / "ws")
    contained(Workspace.find(root))
    return root


@pytest.fixture
def held(contained_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the contained workspace."""
    return copied(contained_template, tmp_path / "ws")


def _sql(ws: Workspace, statement: str, *args: Any) -> None:
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute(statement, args)


def _hand_restore(ws: Workspace, incident: str = "INC-1") -> None:
    path = ws.incidents().path(incident)
    path.write_text(path.read_text() + f"restored_at: '{utc_now().isoformat()}'\n")


@pytest.mark.attack
def test_a_hand_written_restored_at_neither_gates_nor_restores(held: Workspace,
                                                               cli: RunCli) -> None:
    """A restored_at added by hand to a contained incident is tampering: the gate still
    holds the incident open, restore refuses, and the agent stays in review."""
    _hand_restore(held)
    assert cli("gate", AGENT, cwd=held.root).returncode == 1
    refused = cli("restore", AGENT, cwd=held.root)
    assert refused.returncode == 1
    assert "tampering: INC-1: its file says restored" in refused.stderr
    mode = cli("mode", AGENT, cwd=held.root)
    assert mode.stdout.strip() == "review"
    assert not check(held, AGENT)


@pytest.mark.attack
def test_a_hand_written_restored_at_does_not_clear_a_ci_job_with_a_new_store(
        example: Workspace, cli: RunCli, tmp_path: Path) -> None:
    """In a CI checkout with no store, an incident restored only by a hand edit is verified
    like any open one: the unfixed agent fails the gate and check refuses the deploy."""
    captured(example)
    _hand_restore(example)
    checkout = tmp_path / "checkout"
    shutil.copytree(example.root, checkout, ignore=shutil.ignore_patterns(".reinstate"))
    assert cli("gate", AGENT, "--new-store", cwd=checkout).returncode == 1
    assert cli("check", AGENT, cwd=checkout).returncode == 1


@pytest.mark.attack
def test_a_mode_row_edited_to_full_does_not_lift_containment(held: Workspace,
                                                             cli: RunCli) -> None:
    """The modes table says full, but INC-1 contained the agent and no restore is logged."""
    _sql(held, "UPDATE modes SET mode = 'full' WHERE agent = ?", AGENT)
    assert agent_mode(AGENT, held.root) == "review"
    mode = cli("mode", AGENT, cwd=held.root)
    assert mode.stdout.strip() == "review"
    assert "INC-1 contained it and the audit log holds no restore" in mode.stderr
    assert cli("check", AGENT, cwd=held.root).returncode == 1


@pytest.mark.attack
def test_a_mode_row_edited_to_full_with_the_incident_file_deleted_does_not_clear(
        held: Workspace, cli: RunCli) -> None:
    """INC-1's file deleted and the modes row set to full by hand: the log still holds
    INC-1's containment and no restore, so every runtime read (the light and the full
    `mode`, `agent_mode`, the guard the MCP gateway decides with) answers review."""
    assert cli("mode", AGENT, cwd=held.root).stdout.strip() == "review"  # learns the files
    held.incidents().path("INC-1").unlink()
    _sql(held, "UPDATE modes SET mode = 'full' WHERE agent = ?", AGENT)
    mode = cli("mode", AGENT, cwd=held.root)
    assert (mode.returncode, mode.stdout.strip()) == (3, "review")
    assert "INC-1 contained refund-agent (audit entry 1)" in mode.stderr
    assert "its incident file is missing" in mode.stderr
    _runtimes_answer_review(held)


def _runtimes_answer_review(held: Workspace) -> None:
    """A runtime's mode read and the guard both keep the agent in review."""
    assert agent_mode(AGENT, held.root) == "review"
    with Guard(held, AGENT) as guard, guard.run("run-1", goal="look up an order"):
        decision = guard.call("lookup_order", {"order_id": "A-1001"})
    assert (decision.effect, decision.rule) == ("review", "mode.review")


@pytest.mark.attack
def test_a_mode_row_edited_to_full_behind_the_log_does_not_clear(held: Workspace,
                                                                 cli: RunCli) -> None:
    """The containment taken out of INC-1's file and the modes row set to full by hand: no
    incident holds the agent, but the last mode entry of the log set review, so the row
    was changed behind it and every runtime read answers review."""
    path = held.incidents().path("INC-1")
    record = yaml.safe_load(path.read_text())
    del record["containment"]
    path.write_text(yaml.safe_dump(record))
    _sql(held, "UPDATE modes SET mode = 'full' WHERE agent = ?", AGENT)
    for _ in range(2):  # the full read, then the light one over the files it learned
        mode = cli("mode", AGENT, cwd=held.root)
        assert (mode.returncode, mode.stdout.strip()) == (3, "review")
        assert "the modes table was changed behind the audit log" in mode.stderr
    _runtimes_answer_review(held)


@pytest.mark.attack
def test_a_store_put_back_from_before_containment_does_not_lift_it(back_in_full: Workspace,
                                                                   cli: RunCli,
                                                                   tmp_path: Path) -> None:
    """A copy of the store taken before INC-2 was contained, put back afterwards, still
    leaves the agent suspended: the incident file holds the containment."""
    ws = back_in_full
    incident = open_incident(ws, AGENT, summary="second harm", severity="sev1", actor=ACTOR)
    saved = tmp_path / "saved"
    saved.mkdir()
    for path in ws.state_path.parent.glob("state.db*"):
        shutil.copy2(path, saved / path.name)
    contain(ws, incident.id, mode="suspended", notify=["legal", "compliance", "eng-lead"],
            scope="refunds", actor=ACTOR)
    for path in ws.state_path.parent.glob("state.db*"):
        path.unlink()
    for path in saved.iterdir():
        shutil.copy2(path, ws.state_path.parent / path.name)
    assert open_store(ws).mode(AGENT).mode == "full"  # type: ignore[union-attr]
    assert agent_mode(AGENT, ws.root) == "suspended"
    assert cli("check", AGENT, cwd=ws.root).returncode == 1


class _Interleaved:
    """A store that lets another command commit between a command's reads and its first
    write, as a second process would: drives a race the same way every time."""

    WRITES = ("set_mode", "tighten_mode", "replace_mode")

    def __init__(self, store: StateStore, meanwhile: Any) -> None:
        self._store = store
        self._meanwhile = meanwhile

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name in self.WRITES and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return attribute


@pytest.mark.attack
def test_two_containments_racing_end_in_the_stricter_mode(example: Workspace) -> None:
    """A review containment whose write comes after a suspension committed keeps suspended."""
    first = open_incident(example, AGENT, summary="a", severity="sev2", actor=ACTOR)
    second = open_incident(example, AGENT, summary="b", severity="sev1", actor=ACTOR)
    notify = ["legal", "compliance", "eng-lead"]

    def suspend() -> None:
        contain(example, second.id, mode="suspended", notify=notify, scope="all", actor=ACTOR)

    racing = _Interleaved(open_store(example), suspend)
    contain(example, first.id, mode="review", notify=notify, scope="one",
            actor=ACTOR, store=racing)  # type: ignore[arg-type]
    assert open_store(example).mode(AGENT).mode == "suspended"  # type: ignore[union-attr]
    assert agent_mode(AGENT, example.root) == "suspended"


@pytest.mark.attack
def test_restore_racing_a_new_containment_never_ends_in_full(restorable: Workspace) -> None:
    """A containment that commits while restore is deciding makes restore refuse; the agent
    stays contained."""
    ws = restorable

    def incident_meanwhile() -> None:
        incident = open_incident(ws, AGENT, summary="new harm", severity="sev1", actor=ACTOR)
        contain(ws, incident.id, mode="review", notify=["legal", "compliance", "eng-lead"],
                scope="refunds", actor=ACTOR)

    racing = _Interleaved(open_store(ws), incident_meanwhile)
    with pytest.raises(Refused, match="its mode changed while restore was checking"):
        restore(ws, AGENT, actor=ACTOR, store=racing)  # type: ignore[arg-type]
    assert open_store(ws).mode(AGENT).mode == "review"  # type: ignore[union-attr]
    assert agent_mode(AGENT, ws.root) == "review"
    assert not check(ws, AGENT)


@pytest.mark.attack
def test_a_change_recorded_while_restore_decides_is_never_restored_unverified(
        restorable: Workspace) -> None:
    """`incident change` run by another process while restore is deciding: the change must
    not be marked restored with nothing verifying it (serially, a restored incident takes
    no new change). Restore holds the agent's incidents until it has written them, so the
    change waits and is then refused; before, it was recorded, restore then wrote INC-1
    restored over it, and the agent ran in full with CC-6 unverified (check said no)."""
    ws = restorable
    lock = ws.lock_dir / "INC-1.lock"
    writer: list[subprocess.Popen[str]] = []

    def change_meanwhile() -> None:
        env = {**os.environ, "REINSTATE_ACTOR": "other.engineer"}
        env.pop("REINSTATE_WORKSPACE", None)
        writer.append(subprocess.Popen(
            [*CLI, "incident", "change", "INC-1", "--layer", "review_gate", "--addresses",
             "F-4", "--description", "route every refund over $100 to a person"],
            cwd=ws.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        try:  # free: nothing holds INC-1 against the writer, so let it write now
            with FileLock(lock, timeout=0):
                pass
        except Timeout:
            return  # restore holds INC-1: the writer waits for it
        writer[0].communicate(timeout=120)

    restore(ws, AGENT, actor=ACTOR,
            store=_Interleaved(open_store(ws), change_meanwhile))  # type: ignore[arg-type]
    out, err = writer[0].communicate(timeout=120)
    changes = [c.id for c in ws.incidents().load("INC-1").control_changes]
    assert "CC-6" not in changes, (changes, out, err)
    assert writer[0].returncode == 2 and "when in restored" in err, (out, err)
    assert agent_mode(AGENT, ws.root) == "full"
    assert check(ws, AGENT)  # what the runtime runs, the verdict covers


@pytest.mark.attack
def test_a_removed_tail_is_caught_by_a_verdict_kept_elsewhere(back_in_full: Workspace,
                                                              cli: RunCli) -> None:
    """Deleting the newest verdict, its audit entry and the head together is caught by the
    copy of that verdict the CI job kept (`gate --json`)."""
    ws = back_in_full
    assert cli("gate", AGENT, "--json", "kept.json", cwd=ws.root).returncode == 0
    kept = json.loads((ws.root / "kept.json").read_text())
    own = kept["audit_head"]["seq"] + 1
    _sql(ws, "DELETE FROM verdicts WHERE id = (SELECT MAX(id) FROM verdicts)")
    _sql(ws, "DELETE FROM audit WHERE seq = ?", own)
    _sql(ws, "UPDATE meta SET value = ? WHERE key = 'audit_head'",
         f"{kept['audit_head']['seq']}:{kept['audit_head']['hash']}")
    caught = cli("audit", "verify", "--anchor", "kept.json", cwd=ws.root)
    assert caught.returncode == 1
    assert f"entry {own}: missing" in caught.stderr


@pytest.mark.attack
def test_a_log_without_its_head_is_tampering(back_in_full: Workspace, cli: RunCli) -> None:
    """Removing the stored head of a non-empty log is reported, and check refuses."""
    _sql(back_in_full, "DELETE FROM meta WHERE key = 'audit_head'")
    verify = cli("audit", "verify", cwd=back_in_full.root)
    assert verify.returncode == 1 and "no recorded head" in verify.stderr
    assert cli("check", AGENT, cwd=back_in_full.root).returncode == 1


@pytest.mark.attack
def test_a_zero_byte_store_is_never_started_again(held: Workspace, cli: RunCli) -> None:
    """A truncated store stops the gate with exit 3 and stays as it is: its history is not
    silently restarted at entry 1."""
    for path in held.state_path.parent.glob("state.db-*"):
        path.unlink()
    held.state_path.write_bytes(b"")
    gate = cli("gate", AGENT, "--new-store", cwd=held.root)
    assert gate.returncode == 3 and "is empty (0 bytes)" in gate.stderr
    assert held.state_path.read_bytes() == b""
    mode = cli("mode", AGENT, cwd=held.root)
    assert (mode.returncode, mode.stdout.strip()) == (3, "suspended")


_FIRST_MODE = "(SELECT min(seq) FROM audit WHERE action = 'mode')"


@pytest.mark.parametrize(("what", "statement", "runtime"), [
    ("mode", "UPDATE modes SET mode = 'bogus'", "suspended"),
    ("since", "UPDATE modes SET since = 'yesterday'", "suspended"),
    ("detail", f"UPDATE audit SET detail = 'x' WHERE seq = {_FIRST_MODE}", "suspended"),
    ("huge", "UPDATE audit SET detail = '{\"n\": " + "9" * 5000 + "}' WHERE seq = "
     f"{_FIRST_MODE}", "suspended"),
    # A containment naming its incident as a list, a restore listing a list: JSON, but
    # no entry reinstate writes (they raised TypeError where the mode is decided).
    ("incident", "UPDATE audit SET detail = '{\"incident\": [\"INC-1\"], \"mode\": "
     f"\"review\"}}' WHERE seq = {_FIRST_MODE}", "suspended"),
    ("incidents", "UPDATE audit SET detail = json_set(detail, '$.incidents', "
     "json('[[\"INC-1\"]]')) WHERE seq = (SELECT max(seq) FROM audit WHERE action = "
     "'mode')", "suspended"),
    # (Entry 1, the first gate's verdict, garbled: test_a_garbled_row_no_decision_reads_...)
    # The mode row and the log are intact, but no verdict proves the controls: the runtime
    # guard sends every call to a person (controls.unproven), and the mode reads review.
    ("verdict", "UPDATE verdicts SET body = '{'", "review"),
])
@pytest.mark.attack
def test_a_garbled_store_row_is_one_clean_error(back_in_full: Workspace, cli: RunCli,
                                                what: str, statement: str,
                                                runtime: str) -> None:
    """A row reinstate never writes makes check exit 3 with one line; the runtime's read
    never raises and is suspended wherever the row is one it reads."""
    _sql(back_in_full, statement)
    result = cli("check", AGENT, cwd=back_in_full.root)
    assert result.returncode == 3, (what, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "state store" in result.stderr
    assert agent_mode(AGENT, back_in_full.root) == runtime
    mode = cli("mode", AGENT, cwd=back_in_full.root)
    assert mode.stdout.strip() == runtime and "Traceback" not in mode.stderr


@pytest.mark.attack
@pytest.mark.parametrize(("statement", "code", "named"), [
    ("UPDATE audit SET detail = 'x' WHERE seq = 1", 3, "audit entry 1 is not as reinstate "
                                                       "writes it"),
    ("UPDATE audit SET reason = 'nothing happened' WHERE seq = 1",
     1, "entry 1: content was changed after it was written"),
], ids=["garbled", "edited"])
def test_a_row_no_decision_reads_is_named_by_audit_verify(back_in_full: Workspace,
                                                          cli: RunCli, statement: str,
                                                          code: int, named: str) -> None:
    """Entry 1, the first gate's verdict, garbled or edited (its hash left as it was): no
    decision reads it (the agent's latest verdict entry is a later one), so check, which
    verifies what its decision reads and the log's structure, clears as before the edit,
    and the runtime reads full; `reinstate audit verify`, which re-hashes every entry,
    names it, and exits 3 for a row reinstate never writes, 1 for an edited one.

    Until check was made flat in the log, check too passed over every stored row and
    exited 3 (garbled) or 1 (edited) here."""
    assert cli("check", AGENT, cwd=back_in_full.root).returncode == 0
    _sql(back_in_full, statement)
    assert cli("check", AGENT, cwd=back_in_full.root).returncode == 0
    assert agent_mode(AGENT, back_in_full.root) == "full"
    verify = cli("audit", "verify", cwd=back_in_full.root)
    assert verify.returncode == code, verify.stderr
    assert named in verify.stdout + verify.stderr
    assert "Traceback" not in verify.stderr


def test_a_verdict_file_that_is_not_one_is_a_clean_error(back_in_full: Workspace,
                                                         cli: RunCli) -> None:
    """`audit verify --anchor FILE` with a broken file names it, exit 2, nothing written."""
    (back_in_full.root / "kept.json").write_text("{")
    before = tree(back_in_full.root)
    result = cli("audit", "verify", "--anchor", "kept.json", cwd=back_in_full.root)
    assert result.returncode == 2 and "kept.json" in result.stderr
    assert tree(back_in_full.root) == before
