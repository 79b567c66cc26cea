"""Restore refuses without a current passing verdict and every change verified."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gates import MemoryStore, Refused, Workspace, read_mode, restore, run_gate
from regressions import utc_now
from tests.conftest import RunCli
from tests.helpers import ACTOR, analysed, opened_again, resolved

pytestmark = pytest.mark.slow

Fix = Callable[[Workspace], list[str]]


def _refusal(ws: Workspace) -> list[str]:
    with pytest.raises(Refused) as caught:
        restore(ws, "refund-agent", actor=ACTOR)
    assert read_mode(ws, "refund-agent").mode == "review"
    return caught.value.reasons


def test_refused_without_any_verdict(example: Workspace, fixed: Fix) -> None:
    """With the incident resolved on paper but no gate run, restore names the missing verdict."""
    resolved(example, fixed)
    reasons = _refusal(example)
    assert reasons == ["no gate verdict for refund-agent: run `reinstate gate refund-agent`"]


def test_refused_when_the_verdict_failed(example: Workspace) -> None:
    """A failing verdict blocks restore and the failing checks are named."""
    analysed(example)
    verdict = run_gate(example, "refund-agent", actor=ACTOR)
    assert verdict.outcome == "fail"
    reasons = _refusal(example)
    assert any("is fail" in r and "control_changes" in r for r in reasons)
    assert any("no control change recorded" in r for r in reasons)


def test_refused_when_a_control_file_changed_after_the_verdict(example: Workspace,
                                                               fixed: Fix) -> None:
    """Editing a control file after a passing verdict makes it stale, naming the file."""
    resolved(example, fixed)
    assert run_gate(example, "refund-agent", actor=ACTOR).outcome == "pass"
    review = example.agent_dir("refund-agent") / "review.yaml"
    review.write_text(review.read_text().replace("exclusiveMinimum: 150",
                                                 "exclusiveMinimum: 100"))  # tightened later
    reasons = _refusal(example)
    assert reasons == [
        f"the latest verdict ({_stamp(example)}) is stale: changed since: "
        "agents/refund-agent/review.yaml"
    ]


def test_refused_when_a_change_is_unverified(example: Workspace, fixed: Fix) -> None:
    """A change recorded after the passing verdict is not covered by it."""
    from gates import record_change

    incident_id = resolved(example, fixed)
    assert run_gate(example, "refund-agent", actor=ACTOR).outcome == "pass"
    record_change(example, incident_id, layer="review_gate", addresses=["F-4"],
                  description="also route refunds on weekends", actor=ACTOR)
    reasons = _refusal(example)
    assert reasons == [f"{incident_id} CC-6 (review_gate) is not verified by the latest verdict"]


def test_refused_when_the_fix_does_not_stop_the_harm(example: Workspace, fixed: Fix) -> None:
    """Without the permission fix, the permission change does not verify and restore says so."""
    resolved(example, fixed)
    permissions = example.agent_dir("refund-agent") / "permissions.yaml"
    baseline = example.incidents_dir / "INC-1.baseline" / "permissions.yaml"
    permissions.write_bytes(baseline.read_bytes())
    verdict = run_gate(example, "refund-agent", actor=ACTOR)
    assert verdict.outcome == "fail"
    unverified = [v for v in verdict.verifications if not v.verified]
    assert [(v.change, v.layer) for v in unverified] == [("CC-1", "tool_permission_boundary")]
    assert "still gets through today" in unverified[0].reason
    reasons = _refusal(example)
    assert "INC-1 CC-1 (tool_permission_boundary) is not verified by the latest verdict" in reasons


def test_allowed_on_a_current_passing_verdict(example: Workspace, fixed: Fix) -> None:
    """With everything in place, restore sets full and marks the incident restored."""
    incident_id = resolved(example, fixed)
    assert run_gate(example, "refund-agent", actor=ACTOR)
    done = restore(example, "refund-agent", actor=ACTOR)
    assert done.incidents == [incident_id]
    assert read_mode(example, "refund-agent").mode == "full"
    incident = example.incidents().load(incident_id)
    assert incident.phase == "restored"
    assert incident.history[-1].action == "restore"


def test_refused_when_the_store_holds_no_verdict(example: Workspace, fixed: Fix) -> None:
    """A store that was swapped or emptied holds no verdict, and restore refuses."""
    resolved(example, fixed)
    run_gate(example, "refund-agent", actor=ACTOR)
    with pytest.raises(Refused) as caught:
        restore(example, "refund-agent", actor=ACTOR, store=MemoryStore())
    assert any("no gate verdict" in r for r in caught.value.reasons)


def _stamp(ws: Workspace) -> str:
    from gates import open_store

    verdict = open_store(ws).latest_verdict("refund-agent")
    assert verdict is not None and verdict.created_at <= utc_now()
    return verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")


@pytest.mark.attack
def test_the_restore_entry_names_the_verdict_the_restore_was_decided_on(
        restorable: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate that stores a failing verdict between restore's decision and its mode write
    does not become the verdict the restore entry says it restored on."""
    import gates._response.restore as restore_module
    from gates import open_store
    from gates._store.backends import verdict_digest

    store = open_store(restorable)
    passing = store.latest_verdict("refund-agent")
    assert passing is not None and passing.outcome == "pass"
    decided = restore_module.restore_blockers

    def then_a_gate_fails(*args: object, **kwargs: object) -> list[str]:
        reasons = decided(*args, **kwargs)  # type: ignore[arg-type]
        later = passing.model_copy(update={"outcome": "fail", "created_at": utc_now()})
        store.save_verdict(later, "ci")
        return reasons

    monkeypatch.setattr(restore_module, "restore_blockers", then_a_gate_fails)
    restore(restorable, "refund-agent", actor=ACTOR, store=store)
    entry = store.audit("refund-agent", actions=("mode",))[-1]
    assert entry.detail["mode"] == "full"
    assert entry.detail["verdict"] == verdict_digest(passing)
    assert entry.detail["verdict_created_at"] == passing.created_at.isoformat()


