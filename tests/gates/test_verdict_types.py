"""Typed verdicts: each built-in check's data in its own model, and version 1 verdicts
(stored, signed or kept by CI before schema version 2) read as version 2 with their
integrity intact."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gates import (
    BUILT_IN_CHECKS,
    CHECKS,
    CheckResult,
    ControlChangesResult,
    CoverageReplay,
    DecisionReplay,
    EvalsResult,
    PromptReplay,
    SignatureInvalid,
    SQLiteStore,
    Workspace,
    load_public_key,
    ratchet_status,
    read_envelope,
    read_verdict,
    register,
    run_gate,
    verdict_report,
    verify_attestation,
    verify_audit,
)
from tests.helpers import ACTOR

V1 = Path(__file__).parents[1] / "data" / "verdict-v1"
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "verdict.json").read_text())
AGENT = "refund-agent"


@pytest.fixture
def v1_store(tmp_path: Path) -> SQLiteStore:
    """A copy of a state store written by the code before schema version 2."""
    shutil.copy(V1 / "state.db", tmp_path / "state.db")
    return SQLiteStore(tmp_path / "state.db")


def _as_v1(data: Any) -> Any:
    """Version 2 data without what version 2 adds: replay rows' kind, the empty ``failed``
    of a passing case and ``against`` of a ratchet that compared with no ref, and the empty
    figures of a scope that was never replayed (a row's ``source``, the logged counts), and
    the regression figures of who stopped the harm, and the control rules a ratchet held."""
    optional = ("failed", "against", "control_terms", "source", "logged_calls",
                "logged_newly_denied", "logged_newly_reviewed", "logged_harmful",
                "logged_rejected", "logged_steps",
                "logged_stopped", "logged_harmful_calls", "logged_harmful_stopped",
                "regressions_held_by_agent", "regressions_stopped_by_control")
    if isinstance(data, dict):
        return {k: _as_v1(v) for k, v in data.items()
                if k != "kind" and not (k in optional and v is None)
                and not (k in ("review_load", "stopped_by_control") and v == [])}
    if isinstance(data, list):
        return [_as_v1(v) for v in data]
    return data


def _v1_digest(store: SQLiteStore) -> str:
    """The digest the old gate recorded in the audit log for its last verdict."""
    return next(e for e in reversed(store.audit(AGENT)) if e.action == "verdict").detail["sha256"]


def test_v1_verdict_in_the_store_reads_as_v2_with_every_field(v1_store: SQLiteStore) -> None:
    """A verdict stored by version 1 reads back as version 2 with every field it had."""
    old = json.loads((V1 / "verdict-v1-pass.json").read_text())
    verdict = v1_store.latest_verdict(AGENT)
    assert verdict is not None and verdict.schema_version == 2
    new = json.loads(verdict.model_dump_json())
    assert {k: v for k, v in new.items() if k not in ("schema_version", "checks")} == {
        k: v for k, v in old.items() if k not in ("schema_version", "checks")}
    assert [(c["name"], c["outcome"], c["summary"], c["findings"]) for c in new["checks"]] == [
        (c["name"], c["outcome"], c["summary"], c["findings"]) for c in old["checks"]]
    assert [_as_v1(c["data"]) or {} for c in new["checks"]] == [c["data"] for c in old["checks"]]
    jsonschema.validate(new, SCHEMA)
    rows = {v.change: v.replays for v in verdict.verifications}
    assert [type(rows[c][0]) for c in ("CC-1", "CC-2", "CC-4", "CC-5")] == [
        DecisionReplay, CoverageReplay, DecisionReplay, PromptReplay]


def test_v2_verdict_from_before_case_seconds_keeps_its_text(v1_store: SQLiteStore) -> None:
    """A version 2 verdict stored before cases recorded their seconds reads back to the same
    text, so the digest its audit entry and signature cover still matches."""
    verdict = v1_store.latest_verdict(AGENT)
    assert verdict is not None
    text = verdict.model_dump_json()
    assert '"seconds"' not in text
    assert read_verdict(text).stored_text() == text


def test_v1_verdict_still_verifies_against_the_audit_log(v1_store: SQLiteStore) -> None:
    """The audit log's digest of a version 1 verdict still matches it, and it anchors the log."""
    verdict = v1_store.latest_verdict(AGENT)
    assert verdict is not None
    assert verify_audit(v1_store, [AGENT], verdicts=[verdict]) == []


def test_v1_verdict_edited_in_the_store_is_refused(v1_store: SQLiteStore) -> None:
    """A version 1 verdict edited behind the audit log is still caught."""
    with sqlite3.connect(v1_store.path) as conn:
        (body,) = conn.execute("SELECT body FROM verdicts ORDER BY id DESC LIMIT 1").fetchone()
        conn.execute("UPDATE verdicts SET body = ? WHERE id = 2",
                     (body.replace('"good_reviewed":6', '"good_reviewed":0'),))
    problems = verify_audit(v1_store, [AGENT])
    assert any("verdicts table was changed behind the audit log" in p for p in problems)


def test_v2_verdict_downgraded_to_v1_is_refused(tmp_path: Path) -> None:
    """A version 2 verdict rewritten in version 1's shape (same content) does not verify."""
    store = SQLiteStore(tmp_path / "state.db")
    verdict = read_verdict((V1 / "verdict-v1-pass.json").read_text())
    store.save_verdict(verdict, "ci")
    stored = store.latest_verdict(AGENT)
    assert stored is not None and verify_audit(store, [AGENT]) == []
    old = json.loads((V1 / "verdict-v1-pass.json").read_text())
    old["audit_head"] = stored.model_dump(mode="json")["audit_head"]
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE verdicts SET body = ?", (json.dumps(old),))
    # The same content, in version 1's shape: read back, it is the stored verdict again …
    assert read_verdict(json.dumps(old)).model_dump_json() == stored.model_dump_json()
    # … yet its digest is version 1's, not the one the log recorded.
    problems = verify_audit(store, [AGENT])
    assert any("verdicts table was changed behind the audit log" in p for p in problems)


def test_v1_envelope_still_verifies_with_its_digest(v1_store: SQLiteStore) -> None:
    """A version 1 signed envelope verifies, and names the digest the audit log recorded."""
    attestation = verify_attestation(read_envelope(V1 / "verdict-v1.intoto.json"),
                                     load_public_key(V1 / "signing.pub"))
    assert attestation.verdict.schema_version == 2 and attestation.verdict.outcome == "pass"
    assert attestation.verdict_sha256 == _v1_digest(v1_store)
    assert len(attestation.verdict.verifications) == 5


def test_forged_v2_envelope_is_refused(tmp_path: Path) -> None:
    """An envelope whose signed version 1 payload was replaced by its version 2 form fails."""
    envelope = json.loads((V1 / "verdict-v1.intoto.json").read_text())
    statement = json.loads(read_envelope(V1 / "verdict-v1.intoto.json").payload)
    statement["predicate"] = read_verdict(statement["predicate"]).model_dump(mode="json")
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    forged = tmp_path / "forged.intoto.json"
    forged.write_text(json.dumps(envelope))
    with pytest.raises(SignatureInvalid, match="no signature"):
        verify_attestation(read_envelope(forged), load_public_key(V1 / "signing.pub"))


def test_v1_store_feeds_the_report_and_the_ratchet(example: Workspace,
                                                    v1_store: SQLiteStore) -> None:
    """The report and the ratchet read a version 1 store's verdicts as version 2."""
    failing = read_verdict((V1 / "verdict-v1-fail.json").read_text())
    report = verdict_report(example, AGENT, v1_store, verdict=failing)
    case = next(c for c in report.failing if c.id == "INC-1-1")
    assert case.did and any(u.startswith("no-repeat-step-4: ") for u in case.unmet)
    found, _ = ratchet_status(example, AGENT, cases=[], store=v1_store)
    # A removal is bound to the terms removed: "removed:" and their digest.
    assert [(f.case, f.kind, f.key.partition(":")[0]) for f in found] == [
        ("INC-1-1", "removed", "removed")]
    assert len(found[0].key.partition(":")[2]) == 64


def test_v1_case_from_before_failures_were_recorded_keeps_its_finding() -> None:
    """A failing case recorded without what the agent did shows the evals finding instead."""
    old = json.loads((V1 / "verdict-v1-fail.json").read_text())
    evals = next(c for c in old["checks"] if c["name"] == "evals")
    for case in evals["data"]["cases"]:
        case.pop("failed", None)
    figures = read_verdict(old).result(EvalsResult)
    assert figures is not None and figures.data is not None
    case = next(c for c in figures.data.cases if c.id == "INC-1-1")
    assert case.failed is not None
    assert [f"{u.criterion}: {u.detail}" for u in case.failed.unmet] == [
        f for f in evals["findings"] if f.startswith("INC-1-1: ")]


def test_a_gate_verdict_is_typed_and_matches_the_schema(example: Workspace) -> None:
    """A gate run stores typed results in the declared order; the JSON meets the schema, and
    an outside check that answers under another name is an error, not a pass."""
    assert list(CHECKS)[:len(BUILT_IN_CHECKS)] == [c.name for c in BUILT_IN_CHECKS]
    with pytest.raises(ValueError, match="already registered"):
        register("logging")(lambda inputs, evidence: CheckResult(
            name="logging", outcome="pass", summary=""))

    @register("impostor")
    def impostor(inputs: object, evidence: object) -> CheckResult:
        return CheckResult(name="evals", outcome="pass", summary="all good")
    try:
        verdict = run_gate(example, AGENT, actor=ACTOR)
    finally:
        del CHECKS["impostor"]
    assert [c.name for c in verdict.checks] == [c.name for c in BUILT_IN_CHECKS] + ["impostor"]
    assert verdict.checks[-1].outcome == "error" and verdict.outcome == "error"
    assert isinstance(verdict.checks[0], EvalsResult)
    assert isinstance(verdict.checks[5], ControlChangesResult)
    jsonschema.validate(json.loads(verdict.model_dump_json()), SCHEMA)
    assert SQLiteStore(example.state_path).latest_verdict(AGENT) == verdict


def test_check_reads_a_v1_signed_verdict_file(
        example: Workspace, v1_store: SQLiteStore,
        inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """`reinstate check --verdict` reads a version 1 envelope: its signature verifies."""
    code, out, _ = inline_cli(example, "check", AGENT, "--json", "--verdict",
                              str(V1 / "verdict-v1.intoto.json"), "--public-key",
                              str(V1 / "signing.pub"))
    answer = json.loads(out)
    assert answer["signed"] is True and answer["verdict_outcome"] == "pass"
    assert answer["verdict_sha256"] == _v1_digest(v1_store)
    # Signed, but on the incident's fixed files, not this untouched example: not cleared.
    assert code == 1 and any("stale" in r for r in answer["reasons"])
