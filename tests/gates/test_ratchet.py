"""The regression ratchet: the regression set only tightens, unless a person approves."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from evalsuite import InvalidInput
from gates import (
    AuditEntry,
    RegressionRatchetResult,
    SQLiteStore,
    StoreUnavailable,
    Verdict,
    Workspace,
    approve_loosening,
    open_store,
    ratchet_status,
    run_gate,
)
from gates._cli import main
from gates._demo import lay_out
from gates._store.backends import entry_hash
from tests.helpers import (
    ACTOR,
    GUARD,
    GUARD_WITH_HELPER,
    GUTTED_GUARD,
    GUTTED_HELPER,
    HELPER,
    STRICT_HELPER,
    captured,
    copied,
    with_predicate_expectation,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ratchet")]

AGENT = "refund-agent"
CASE = "regressions/refund-agent/INC-1-1.yaml"
NAME = "regression_ratchet"


@pytest.fixture(scope="module")
def gated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INC-1 captured and gated once (so the ratchet holds INC-1-1), made once per module."""
    root = lay_out(tmp_path_factory.mktemp("ratchet") / "ws")
    config = root / "reinstate.toml"  # one trial per case keeps each gate fast
    config.write_text(config.read_text().replace("trials = 3", "trials = 1"))
    workspace = Workspace.find(root)
    captured(workspace)
    run_gate(workspace, AGENT, actor="ci")
    return root


