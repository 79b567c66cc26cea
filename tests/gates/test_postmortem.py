"""`reinstate postmortem`: the incident written up from its records, gaps said out loud."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from evalsuite import dump_yaml
from gates import Workspace, contain, open_incident, postmortem, postmortem_markdown
from regressions import Incident, Investigation, utc_now
from tests.conftest import RunCli, tree
from tests.helpers import ACTOR, captured


def _section(text: str, title: str) -> str:
    """The lines of one ``## title`` section."""
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_restored_incident_is_written_up_in_full(back_in_full: Workspace) -> None:
    """Clock, notifications, RCA per layer, verified changes, cases and the review are there."""
    text = postmortem_markdown(postmortem(back_in_full, "INC-1"))
    assert text.startswith("# INC-1 postmortem: over-refund to another account\n")
    assert "| Severity | sev2 |" in text
    clock = _section(text, "The clock")
    assert "| detected |" in clock and "the clock starts here" in clock
    assert "✅ within the 4h target |" in clock
    assert "| restored |" in clock and "no restore target is set" in clock
    containment = _section(text, "Containment")
    assert "**review** mode. Notified: legal, compliance, eng-lead." in containment
    assert "**Scope of harm** (as known at containment): one refund" in containment
    assert "**Not investigated.**" in _section(text, "Timeline")
    rca = _section(text, "Root cause, layer by layer")
    assert [line.split(" | ")[0] for line in rca.splitlines() if line.startswith("| `")] == [
        "| `tool_permission_boundary`", "| `eval_coverage`", "| `acceptance_criteria`",
        "| `review_gate`"]
    changes = _section(text, "Control changes and their verification")
    assert "(**PASS**, computed" in changes
    assert changes.count("✅ verified") == 5 and "not verified" not in changes
    assert "allow → **deny** (`permissions.tools.issue_refund.arguments`)" in changes
    assert "- `INC-1-1`, captured" in _section(text, "Regression cases added")
    follow_ups = _section(text, "Follow-up actions")
    assert "- [ ] investigate: reconstruct the timeline" in follow_ups
    assert "- [ ] hold the post-incident review on " in follow_ups
    assert "The post-incident review is on " in _section(text, "Review")


def test_missed_target_and_missing_notifications_are_flagged(example: Workspace) -> None:
    """A late containment that skipped legal shows the miss and turns both into follow-ups."""
    incident = open_incident(example, "refund-agent", summary="late one", severity="sev1",
                             actor=ACTOR, detected_at=utc_now() - timedelta(hours=6))
    contain(example, incident.id, mode="suspended", notify=["eng-lead"], scope="unknown",
            actor=ACTOR)
    written = postmortem(example, incident.id)
    contained = next(c for c in written.clock if c.what == "contained")
    assert contained.met is False and contained.target == "MISSED the 4h target"
    assert written.not_notified == ["legal", "compliance"]
    text = postmortem_markdown(written)
    assert "❌ MISSED the 4h target" in text
    assert "**Not notified, though the workspace requires it:** legal, compliance." in text
    assert "never been gated, so no change is verified" in text
    assert text.count("❌ no finding recorded") == 4
    assert "None: the triggering run has not been captured." in text
    assert any(a.startswith("review why containment took 6h") for a in written.follow_ups)
    assert "notify legal: reinstate.toml requires it at containment" in written.follow_ups


def test_investigation_timeline_is_rendered_when_present(example: Workspace) -> None:
    """An incident with an investigation shows its timeline and scope instead of a gap."""
    incident_id = captured(example)
    path = example.incidents().path(incident_id)
    incident = example.incidents().load(incident_id)
    investigation = Investigation.model_validate({
        "investigated_at": utc_now(), "investigated_by": ACTOR,
        "logs": [{"path": "logs/2026-11-25-refund-agent.jsonl", "sha256": "0" * 64,
                  "format": "native"}],
        "signature": {"match": [{"kind": "tool_call", "tool": "issue_refund"}]},
        "scope": {"runs_searched": 3, "steps_searched": 30, "runs_matched": 1,
                  "calls_matched": 1, "outputs_matched": 0,
                  "runs": [{"run_id": "run-7f3a97", "matches": 1,
                            "first_match": "logs/2026-11-25-refund-agent.jsonl:6"}]},
        "timeline": [{"at": "2026-11-25T21:09:14Z", "kind": "tool_call",
                      "summary": "issue_refund(amount=1250.0) to store_credit:C-7731",
                      "run_id": "run-7f3a97", "step": 4,
                      "source": "logs/2026-11-25-refund-agent.jsonl:6"}],
    })
    path.write_text(dump_yaml(incident.model_copy(update={"investigation": investigation})))
    text = postmortem_markdown(postmortem(example, incident_id))
    timeline = _section(text, "Timeline")
    assert "Not investigated" not in timeline
    assert ("| 2026-11-25 21:09 UTC | tool call: issue_refund(amount=1250.0) to "
            "store_credit:C-7731 | logs/2026-11-25-refund-agent.jsonl:6 |") in timeline
    assert "- scope of impact: 1 of 3 runs matched" in timeline
    assert "investigate: reconstruct" not in _section(text, "Follow-up actions")


@pytest.mark.slow
def test_cli_writes_or_prints_the_postmortem(back_in_full: Workspace, cli: RunCli) -> None:
    """--markdown writes the file; without it the postmortem is printed."""
    written = cli("postmortem", "INC-1", "--markdown", "pm/INC-1.md", cwd=back_in_full.root)
    assert written.returncode == 0, written.stderr
    assert (back_in_full.root / "pm/INC-1.md").read_text().startswith("# INC-1 postmortem")
    printed = cli("postmortem", "INC-1", cwd=back_in_full.root)
    assert printed.returncode == 0 and "INC-1 postmortem" in printed.stdout