def _every_layer_failed_and_permissions_unfixed(example: Workspace, fixed: Fix) -> str:
    """A captured incident with a gap found on every layer, the example fix merged but
    permissions.yaml put back as it was at the incident; its id."""
    from gates import record_finding
    from regressions import LAYERS
    from tests.helpers import captured

    incident_id = captured(example)
    for layer in LAYERS:
        record_finding(example, incident_id, layer=layer, gap=True,
                       description=f"{layer} gap", actor=ACTOR)
    fixed(example)
    permissions = example.agent_dir("refund-agent") / "permissions.yaml"
    baseline = example.incidents_dir / f"{incident_id}.baseline" / "permissions.yaml"
    permissions.write_bytes(baseline.read_bytes())  # the permission boundary is not fixed
    return incident_id


@pytest.mark.attack
def test_a_control_layer_gap_addressed_only_by_a_prompt_change_does_not_clear(
        example: Workspace, fixed: Fix) -> None:
    """The RCA records a permission-boundary gap (F-1) and the resolution lets a prompt
    change "address" it, beside real changes on the other layers: permissions.yaml is left
    as it was at the incident (the review gate routes the harm, so every replay check
    passes). A prompt is no control: the gate fails and restore refuses, naming F-1."""
    from gates import record_change, schedule_review

    incident_id = _every_layer_failed_and_permissions_unfixed(example, fixed)
    for layer, finding in (("eval_coverage", "F-2"), ("acceptance_criteria", "F-3"),
                           ("review_gate", "F-4")):
        record_change(example, incident_id, layer=layer, addresses=[finding],
                      description=f"fix {layer}", actor=ACTOR)
    record_change(example, incident_id, layer="prompt", addresses=["F-1"],
                  description="agent 1.5.0: told to refund only the original payment",
                  actor=ACTOR)
    schedule_review(example, incident_id, on=utc_now().date(), actor=ACTOR)
    verdict = run_gate(example, "refund-agent", actor=ACTOR)
    gap = (f"{incident_id} finding F-1 (tool_permission_boundary) has a gap that only a "
           f"prompt change addresses: a control-layer gap needs a control change")
    control_changes = next(c for c in verdict.checks if c.name == "control_changes")
    assert verdict.outcome == "fail" and gap in control_changes.findings
    assert gap in _refusal(example)