@pytest.fixture
def ws(gated_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the gated workspace."""
    return copied(gated_template, tmp_path / "ws")


def _ratchet(ws: Workspace) -> RegressionRatchetResult:
    result = run_gate(ws, AGENT, actor="ci").result(RegressionRatchetResult)
    assert result is not None and result.data is not None
    return result


def _edit(ws: Workspace, change: Callable[[dict[str, object]], None]) -> None:
    path = ws.root / CASE
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _drop_last_expectation(data: dict[str, object]) -> None:
    data["expect"] = data["expect"][:-1]  # type: ignore[index]


def _soften_input(data: dict[str, object]) -> None:
    data["input"]["messages"][-1]["content"] = "Hello!"  # type: ignore[index]
    data["recorded"]["steps"][0]["content"] = "Hello!"  # type: ignore[index]


LOOSENINGS: dict[str, tuple[Callable[[dict[str, object]], None], str]] = {
    "threshold": (lambda d: d.update(threshold=0.5), "threshold lowered from 1 to 0.5"),
    "expectation": (_drop_last_expectation,
                    "expectation acceptable-output-step-8 removed or changed"),
    "input": (_soften_input, "input, tool fixtures or recorded harm changed"),
}


def test_untouched_set_passes(ws: Workspace) -> None:
    """A regression set as the last gate held it passes the ratchet."""
    result = _ratchet(ws)
    assert result.outcome == "pass" and result.findings == []
    assert result.data is not None and list(result.data.terms) == ["INC-1-1"]


def test_removed_case_fails_by_name(ws: Workspace) -> None:
    """Deleting a regression case fails the gate, naming the case and how to approve."""
    (ws.root / CASE).unlink()
    result = _ratchet(ws)
    assert result.outcome == "fail"
    assert result.findings[0].startswith("INC-1-1: removed from the regression set; undo it, "
                                         "or approve it with `reinstate ratchet approve")


@pytest.mark.parametrize("how", ["threshold", "expectation", "input"])
def test_loosened_case_fails(ws: Workspace, how: str) -> None:
    """A lower threshold, a dropped expectation or an edited input fails the ratchet."""
    change, message = LOOSENINGS[how]
    _edit(ws, change)
    result = _ratchet(ws)
    assert result.outcome == "fail"
    assert message in result.findings[0]


def test_fewer_trials_fail(ws: Workspace) -> None:
    """Raising a case's trials tightens it; lowering them again loosens it."""
    _edit(ws, lambda d: d.update(trials=2))
    assert _ratchet(ws).outcome == "pass"
    _edit(ws, lambda d: d.update(trials=1))
    result = _ratchet(ws)
    assert result.outcome == "fail" and "trials lowered from 2 to 1" in result.findings[0]


def test_tightening_passes_and_becomes_the_new_floor(ws: Workspace) -> None:
    """An added expectation passes, and removing it later is a loosening."""
    def add(data: dict[str, object]) -> None:
        data["expect"].append({"kind": "output_not_contains", "id": "no-override",  # type: ignore[attr-defined]
                               "text": "override code"})
    _edit(ws, add)
    assert _ratchet(ws).outcome == "pass"
    _edit(ws, _drop_last_expectation)
    result = _ratchet(ws)
    assert result.outcome == "fail" and "expectation no-override removed" in result.findings[0]


def test_unapproved_loosening_keeps_failing(ws: Workspace) -> None:
    """The ratchet remembers the tighter terms, so a loosening fails every gate until undone."""
    _edit(ws, LOOSENINGS["threshold"][0])
    assert _ratchet(ws).outcome == "fail"
    assert _ratchet(ws).outcome == "fail"
    _edit(ws, lambda d: d.update(threshold=1.0))
    assert _ratchet(ws).outcome == "pass"


def test_approval_records_who_and_why_and_lets_it_pass(ws: Workspace) -> None:
    """An approval is an audit entry with who, why and when; the gate then passes the
    ratchet and lists the approval."""
    (ws.root / CASE).unlink()
    entry = approve_loosening(ws, AGENT, "INC-1-1", reason="duplicate of INC-1-2",
                              actor="lead.engineer")
    assert (entry.action, entry.actor, entry.reason) == (
        "ratchet-approval", "lead.engineer", "duplicate of INC-1-2")
    assert entry.detail["case"] == "INC-1-1" and entry.detail["terms"].startswith("removed:")
    result = _ratchet(ws)
    assert result.outcome == "pass"
    assert result.data is not None
    assert result.data.approved[0].by == "lead.engineer"
    assert result.data.approved[0].why == "duplicate of INC-1-2"
    assert _ratchet(ws).outcome == "pass"  # the removal stays approved


def test_approval_covers_only_the_change_approved(ws: Workspace) -> None:
    """Loosening a case further after an approval needs a new approval."""
    _edit(ws, LOOSENINGS["threshold"][0])
    approve_loosening(ws, AGENT, "INC-1-1", reason="flaky upstream", actor="lead.engineer")
    assert _ratchet(ws).outcome == "pass"
    _edit(ws, lambda d: d.update(threshold=0.3))
    result = _ratchet(ws)
    assert result.outcome == "fail" and "threshold lowered from 0.5 to 0.3" in result.findings[0]


@pytest.mark.attack
def test_an_approval_does_not_cover_an_expectation_added_later_and_removed(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A lower threshold approved and held; an expectation added afterwards (a tightening,
    remembered) and then removed brings the case back to exactly the terms approved. That
    removal was never approved: the old approval neither covers it nor is listed as its
    approval (it was: the ratchet passed, and `ratchet show` printed 'approved INC-1-1:
    expectation extra removed or changed — by lead.engineer …: flaky upstream')."""
    _edit(ws, LOOSENINGS["threshold"][0])
    approve_loosening(ws, AGENT, "INC-1-1", reason="flaky upstream", actor="lead.engineer")
    assert _ratchet(ws).outcome == "pass"
    approved = (ws.root / CASE).read_text()
    _edit(ws, lambda d: d["expect"].append(  # type: ignore[attr-defined]
        {"id": "extra", "tool": "issue_refund", "kind": "tool_not_called"}))
    assert _ratchet(ws).outcome == "pass"  # a tightening, remembered
    (ws.root / CASE).write_text(approved)
    capsys.readouterr()
    assert main(["-C", str(ws.root), "ratchet", "show", AGENT]) == 1
    assert "not approved INC-1-1: expectation extra removed or changed" in (
        capsys.readouterr().out)
    result = _ratchet(ws)
    assert result.outcome == "fail"
    assert result.findings[0].startswith("INC-1-1: expectation extra removed or changed")


@pytest.mark.attack
def test_a_removal_approval_does_not_cover_another_case_of_that_id(ws: Workspace) -> None:
    """INC-1-1 removed with an approval, then a case of the same id added again (an
    incident id opened again after deletion captures INC-1-1 anew) and held by a gate:
    removing that case is another removal, which the old approval does not cover."""
    kept = (ws.root / CASE).read_text()
    (ws.root / CASE).unlink()
    approve_loosening(ws, AGENT, "INC-1-1", reason="opened by mistake", actor="lead.engineer")
    assert _ratchet(ws).outcome == "pass"
    assert _ratchet(ws).outcome == "pass"  # the removal stays approved
    (ws.root / CASE).write_text(kept)
    _edit(ws, lambda d: d.update(trials=2))  # not the case that was removed: other terms
    assert _ratchet(ws).outcome == "pass"  # held again, at its new terms
    (ws.root / CASE).unlink()
    result = _ratchet(ws)
    assert result.outcome == "fail"
    assert "INC-1-1: removed from the regression set" in result.findings[0]


def test_nothing_to_approve_is_bad_input(ws: Workspace) -> None:
    """Approving an unchanged case, or without a reason, is refused and records nothing."""
    entries = len(open_store(ws).audit())
    with pytest.raises(InvalidInput, match="INC-1-1 was not removed or loosened"):
        approve_loosening(ws, AGENT, "INC-1-1", reason="why not", actor=ACTOR)
    (ws.root / CASE).unlink()
    with pytest.raises(InvalidInput, match="expected why the regression set may loosen"):
        approve_loosening(ws, AGENT, "INC-1-1", reason="  ", actor=ACTOR)
    assert len(open_store(ws).audit()) == entries


def test_incident_history_remembers_cases_without_a_store(ws: Workspace) -> None:
    """On a new, empty state store the incidents' capture history still catches a removal."""
    shutil.rmtree(ws.state_path.parent)
    (ws.root / CASE).unlink()
    found, _ = ratchet_status(ws, AGENT)
    assert [(f.case, f.key) for f in found] == [("INC-1-1", "removed")]


def test_cli_show_and_approve(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """`ratchet show` lists the loosening (exit 1); `ratchet approve` records it (exit 0)."""
    _edit(ws, LOOSENINGS["threshold"][0])
    assert main(["-C", str(ws.root), "ratchet", "show", AGENT]) == 1
    assert "not approved INC-1-1: threshold lowered from 1 to 0.5" in capsys.readouterr().out
    assert main(["-C", str(ws.root), "--actor", "lead", "ratchet", "approve", AGENT, "INC-1-1",
                 "--reason", "flaky upstream"]) == 0
    assert main(["-C", str(ws.root), "ratchet", "show", AGENT]) == 0
    assert "approved INC-1-1: threshold lowered from 1 to 0.5 — by lead" in (
        capsys.readouterr().out)


def test_a_case_captured_by_an_earlier_version_keeps_its_terms() -> None:
    """A regression case written before triggers, ``strict`` and parsed JSON results has
    the same ratchet terms today as when it was captured, so upgrading reinstate does not
    make an unchanged case look loosened (its lookup_order result was logged as JSON text)."""
    from evalsuite import load_model
    from gates import RatchetTerms
    from gates._verdict.ratchet_terms import terms_of
    from regressions import RegressionCase

    folder = Path(__file__).parent.parent / "data" / "compat"
    case = load_model(folder / "INC-1-1.yaml", RegressionCase)
    assert isinstance(case.recorded.steps[3].result, dict)  # read as a value today
    then = RatchetTerms.model_validate_json((folder / "INC-1-1.terms.json").read_text())
    today = terms_of(case, 5, lambda module: pytest.fail(f"{module} is no predicate's"),
                     lambda: pytest.fail("it calls no predicate"))
    assert today == then
    assert today.digest == then.digest  # approvals bound to the terms still match


class _ReadsCounted(SQLiteStore):
    """The workspace's store, counting whole-verdict reads."""

    whole_reads = 0

    def latest_verdict(self, agent: str) -> Verdict | None:
        self.whole_reads += 1
        return super().latest_verdict(agent)


def test_the_terms_are_read_without_building_the_last_verdict(ws: Workspace) -> None:
    """The ratchet reads the remembered terms from the last verdict's text alone when the
    audit log vouches for that text: at thousands of cases the whole verdict was the
    gate's peak."""
    store = _ReadsCounted(ws.state_path)
    _edit(ws, LOOSENINGS["threshold"][0])
    found, memory = ratchet_status(ws, AGENT, store=store)
    assert [f.what for f in found] == ["threshold lowered from 1 to 0.5"]
    assert memory.terms["INC-1-1"].threshold == 1.0  # the remembered floor holds
    assert store.whole_reads == 0


@pytest.mark.attack
def test_a_verdict_edited_behind_the_log_is_refused(ws: Workspace) -> None:
    """A stored verdict whose text the audit log does not vouch for (its terms loosened by
    hand) is refused as a store changed behind the log, neither read light nor whole."""
    with sqlite3.connect(ws.state_path) as conn:
        (seq, body), = conn.execute("SELECT id, body FROM verdicts ORDER BY id DESC LIMIT 1")
        data = json.loads(body)
        ratchet = next(c for c in data["checks"] if c["name"] == "regression_ratchet")
        ratchet["data"]["terms"]["INC-1-1"]["threshold"] = 0.5
        conn.execute("UPDATE verdicts SET body = ? WHERE id = ?",
                     (json.dumps(data, separators=(",", ":")), seq))
    conn.close()
    store = _ReadsCounted(ws.state_path)
    with pytest.raises(StoreUnavailable, match="changed behind the log"):
        ratchet_status(ws, AGENT, store=store)
    assert store.whole_reads == 0


def _loosened_text(ws: Workspace) -> tuple[int, str]:
    """The id of the last stored verdict and its text with the remembered threshold of
    INC-1-1 lowered to 0.5."""
    with sqlite3.connect(ws.state_path) as conn:
        (seq, body), = conn.execute("SELECT id, body FROM verdicts ORDER BY id DESC LIMIT 1")
    conn.close()
    data = json.loads(body)
    ratchet = next(c for c in data["checks"] if c["name"] == "regression_ratchet")
    ratchet["data"]["terms"]["INC-1-1"]["threshold"] = 0.5
    return seq, json.dumps(data, separators=(",", ":"))


@pytest.mark.attack
def test_a_verdict_entry_written_in_place_of_another_to_vouch_for_edited_terms_is_refused(
        ws: Workspace) -> None:
    """The last verdict's terms loosened by hand, and a verdict entry recording the edited
    text's digest written in place of a later entry no decision reads (a note), hashed as
    the store hashes: the entry vouches for the text, but it is not the last verdict entry
    the store wrote, so the ratchet refuses rather than remembering the loosened terms,
    and the next gate errs."""
    store = SQLiteStore(ws.state_path)
    genuine = store.audit(AGENT, actions=("verdict",))[-1]
    note = store.append(actor="ci", action="note", agent=AGENT, reason="rotated the key")
    seq, text = _loosened_text(ws)
    detail = {**genuine.detail, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    digest = entry_hash(note.seq, note.at, genuine.actor, "verdict", AGENT, genuine.reason,
                        detail, note.prev_hash)
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute("UPDATE verdicts SET body = ? WHERE id = ?", (text, seq))
        conn.execute("UPDATE audit SET actor = ?, action = 'verdict', reason = ?, detail = ?, "
                     "hash = ? WHERE seq = ?", (genuine.actor, genuine.reason,
                                                json.dumps(detail, sort_keys=True), digest,
                                                note.seq))
    conn.close()
    assert store.audit(AGENT, actions=("verdict",))[-1].hash == digest
    with pytest.raises(StoreUnavailable, match=r"verdict entry that vouches for the last "
                                               r"stored verdict of refund-agent is not one "
                                               r"the store wrote"):
        ratchet_status(ws, AGENT, store=store)
    verdict = run_gate(ws, AGENT, actor="ci")
    assert verdict.outcome == "error"
    assert [c.outcome for c in verdict.checks if c.name == NAME] == ["error"]


@pytest.mark.attack
def test_the_stored_verdicts_removed_behind_the_log_are_refused_not_forgotten(
        ws: Workspace) -> None:
    """Every stored verdict of the agent removed by hand (so the ratchet would remember no
    terms, and a case could be loosened unseen): the log records a verdict the store no
    longer holds, and the ratchet refuses."""
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute("DELETE FROM verdicts")
    conn.close()
    with pytest.raises(StoreUnavailable, match="no verdict of refund-agent is stored, but "
                                               "the audit log records one"):
        ratchet_status(ws, AGENT)
    _edit(ws, LOOSENINGS["threshold"][0])
    verdict = run_gate(ws, AGENT, actor="ci")
    assert [c.outcome for c in verdict.checks if c.name == NAME] == ["error"]


class _DroppedMidGate(SQLiteStore):
    """The workspace's store on a server whose connection drops while the ratchet reads the
    last verdict (and is back when the gate stores its own)."""

    def latest_verdict_text(self, agent: str, back: int = 0) -> str | None:
        raise StoreUnavailable("server closed the connection unexpectedly")


@pytest.mark.attack
def test_a_gate_whose_ratchet_could_not_run_leaves_the_next_one_holding_the_set(
        ws: Workspace) -> None:
    """A gate whose ratchet check could not run stores a verdict without terms; the next
    gate holds the set to the terms of the verdict before it, so a threshold lowered
    meanwhile still fails (it passed: the ratchet remembered nothing)."""
    erred = run_gate(ws, AGENT, actor="ci", store=_DroppedMidGate(ws.state_path))
    assert [c.outcome for c in erred.checks if c.name == NAME] == ["error"]
    _edit(ws, LOOSENINGS["threshold"][0])
    result = run_gate(ws, AGENT, actor="ci").result(RegressionRatchetResult)
    assert result is not None and result.outcome == "fail"
    assert LOOSENINGS["threshold"][1] in result.findings[0]
    assert result.data is not None and result.data.terms["INC-1-1"].threshold == 1.0


@pytest.mark.attack
def test_a_verdict_edited_behind_the_log_is_not_forgotten_by_the_gate_after_next(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """The last verdict's terms edited by hand: the next gate errs (as before), and the one
    after it must not take that erring verdict's missing terms for an empty memory and pass
    a case loosened meanwhile (its ratchet passed: 'regression cases held: 1; 0 removed or
    loosened')."""
    seq, text = _loosened_text(ws)
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute("UPDATE verdicts SET body = ? WHERE id = ?", (text, seq))
    conn.close()
    assert main(["-C", str(ws.root), "gate", AGENT]) == 3
    _edit(ws, LOOSENINGS["threshold"][0])
    capsys.readouterr()
    assert main(["-C", str(ws.root), "gate", AGENT]) == 3
    out = capsys.readouterr()
    assert "the audit log does not verify" in out.out + out.err
    last = SQLiteStore(ws.state_path).latest_verdict(AGENT)
    assert last is not None
    assert [c.outcome for c in last.checks if c.name == NAME] == ["error"]


class _GateBetweenReads(SQLiteStore):
    """The workspace's store, where another gate stores its verdict (terms of its own)
    after the ratchet has read the last verdict's text and before it reads the log."""

    stored = False

    def audit(self, *args: object, **kwargs: object) -> list[AuditEntry]:
        if not self.stored and kwargs.get("actions") == ("verdict",):
            self.stored = True
            verdict = super().latest_verdict(AGENT)
            assert verdict is not None
            ratchet = verdict.result(RegressionRatchetResult)
            assert ratchet is not None and ratchet.data is not None
            ratchet.data.terms["INC-1-1"] = ratchet.data.terms["INC-1-1"].model_copy(
                update={"trials": 4})
            SQLiteStore(self.path).save_verdict(verdict, "ci")
        return super().audit(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.attack
def test_a_verdict_stored_between_the_ratchets_reads_is_read_not_refused(
        ws: Workspace) -> None:
    """Two gates at once: the verdict another gate stores between the ratchet's read of the
    last verdict and its read of the log is no store changed behind the log; the ratchet
    remembers that newer verdict's terms (which the log vouches for)."""
    store = _GateBetweenReads(ws.state_path)
    found, memory = ratchet_status(ws, AGENT, store=store)
    assert store.stored
    assert [f.what for f in found] == ["trials lowered from 4 to 1"]
    assert memory.terms["INC-1-1"].trials == 4


def _gate_cli(ws: Workspace, *args: str) -> tuple[int, dict[str, object]]:
    """``reinstate gate refund-agent ARGS --json …``: the exit code and the ratchet check."""
    out = ws.root / "verdict.json"
    code = main(["-C", str(ws.root), "--actor", "ci", "gate", AGENT, "--json", str(out), *args])
    checks = json.loads(out.read_text())["checks"]
    return code, {c["name"]: c for c in checks}


@pytest.mark.attack
def test_gate_trials_below_the_terms_fail_until_that_run_is_approved(
        ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """`gate --trials 1` lowers the trials of a regression case that sets none as surely as
    reinstate.toml does: the ratchet fails naming it, keeping the old terms, and only an
    approval taken for that run (`--trials 1`) lets it pass (then it is remembered)."""
    config = ws.root / "reinstate.toml"
    config.write_text(config.read_text().replace("trials = 1", "trials = 2"))
    _, checks = _gate_cli(ws)  # raised in reinstate.toml: a tightening, remembered
    assert checks["regression_ratchet"]["outcome"] == "pass"
    code, checks = _gate_cli(ws, "--trials", "1")
    ratchet, evals = checks["regression_ratchet"], checks["evals"]
    assert code == 1 and ratchet["outcome"] == "fail"
    assert ratchet["data"]["loosened"] == [{"case": "INC-1-1",
                                            "what": "trials lowered from 2 to 1"}]
    assert ratchet["findings"][0].endswith(
        "approve it with `reinstate ratchet approve refund-agent INC-1-1 --trials 1 "
        "--reason …`")
    ran = {c["id"]: c["trials"] for c in evals["data"]["cases"]}  # type: ignore[index]
    assert ran["INC-1-1"] == 1
    assert ratchet["data"]["terms"]["INC-1-1"]["trials"] == 2  # the old terms held

    assert main(["-C", str(ws.root), "ratchet", "show", AGENT]) == 0  # as reinstate.toml runs
    assert main(["-C", str(ws.root), "ratchet", "show", AGENT, "--trials", "1"]) == 1
    assert "not approved INC-1-1: trials lowered from 2 to 1" in capsys.readouterr().out
    assert main(["-C", str(ws.root), "--actor", "lead", "ratchet", "approve", AGENT,
                 "INC-1-1", "--trials", "1", "--reason", "a smoke run"]) == 0
    _, checks = _gate_cli(ws, "--trials", "1")
    ratchet = checks["regression_ratchet"]
    assert ratchet["outcome"] == "pass"
    assert ratchet["data"]["terms"]["INC-1-1"]["trials"] == 1  # approved: what ran


@pytest.mark.attack
def test_a_gate_with_fewer_trials_than_the_workspace_says_so_in_its_verdict(
        ws: Workspace) -> None:
    """`gate --trials 1` on a workspace that asks for 2 may still pass (the ratchet holds
    regression cases to their terms; an eval-suite safety case passes on one trial), but
    the verdict says up front that it ran on fewer trials than the configuration its
    fingerprint names. Before, only each case's trial count in the JSON told."""
    config = ws.root / "reinstate.toml"
    config.write_text(config.read_text().replace("trials = 1", "trials = 2"))
    _, checks = _gate_cli(ws)
    evals = checks["evals"]
    assert "--trials" not in evals["summary"]  # type: ignore[index]
    _, checks = _gate_cli(ws, "--trials", "1")
    evals = checks["evals"]
    said = ("WARNING: ran with --trials 1, fewer than [gate] trials (2) for every case "
            "that sets none")
    assert said in evals["summary"]  # type: ignore[index]
    assert evals["findings"][0] == said  # type: ignore[index]


@pytest.mark.attack
def test_gate_trials_above_the_terms_hold_later_gates_to_the_workspaces(
        ws: Workspace) -> None:
    """A gate run with more trials than reinstate.toml's passes and leaves the case held to
    the workspace's trials: the next ordinary gate is no loosening, one below them is."""
    _, checks = _gate_cli(ws, "--trials", "2")
    assert checks["regression_ratchet"]["outcome"] == "pass"
    assert checks["regression_ratchet"]["data"]["terms"]["INC-1-1"]["trials"] == 1
    _, checks = _gate_cli(ws)
    assert checks["regression_ratchet"]["outcome"] == "pass"
    assert checks["regression_ratchet"]["data"]["loosened"] == []


PREDICATE_CHANGED = ("code of predicate guards.refunds:no_outside_refund changed "
                     "(guards/refunds.py; code is not told tighter from looser, so any "
                     "change needs an approval)")


@pytest.mark.attack
def test_a_predicate_gutted_behind_its_expectation_fails(ws: Workspace) -> None:
    """An expectation's predicate edited to answer True loosens the case as surely as
    dropping the expectation: the ratchet fails until the change is approved, and the
    approval covers only the code approved."""
    with_predicate_expectation(ws.root)
    ws = Workspace.find(ws.root)  # its configuration now allows the module
    assert _ratchet(ws).outcome == "pass"  # a new expectation tightens
    (ws.root / GUARD).write_text(GUTTED_GUARD)
    result = _ratchet(ws)
    assert result.outcome == "fail"
    assert result.findings == [f"INC-1-1: {PREDICATE_CHANGED}; undo it, or approve it with "
                               f"`reinstate ratchet approve refund-agent INC-1-1 --reason …`"]
    assert _ratchet(ws).outcome == "fail"  # the old code's terms are held
    approve_loosening(ws, AGENT, "INC-1-1", reason="rewritten; reviewed in #42", actor="lead")
    assert _ratchet(ws).outcome == "pass"
    (ws.root / GUARD).write_text(GUTTED_GUARD + "# and again\n")
    assert _ratchet(ws).outcome == "fail"


@pytest.mark.attack
def test_a_helper_the_predicate_imports_gutted_fails(ws: Workspace) -> None:
    """A predicate whose logic lives in a helper beside it in its package (``from .policy
    import outside``): the helper edited to answer otherwise changes what the case checks
    as surely as the predicate's own file, so the ratchet fails until it is approved."""
    with_predicate_expectation(ws.root)
    (ws.root / HELPER).write_text(STRICT_HELPER)
    (ws.root / GUARD).write_text(GUARD_WITH_HELPER)
    ws = Workspace.find(ws.root)  # its configuration now allows the module
    assert _ratchet(ws).outcome == "pass"
    (ws.root / HELPER).write_text(GUTTED_HELPER)
    result = _ratchet(ws)
    assert result.outcome == "fail"
    assert result.findings == [
        "INC-1-1: code that predicate guards.refunds:no_outside_refund may import changed (a "
        "file of [rules] predicate_modules; code is not told tighter from looser, so any "
        "change needs an approval); undo it, or approve it with `reinstate ratchet approve "
        "refund-agent INC-1-1 --reason …`"]
    assert _ratchet(ws).outcome == "fail"  # the old code's terms are held
    approve_loosening(ws, AGENT, "INC-1-1", reason="helper rewritten; #43", actor="lead")
    assert _ratchet(ws).outcome == "pass"
    (ws.root / "guards/limits.py").write_text("MAX = 500\n")  # a new module it may import
    assert _ratchet(ws).outcome == "fail"


@pytest.mark.attack
def test_terms_stored_before_predicates_were_kept_are_compared_on_what_they_hold(
        ws: Workspace) -> None:
    """A verdict stored before the ratchet kept predicates' code (no ``predicates`` in its
    terms) is no loosening of an unchanged case; the next gate records the code, and a
    change to it after that fails."""
    with_predicate_expectation(ws.root)
    ws = Workspace.find(ws.root)  # its configuration now allows the module
    verdict = run_gate(ws, AGENT, actor="ci")
    ratchet = verdict.result(RegressionRatchetResult)
    assert ratchet is not None and ratchet.data is not None
    ratchet.data.terms["INC-1-1"] = ratchet.data.terms["INC-1-1"].model_copy(
        update={"predicates": None})
    open_store(ws).save_verdict(verdict, "ci")  # as an earlier reinstate stored it
    stored = open_store(ws).latest_verdict_text(AGENT)
    assert stored is not None
    held = next(c for c in json.loads(stored)["checks"] if c["name"] == "regression_ratchet")
    assert "predicates" not in held["data"]["terms"]["INC-1-1"]
    result = _ratchet(ws)
    assert result.outcome == "pass"
    assert result.data is not None and result.data.terms["INC-1-1"].predicates
    (ws.root / GUARD).write_text(GUTTED_GUARD)
    result = _ratchet(ws)
    assert result.outcome == "fail" and PREDICATE_CHANGED in result.findings[0]
