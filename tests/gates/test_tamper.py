"""Tamper evidence: `reinstate audit verify` names every edited, removed or reordered entry
and every mode or verdict changed behind the log; restore refuses a store that fails it,
and a verdict whose fingerprint is not today's."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pytest

from gates import (
    SQLiteStore,
    Workspace,
    open_store,
    record_change,
    restore,
    restore_blockers,
    run_gate,
    schedule_review,
)
from gates._demo import apply_fix, lay_out
from gates._store.backends import entry_hash, verdict_digest
from gates._verdict.verdict import AuditHead, Verdict
from tests.helpers import ACTOR, analysed, copied

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tamper")]

AGENT = "refund-agent"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def restorable_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INC-1 resolved and gated green (restore would succeed), made once for this module."""
    root = lay_out(tmp_path_factory.mktemp("tamper") / "ws")
    workspace = Workspace.find(root)
    incident = analysed(workspace)
    assert run_gate(workspace, AGENT, actor="ci").outcome == "fail"
    apply_fix(workspace)
    for layer, finding in (("tool_permission_boundary", "F-1"), ("eval_coverage", "F-2"),
                           ("acceptance_criteria", "F-3"), ("review_gate", "F-4")):
        record_change(workspace, incident, layer=layer, addresses=[finding],  # type: ignore[arg-type]
                      description=f"fix {layer}", actor=ACTOR)
    record_change(workspace, incident, layer="prompt", addresses=[], description="1.5.0",
                  actor=ACTOR)
    schedule_review(workspace, incident, on=date(2099, 1, 1), actor=ACTOR)
    assert run_gate(workspace, AGENT, actor="ci")
    return root