def test_a_gap_addressed_only_on_another_layer_passes_with_a_warning(
        example: Workspace, fixed: Fix) -> None:
    """F-1's permission-boundary gap addressed by the review-gate change alone (the review
    gate routes the harm, so its replay verifies): a compensating control the team may
    choose. The gate passes, and its control_changes check says, as a WARNING, that the
    permission boundary the root cause names was left as it was."""
    from gates import record_change, schedule_review

    incident_id = _every_layer_failed_and_permissions_unfixed(example, fixed)
    for layer, findings in (("eval_coverage", ["F-2"]), ("acceptance_criteria", ["F-3"]),
                            ("review_gate", ["F-4", "F-1"])):
        record_change(example, incident_id, layer=layer, addresses=findings,
                      description=f"fix {layer}", actor=ACTOR)
    schedule_review(example, incident_id, on=utc_now().date(), actor=ACTOR)
    verdict = run_gate(example, "refund-agent", actor=ACTOR)
    control_changes = next(c for c in verdict.checks if c.name == "control_changes")
    assert verdict.outcome == "pass", [c.findings for c in verdict.checks]
    assert "WARNING: 1 gap(s) addressed only on another control layer" in \
        control_changes.summary
    assert (f"WARNING: {incident_id} finding F-1 (tool_permission_boundary) is addressed only "
            f"by a change on review_gate: the tool_permission_boundary layer the root cause "
            f"names is left as it was") in control_changes.findings


