"""`check` and `restore` read the stored verdict's few fields only when the audit log
vouches for its exact text: every other stored verdict is read whole, as before, and no
edit of it clears an agent."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

import pytest

from gates import (
    EvalsResult,
    Fingerprint,
    StateStore,
    Verdict,
    Workspace,
    check,
    fingerprint,
    open_store,
    run_gate,
)
from gates._demo import apply_fix
from regressions import utc_now
from tests.conftest import RunCli
from tests.helpers import ACTOR, captured, resolved

AGENT = "refund-agent"


def _stored(ws: Workspace) -> tuple[int, str]:
    """The id and text of the agent's latest stored verdict row."""
    with sqlite3.connect(ws.state_path) as conn:
        row = conn.execute("SELECT id, body FROM verdicts WHERE agent = ? ORDER BY id DESC "
                           "LIMIT 1", (AGENT,)).fetchone()
    conn.close()
    return int(row[0]), str(row[1])


def _rewrite(ws: Workspace, body: str) -> None:
    """Replace the latest stored verdict's text straight in the database."""
    row_id, _ = _stored(ws)
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute("UPDATE verdicts SET body = ? WHERE id = ?", (body, row_id))
    conn.close()


def _edited(ws: Workspace, edit: Any) -> str:
    """The latest stored verdict as JSON data, changed by ``edit``, back as compact text."""
    data = json.loads(_stored(ws)[1])
    edit(data)
    return json.dumps(data, separators=(",", ":"))


def test_latest_verdict_text_is_the_text_its_audit_entry_digests(store: StateStore) -> None:
    """Every store gives back the latest verdict's text whose SHA-256 is the digest its audit
    entry records, and None for an agent never gated."""
    verdict = Verdict(
        agent=AGENT, outcome="pass", created_at=utc_now(),
        fingerprint=Fingerprint(agent_version="1.4.0", controls="c", eval_suite="e",
                                regression_set="r", agent="a", files={"agents/x.yaml": "1"}),
        checks=[EvalsResult(outcome="pass", summary="s")],
    )
    entry = store.save_verdict(verdict, actor="ci")
    text = store.latest_verdict_text(AGENT)
    assert text is not None
    assert hashlib.sha256(text.encode()).hexdigest() == entry.detail["sha256"]
    latest = store.latest_verdict(AGENT)
    assert latest is not None and latest.stored_text() == text
    assert store.latest_verdict_text("nobody") is None


@pytest.mark.slow
def test_a_verdict_read_whole_and_read_light_give_the_same_answer(example: Workspace) -> None:
    """A failing verdict with unverified control changes gets the same clearance, reason for
    reason, from its stored text and from the same verdict reformatted (which is read whole)."""
    captured(example)
    run_gate(example, AGENT, actor=ACTOR)
    light = check(example, AGENT).model_dump()
    _rewrite(example, json.dumps(json.loads(_stored(example)[1]), indent=1))
    whole = check(example, AGENT).model_dump()
    assert light == whole
    assert any("is fail" in reason for reason in light["reasons"])


@pytest.mark.slow
def test_a_restorable_verdict_read_light_still_names_each_verified_change(
        example: Workspace) -> None:
    """The light read finds the verified control changes restore needs: a resolved incident
    gated green is restorable, and the same verdict read whole agrees."""
    resolved(example, apply_fix)
    assert run_gate(example, AGENT, actor=ACTOR)
    light = check(example, AGENT)
    assert light.restorable and light.verdict_outcome == "pass"
    _rewrite(example, json.dumps(json.loads(_stored(example)[1]), indent=1))
    assert check(example, AGENT).model_dump() == light.model_dump()


@pytest.mark.slow
@pytest.mark.attack
def test_a_stored_verdict_edited_where_check_does_not_look_is_not_cleared(
        back_in_full: Workspace) -> None:
    """A check's summary rewritten in the stored verdict (a field the light read ignores)
    blocks the deploy: the audit log names the verdicts table as changed."""
    assert check(back_in_full, AGENT)
    _rewrite(back_in_full, _edited(
        back_in_full, lambda data: data["checks"][0].update(summary="all good, trust me")))
    clearance = check(back_in_full, AGENT)
    assert not clearance
    assert any("the verdicts table was changed behind the audit log" in reason
               for reason in clearance.reasons)


@pytest.mark.slow
@pytest.mark.attack
def test_a_stored_verdict_without_its_audit_head_is_not_cleared(
        back_in_full: Workspace) -> None:
    """A stored verdict missing the audit head the light read needs is read whole, and its
    text no longer matches its audit entry: not cleared."""
    _rewrite(back_in_full, _edited(back_in_full, lambda data: data.pop("audit_head")))
    clearance = check(back_in_full, AGENT)
    assert not clearance
    assert any(reason.startswith("the audit log does not verify: verdicts:")
               for reason in clearance.reasons)


@pytest.mark.slow
@pytest.mark.attack
def test_a_stored_verdict_without_its_checks_is_an_error(back_in_full: Workspace,
                                                         cli: RunCli) -> None:
    """A stored verdict missing its checks is not a verdict: `reinstate check` exits 3 with
    one line naming the state store, never 0 and never a traceback."""
    _rewrite(back_in_full, _edited(back_in_full, lambda data: data.pop("checks")))
    result = cli("check", AGENT, cwd=back_in_full.root)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "state store" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.attack
def test_controls_loosened_then_verdict_and_entry_digest_forged_is_not_cleared(
        back_in_full: Workspace) -> None:
    """Review routing loosened after the gate, the stored verdict's fingerprint rewritten to
    today's and its audit entry's digest forged to match (so the light read trusts the
    text): the entry no longer hashes to itself, and the agent is not cleared."""
    review = back_in_full.agent_dir(AGENT) / "review.yaml"
    review.write_text(review.read_text().replace("exclusiveMinimum: 150",
                                                 "exclusiveMinimum: 1500"))
    today = fingerprint(back_in_full, AGENT).model_dump(mode="json")
    forged = _edited(back_in_full, lambda data: data.update(fingerprint=today))
    _rewrite(back_in_full, forged)
    with sqlite3.connect(back_in_full.state_path) as conn:
        seq, detail = conn.execute("SELECT seq, detail FROM audit WHERE action = 'verdict' "
                                   "ORDER BY seq DESC LIMIT 1").fetchone()
        recorded = json.loads(detail)
        recorded["sha256"] = hashlib.sha256(forged.encode()).hexdigest()
        recorded["fingerprint"] = {k: v for k, v in today.items() if k != "files"}
        conn.execute("UPDATE audit SET detail = ? WHERE seq = ?",
                     (json.dumps(recorded, sort_keys=True), seq))
    conn.close()
    clearance = check(back_in_full, AGENT)
    assert not clearance
    assert any(f"entry {seq}:" in reason for reason in clearance.reasons)
    assert open_store(back_in_full).latest_verdict_text(AGENT) == forged