@pytest.fixture
def ws(restorable_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the restorable workspace."""
    return copied(restorable_template, tmp_path / "ws")


@pytest.fixture
def cli(inline_cli: Cli) -> Cli:
    """``reinstate -C WS ARGS`` in this process (tests/gates/conftest.py)."""
    return inline_cli


def _sql(ws: Workspace, *statements: str) -> None:
    with sqlite3.connect(ws.state_path) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def test_intact_log_verifies_and_prints_its_head(ws: Workspace, cli: Cli) -> None:
    """An untouched store verifies (exit 0) and prints the head to anchor next time."""
    code, out, _ = cli(ws, "audit", "verify")
    entries = open_store(ws).audit()
    assert code == 0
    assert f"head {entries[-1].seq}:{entries[-1].hash}" in out
    code, out, _ = cli(ws, "audit", "verify", "--json")
    assert code == 0 and json.loads(out)["intact"] is True


def test_listing_is_still_the_plain_command(ws: Workspace, cli: Cli) -> None:
    """`reinstate audit` lists the entries, one a line, as before."""
    code, out, _ = cli(ws, "audit", "--agent", AGENT)
    assert code == 0
    assert len(out.splitlines()) == len(open_store(ws).audit(AGENT))


@pytest.mark.parametrize(("tamper", "named"), [
    ("UPDATE audit SET reason = 'nothing happened' WHERE seq = 2",
     "entry 2: content was changed after it was written"),
    ("DELETE FROM audit WHERE seq = 2", "entry 3: expected number 2 (removed or reordered)"),
    ("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)",
     "entries were removed from the end"),
], ids=["edited", "removed", "removed-last"])
def test_tampered_entry_is_named(ws: Workspace, cli: Cli, tamper: str, named: str) -> None:
    """An edited, removed or last-removed entry fails verification (exit 1) by number."""
    _sql(ws, tamper)
    code, _, err = cli(ws, "audit", "verify")
    assert code == 1
    assert named in err


def test_reordered_entries_are_named(ws: Workspace, cli: Cli) -> None:
    """Swapping two entries' contents names both places the chain breaks."""
    with sqlite3.connect(ws.state_path) as conn:
        rows = conn.execute("SELECT * FROM audit WHERE seq IN (1, 2) ORDER BY seq").fetchall()
        conn.execute("DELETE FROM audit WHERE seq IN (1, 2)")
        conn.execute("INSERT INTO audit VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)", rows[1][1:])
        conn.execute("INSERT INTO audit VALUES (2, ?, ?, ?, ?, ?, ?, ?, ?)", rows[0][1:])
    conn.close()
    code, _, err = cli(ws, "audit", "verify")
    assert code == 1
    assert "entry 1: does not follow the entry before it" in err
    assert "entry 2: does not follow the entry before it" in err


def test_mode_changed_behind_the_log_blocks_restore(ws: Workspace, cli: Cli) -> None:
    """A mode set straight in the database is named, and restore refuses to trust the store."""
    _sql(ws, "UPDATE modes SET mode = 'full'")
    code, _, err = cli(ws, "audit", "verify")
    assert code == 1
    assert "modes: refund-agent is full, but the last mode entry (entry 1) set review" in err
    reasons = restore_blockers(ws, AGENT, open_store(ws))
    assert any(r.startswith("the audit log does not verify: modes:") for r in reasons)


def test_verdict_inserted_behind_the_log_is_named(ws: Workspace, cli: Cli) -> None:
    """A passing verdict copied into the table without its entry is caught and blocks restore."""
    # The failing verdict, relabelled as a pass and stored as the newest.
    _sql(ws, "INSERT INTO verdicts (agent, created_at, outcome, body) SELECT agent, created_at, "
             "'pass', replace(body, '\"outcome\":\"fail\"', '\"outcome\":\"pass\"') FROM verdicts "
             "WHERE outcome = 'fail' ORDER BY id DESC LIMIT 1")
    code, _, err = cli(ws, "audit", "verify")
    assert code == 1
    assert "verdicts: the latest of refund-agent is a pass verdict" in err
    assert "recorded another (pass): the verdicts table was changed" in err
    code, _, err = cli(ws, "restore", AGENT)
    assert code == 1 and "the audit log does not verify" in err


@pytest.mark.attack
@pytest.mark.parametrize(("tamper", "named"), [
    ("UPDATE verdicts SET outcome = 'pass', body = replace(body, '\"outcome\":\"fail\"', "
     "'\"outcome\":\"pass\"') WHERE id = 1",
     "verdicts: refund-agent's verdict 1 of 2 (a pass verdict) is not the fail verdict its "
     "entry (entry {seq}) recorded: the verdicts table was changed behind the audit log"),
    ("UPDATE verdicts SET body = replace(body, '\"agent_version\":\"1.4.0\"', "
     "'\"agent_version\":\"1.5.0\"') WHERE id = 1",
     "verdicts: refund-agent's verdict 1 of 2 (a fail verdict) is not the fail verdict its "
     "entry (entry {seq}) recorded"),
    ("DELETE FROM verdicts WHERE id = 1",
     "verdicts: refund-agent's verdict 1 of 1 (a pass verdict) is not the fail verdict its "
     "entry (entry {seq}) recorded"),
    ("INSERT INTO verdicts (id, agent, created_at, outcome, body) SELECT 0, agent, "
     "created_at, outcome, body FROM verdicts WHERE id = 2",
     "verdicts: refund-agent's verdict 1 of 3 (a pass verdict) is not the fail verdict its "
     "entry (entry {seq}) recorded"),
], ids=["relabelled", "edited", "removed", "inserted-before"])
def test_an_older_verdict_changed_behind_the_log_is_named(ws: Workspace, cli: Cli,
                                                          tamper: str, named: str) -> None:
    """Every stored verdict must be the one its entry records, not only the latest: an
    older one edited, relabelled, removed or slipped in before was "intact" (and the report
    compares today's verdict with older passing ones)."""
    first = open_store(ws).audit(AGENT, actions=("verdict",))[0]
    code, _, _ = cli(ws, "audit", "verify")
    assert code == 0
    _sql(ws, tamper)
    code, out, err = cli(ws, "audit", "verify")
    assert code == 1, out
    assert named.format(seq=first.seq) in err
    assert "intact" not in out


def test_rewritten_chain_is_caught_by_an_anchor(ws: Workspace, cli: Cli) -> None:
    """Rehashing the whole chain after an edit passes the chain check, but not the hash the
    store recorded with its checkpoint; with that, each verdict's stamped head (and so its
    entry's digest of it) and the tallies written again too (with the store's own code: the
    chain has no secret), only an anchor kept from before catches it."""
    head = open_store(ws).audit()[-1]
    _sql(ws, "UPDATE audit SET actor = 'someone.else' WHERE seq = 1")
    prev = "0" * 64
    with sqlite3.connect(ws.state_path) as conn:
        # Each agent's verdict rows, in the order of its verdict entries.
        bodies: dict[str, list[tuple[int, str]]] = {}
        for row_id, name, body in conn.execute(
                "SELECT id, agent, body FROM verdicts ORDER BY id").fetchall():
            bodies.setdefault(name, []).append((row_id, body))
        for row in conn.execute("SELECT * FROM audit ORDER BY seq").fetchall():
            detail = json.loads(row[6])
            if row[3] == "verdict":  # stamped with the rewritten head, as the store stamps
                row_id, body = bodies[row[4]].pop(0)
                verdict = Verdict.model_validate_json(body)
                verdict.audit_head = AuditHead(seq=row[0] - 1, hash=prev)
                conn.execute("UPDATE verdicts SET body = ? WHERE id = ?",
                             (verdict.model_dump_json(), row_id))
                detail["sha256"] = verdict_digest(verdict)
                conn.execute("UPDATE audit SET detail = ? WHERE seq = ?",
                             (json.dumps(detail, sort_keys=True), row[0]))
            digest = entry_hash(row[0], datetime.fromisoformat(row[1]), row[2], row[3], row[4],
                                row[5], detail, prev)
            conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                         (prev, digest, row[0]))
            prev = digest
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'",
                     (f"{head.seq}:{prev}",))
    conn.close()
    code, _, err = cli(ws, "audit", "verify")
    assert code == 1 and "is not the one the store recorded with its checkpoint" in err
    _sql(ws, "DELETE FROM meta WHERE key = 'audit_checkpoint' OR key LIKE 'audit_tally:%'")
    store = SQLiteStore(ws.state_path)
    with store._writing() as held:
        store._advance_checkpoint(held)
    assert cli(ws, "audit", "verify")[0] == 0
    code, _, err = cli(ws, "audit", "verify", "--anchor", f"{head.seq}:{head.hash}")
    assert code == 1 and f"entry {head.seq}: hash" in err and "the log was rewritten" in err


@pytest.mark.parametrize(("change", "path"), [
    (lambda ws: ws.root / "regressions/refund-agent/INC-1-1.yaml",
     "regressions/refund-agent/INC-1-1.yaml"),
    (lambda ws: ws.root / "evals/refund-agent/greeting.yaml", "evals/refund-agent/greeting.yaml"),
    (lambda ws: ws.root / "agents/refund-agent/agent.yaml", "agents/refund-agent/agent.yaml"),
], ids=["regression-set", "eval-suite", "agent"])
def test_restore_refuses_a_verdict_for_other_files(ws: Workspace,
                                                   change: Callable[[Workspace], Path],
                                                   path: str) -> None:
    """A passing verdict no longer restores once the regression set, the eval suite or the
    agent changed: the stale file is named."""
    target = change(ws)
    target.write_text(target.read_text() + "\n# edited after the verdict\n")
    with pytest.raises(Exception, match=f"stale: changed since: {path}"):
        restore(ws, AGENT, actor=ACTOR)