@pytest.mark.attack
def test_an_incident_id_opened_again_does_not_inherit_the_old_restore(
        back_in_full: Workspace, inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """An incident restored, its file deleted, a new one opened with the same id and
    contained, its first change recorded as CC-1 on the permission boundary like the old
    one's: the audit log's restore of the old incident (on a verdict that verified an INC-1
    CC-1) is not the new one's, so the new incident stays open, restore refuses (three
    layers without a finding, no review) and the agent stays suspended."""
    from gates import record_change, record_finding

    incident_id = opened_again(back_in_full)
    record_finding(back_in_full, incident_id, layer="tool_permission_boundary", gap=True,
                   description="any amount refunded", actor=ACTOR)
    record_change(back_in_full, incident_id, layer="tool_permission_boundary",
                  addresses=["F-1"], description="cap refunds", actor=ACTOR)
    code, out, err = inline_cli(back_in_full, "restore", "refund-agent")
    assert code == 1, out + err
    assert f"{incident_id} has no post-incident review scheduled" in out + err
    assert read_mode(back_in_full, "refund-agent").mode == "suspended"
    assert back_in_full.incidents().load(incident_id).phase == "resolving"


@pytest.mark.attack
def test_a_verdict_made_before_a_containment_verifies_none_of_its_changes(
        back_in_full: Workspace, inline_cli: Callable[..., tuple[int, str, str]]) -> None:
    """The new incident of a reused id records the same findings and changes (CC-1 …) as
    the deleted one: the verdict the old incident was restored on verified an INC-1 CC-1,
    but was made before this incident was contained, so it verified none of this one's
    changes; restore refuses until a gate runs again."""
    from datetime import timedelta

    from gates import schedule_review

    incident_id = _reopened_with_every_change(back_in_full)
    schedule_review(back_in_full, incident_id, on=(utc_now() + timedelta(days=7)).date(),
                    actor=ACTOR)
    code, out, err = inline_cli(back_in_full, "restore", "refund-agent")
    assert code == 1, out + err
    assert f"{incident_id} was contained after the latest verdict" in " ".join(
        (out + err).split())
    assert read_mode(back_in_full, "refund-agent").mode == "suspended"


@pytest.mark.attack
def test_a_containment_time_moved_back_by_hand_does_not_date_an_old_verdict_after_it(
        back_in_full: Workspace, cli: RunCli) -> None:
    """As above, and the new incident's file then edited so it reads as detected and
    contained before the old verdict was made: the audit log holds when it was contained
    (after that verdict), so restore still refuses, and so does check. Before, the file's
    time alone decided: restore put the agent in full on a verdict that never saw this
    incident, and check cleared it."""
    from datetime import timedelta

    import yaml

    from gates import record_change, schedule_review

    incident_id = _reopened_with_every_change(back_in_full)
    record_change(back_in_full, incident_id, layer="prompt", addresses=[],
                  description="agent 1.5.0", actor=ACTOR)
    schedule_review(back_in_full, incident_id, on=(utc_now() + timedelta(days=7)).date(),
                    actor=ACTOR)
    path = back_in_full.incidents().path(incident_id)
    record = yaml.safe_load(path.read_text())
    record["detected_at"] = "2020-01-01T00:00:00Z"
    record["containment"]["contained_at"] = "2020-01-01T01:00:00Z"
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    back_in_full.incidents().load(incident_id)  # a file every read accepts

    restored = cli("restore", "refund-agent", cwd=back_in_full.root)
    assert restored.returncode == 1, restored.stdout + restored.stderr
    assert f"{incident_id} was contained after the latest verdict" in " ".join(
        restored.stderr.split())
    assert read_mode(back_in_full, "refund-agent").mode == "suspended"
    assert cli("check", "refund-agent", cwd=back_in_full.root).returncode == 1


@pytest.mark.attack
def test_a_review_dated_before_the_incident_is_not_a_post_incident_review(
        restorable: Workspace, cli: RunCli) -> None:
    """A post-incident review dated before the incident was detected (in any time zone)
    cannot be one: `incident review --on` refuses it (exit 2, nothing written), and one
    typed into the file does not meet restore's condition. Before, `--on 2000-01-01` was
    recorded and restore put the agent in full on it."""
    path = restorable.incidents().path("INC-1")
    before = path.read_bytes()
    typo = cli("incident", "review", "INC-1", "--on", "2000-01-01", cwd=restorable.root)
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "--on" in typo.stderr and "2000-01-01" in typo.stderr
    assert path.read_bytes() == before
    text = path.read_text()
    scheduled = restorable.incidents().load("INC-1").post_incident_review
    assert scheduled is not None
    path.write_text(text.replace(f"post_incident_review: '{scheduled.isoformat()}'",
                                 "post_incident_review: '2000-01-01'"))
    assert restorable.incidents().load("INC-1").post_incident_review.isoformat() == (  # type: ignore[union-attr]
        "2000-01-01")
    refused = cli("restore", "refund-agent", cwd=restorable.root)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "INC-1's post-incident review (2000-01-01) is dated before the incident was " \
           "detected" in " ".join(refused.stderr.split())
    assert read_mode(restorable, "refund-agent").mode == "review"


def _reopened_with_every_change(ws: Workspace) -> str:
    """The id of a restored incident opened again by hand (its file deleted), contained,
    with a finding on every layer and a change addressing each: the same ids as the deleted
    incident's."""
    from gates import record_change, record_finding
    from regressions import LAYERS

    incident_id = opened_again(ws)
    for layer in LAYERS:
        record_finding(ws, incident_id, layer=layer, gap=True, description=f"{layer} gap",
                       actor=ACTOR)
    for layer, finding in (("tool_permission_boundary", "F-1"), ("eval_coverage", "F-2"),
                           ("acceptance_criteria", "F-3"), ("review_gate", "F-4")):
        record_change(ws, incident_id, layer=layer,  # type: ignore[arg-type]
                      addresses=[finding], description=f"fix {layer}", actor=ACTOR)
    return incident_id