@pytest.mark.slow
def test_unknown_incident_writes_nothing(back_in_full: Workspace, cli: RunCli) -> None:
    """A wrong incident id is exit 2, one line, and no file."""
    before = tree(back_in_full.root)
    result = cli("postmortem", "INC-9", "--markdown", "pm.md", cwd=back_in_full.root)
    assert result.returncode == 2 and "unknown incident 'INC-9'" in result.stderr
    assert tree(back_in_full.root) == before


def test_incident_never_contained_is_written_up_without_a_store(example: Workspace) -> None:
    """An incident opened but not contained, in a workspace with no state store yet."""
    incident = open_incident(example, "refund-agent", summary="just opened", severity="sev3",
                             actor=ACTOR)
    assert not example.state_path.exists()
    text = postmortem_markdown(postmortem(example, incident.id))
    assert "**Not contained.**" in text
    assert "| contained | — | — | ❌ not contained |" in text
    assert "never been gated, so no change is verified" in text
    assert "INC-1 was never contained: contain it first" in text


@pytest.mark.slow
@pytest.mark.attack
def test_closing_before_the_review_is_not_written_up_as_after_it(back_in_full: Workspace,
                                                                 cli: RunCli) -> None:
    """INC-1, restored with its review a week away, closed by hand today: the postmortem
    must not say it closed after the post-incident review. The clock marks the closing
    before the review, and holding the review stays a follow-up."""
    path = back_in_full.incidents_dir / "INC-1.yaml"
    path.write_text(path.read_text() + f"closed_at: '{utc_now().isoformat()}'\n")
    incident = back_in_full.incidents().load("INC-1")
    assert incident.phase == "closed" and incident.post_incident_review is not None
    review = incident.post_incident_review.isoformat()
    printed = cli("postmortem", "INC-1", cwd=back_in_full.root)
    assert printed.returncode == 0, printed.stderr
    clock = _section(printed.stdout, "The clock")
    closed = next(line for line in clock.splitlines() if line.startswith("| closed |"))
    assert "after the post-incident review" not in closed
    assert f"❌ BEFORE the post-incident review of {review}" in closed
    assert (f"- [ ] hold the post-incident review on {review}: INC-1 was closed before it"
            in _section(printed.stdout, "Follow-up actions"))


def _contained_late(example: Workspace, hours: int) -> tuple[Incident, Path, Incident]:
    """A sev1 incident detected ``hours`` ago and suspended now: the incident as opened,
    its file, and its record as contained."""
    incident = open_incident(example, "refund-agent", summary="late one", severity="sev1",
                             actor=ACTOR, detected_at=utc_now() - timedelta(hours=hours))
    contain(example, incident.id, mode="suspended", notify=["legal", "compliance", "eng-lead"],
            scope="unknown", actor=ACTOR)
    record = example.incidents().load(incident.id)
    assert record.containment is not None
    return incident, example.incidents().path(incident.id), record


@pytest.mark.attack
def test_a_hand_edited_clock_is_written_up_as_the_audit_log_has_it(example: Workspace,
                                                                  cli: RunCli) -> None:
    """A late containment whose file was then edited (contained an hour after detection,
    and restored) is written up for compliance as the audit log has it: contained when its
    entry was written, the 4h target MISSED, not restored, and the hand edit named as a
    follow-up. Before, the postmortem printed the file: "✅ within the 4h target", a
    restore at the typed time, and no follow-up to restore."""
    incident, path, record = _contained_late(example, hours=6)
    early = record.detected_at + timedelta(hours=1)
    edited = record.model_copy(update={
        "containment": record.containment.model_copy(update={"contained_at": early}),
        "restored_at": early + timedelta(minutes=30)})
    path.write_text(dump_yaml(edited))
    assert example.incidents().load(incident.id).phase == "restored"  # the file reads well

    shown = cli("postmortem", incident.id, cwd=example.root)
    assert shown.returncode == 0, shown.stderr
    clock = _section(shown.stdout, "The clock")
    assert "MISSED the 4h target" in clock and "within the 4h target" not in clock
    assert "not restored yet" in clock
    assert "| Phase | contained |" in shown.stdout
    follow_ups = _section(shown.stdout, "Follow-up actions")
    assert "the file was edited by hand; undo the edit" in " ".join(follow_ups.split())
    assert "restore refund-agent once every change is verified" in follow_ups


def test_a_containment_seconds_past_its_target_never_reads_as_on_it(example: Workspace,
                                                                    cli: RunCli) -> None:
    """Contained 4h 00m 30s after detection: the clock said "4h 00m" next to "MISSED the 4h
    target" (the minutes were floored), a time that meets the target it missed. A started
    minute now counts whole, in `incident show` and in the postmortem alike."""
    incident, path, record = _contained_late(example, hours=5)
    taken = timedelta(hours=4, seconds=30)  # detection typed as the pager had it
    path.write_text(dump_yaml(record.model_copy(update={
        "detected_at": record.containment.contained_at - taken})))
    recounted = example.incidents().load(incident.id).time_to_contain
    assert recounted == taken and recounted.total_seconds() > 4 * 3600
    shown = cli("incident", "show", incident.id, cwd=example.root)
    assert shown.returncode == 0, shown.stderr
    assert "in 4h 01m: MISSED the 4h target" in shown.stdout, shown.stdout
    written = cli("postmortem", incident.id, cwd=example.root)
    assert written.returncode == 0, written.stderr
    clock = _section(written.stdout, "The clock")
    assert "| 4h 01m | ❌ MISSED the 4h target |" in clock, clock
    assert "4h 00m" not in shown.stdout + written.stdout
