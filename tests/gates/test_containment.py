"""Containment takes effect at once, is timed against its target, and modes fail closed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from gates import (
    Workspace,
    agent_mode,
    contain,
    open_incident,
    open_store,
    read_mode,
)
from regressions import utc_now
from tests.conftest import RunCli
from tests.helpers import ACTOR, captured


def _open(ws: Workspace, hours_ago: float) -> str:
    return open_incident(ws, "refund-agent", summary="over-refund", severity="sev1",
                         actor=ACTOR, detected_at=utc_now() - timedelta(hours=hours_ago)).id


def test_containment_sets_the_mode_and_snapshots_the_controls(example: Workspace) -> None:
    """The mode changes, the incident records who and when, and the baseline copies match."""
    incident_id = _open(example, 1)
    done = contain(example, incident_id, mode="suspended", notify=["legal", "compliance",
                   "eng-lead"], scope="one refund", actor=ACTOR)
    assert read_mode(example, "refund-agent").mode == "suspended"
    containment = done.incident.containment
    assert containment is not None and containment.contained_by == ACTOR
    assert done.incident.containment_target_met is True and done.warnings == []
    folder = example.incidents_dir / containment.baseline.directory
    for name in ("permissions.yaml", "acceptance.yaml", "review.yaml", "checklist.yaml"):
        assert (folder / name).read_bytes() == (
            example.agent_dir("refund-agent") / name).read_bytes()
    assert containment.baseline.eval_tags["refund_request"] == 6
    entry = open_store(example).audit("refund-agent")[-1]
    assert entry.detail == {"mode": "suspended", "incident": incident_id}


@pytest.mark.slow
def test_a_missed_target_is_recorded_and_shown(example: Workspace, cli: RunCli) -> None:
    """Containment 5 hours after detection misses the 4 hour target, and the CLI says so."""
    incident_id = _open(example, 5)
    result = cli("contain", incident_id, "--mode", "review", "--notify",
                 "legal,compliance,eng-lead", "--scope", "x", cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "MISSED the 4h target" in result.stdout
    assert example.incidents().load(incident_id).containment_target_met is False


@pytest.mark.parametrize("target", ["inf", "1e12"])
def test_a_target_beyond_any_time_span_is_shown_not_a_crash(example: Workspace, cli: RunCli,
                                                            target: str) -> None:
    """A containment target longer than Python's time spans (`inf`, a trillion hours), as
    reinstate.toml allows it: contain records and shows it, and the incident and its
    postmortem read it, each without a traceback."""
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text().replace("target_hours = 4", f"target_hours = {target}"))
    incident_id = _open(example, 1)
    result = cli("contain", incident_id, "--mode", "review", "--notify",
                 "legal,compliance,eng-lead", "--scope", "x", cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "h target" in result.stdout and "Traceback" not in result.stderr
    assert read_mode(example, "refund-agent").mode == "review"
    for command in (("incident", "show", incident_id), ("postmortem", incident_id)):
        shown = cli(*command, cwd=example.root)
        assert shown.returncode == 0, shown.stderr
        assert "within the" in shown.stdout and "Traceback" not in shown.stderr


def test_containment_never_loosens_a_stricter_mode(example: Workspace) -> None:
    """A second incident asking for review keeps an agent that is already suspended."""
    first, second = _open(example, 1), _open(example, 1)
    contain(example, first, mode="suspended", notify=["legal"], scope="a", actor=ACTOR)
    done = contain(example, second, mode="review", notify=["legal"], scope="b", actor=ACTOR)
    assert done.mode == "suspended"
    assert read_mode(example, "refund-agent").mode == "suspended"
    assert any("kept that" in w for w in done.warnings)


def test_skipped_notifications_are_flagged(example: Workspace) -> None:
    """Containing without telling legal and compliance works, with a warning naming them."""
    done = contain(example, _open(example, 1), mode="review", notify=["eng-lead"],
                   scope="x", actor=ACTOR)
    assert done.warnings == ["not notified: legal, compliance (required by reinstate.toml)"]


@pytest.mark.slow
def test_unreadable_store_answers_suspended(example: Workspace, cli: RunCli) -> None:
    """With the state store corrupted, the mode is suspended and the CLI exits 3."""
    example.state_path.parent.mkdir(parents=True, exist_ok=True)
    example.state_path.write_bytes(b"\x00garbage" * 64)
    assert read_mode(example, "refund-agent").mode == "suspended"
    assert agent_mode("refund-agent", example.root) == "suspended"
    result = cli("mode", "refund-agent", "--json", cwd=example.root)
    assert result.returncode == 3
    reading = json.loads(result.stdout)
    assert reading["mode"] == "suspended" and reading["degraded"]


def test_missing_store_answers_suspended(example: Workspace) -> None:
    """A workspace whose state store was removed does not answer full."""
    assert not example.state_path.exists()
    assert read_mode(example, "refund-agent").mode == "suspended"


def test_no_workspace_answers_suspended(tmp_path: Path) -> None:
    """The runtime call never raises for a missing workspace; it answers suspended."""
    assert agent_mode("refund-agent", tmp_path) == "suspended"


@pytest.mark.slow
def test_never_contained_agent_is_full(example: Workspace, cli: RunCli) -> None:
    """An agent with a store but no containment operates in full."""
    open_store(example).create()
    result = cli("mode", "refund-agent", cwd=example.root)
    assert (result.returncode, result.stdout.strip()) == (0, "full")


@pytest.mark.slow
def test_detected_at_must_be_past_and_zoned(example: Workspace, cli: RunCli) -> None:
    """A detection time in the future or without a timezone is refused."""
    later = (utc_now() + timedelta(hours=1)).isoformat()
    for value, message in ((later, "expected a time in the past"),
                           ("2026-11-25T21:00:00", "with a timezone")):
        result = cli("incident", "open", "refund-agent", "--summary", "x", "--severity", "sev3",
                     "--detected-at", value, cwd=example.root)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not example.incidents_dir.exists() or not list(example.incidents_dir.iterdir())


@pytest.mark.slow
def test_containment_on_a_dead_store_says_the_agent_is_not_contained(
        example: Workspace, cli: RunCli) -> None:
    """When the mode cannot be written, containment fails loudly (exit 3) and records nothing."""
    incident_id = _open(example, 1)
    example.state_path.parent.mkdir(parents=True, exist_ok=True)
    example.state_path.write_bytes(b"\x00garbage" * 64)
    before = example.incidents().path(incident_id).read_bytes()
    result = cli("contain", incident_id, "--mode", "suspended", "--notify", "legal",
                 "--scope", "x", cwd=example.root)
    assert result.returncode == 3
    assert "refund-agent is NOT contained" in result.stderr
    assert example.incidents().path(incident_id).read_bytes() == before


@pytest.mark.slow
@pytest.mark.attack
def test_a_deleted_incidents_id_still_named_is_not_given_out_so_its_case_does_not_clear(
        example: Workspace, cli: RunCli) -> None:
    """INC-1 captured and contained, then its file and baseline deleted: a new incident is
    INC-2, so INC-1's regression case (still in the set) does not become the new incident's
    "triggering run" and the gate keeps saying INC-1 has no record. With the cases deleted
    too, the audit log's containment of INC-1 still keeps the id from coming back (INC-2,
    never contained nor captured, names nothing and may be opened again)."""
    import shutil

    first = captured(example)
    example.incidents().path(first).unlink()
    shutil.rmtree(example.incidents_dir / f"{first}.baseline")
    result = cli("incident", "open", "refund-agent", "--summary", "another harm",
                 "--severity", "sev3", cwd=example.root)
    assert (result.returncode, result.stdout.strip()) == (0, "INC-2"), result.stderr
    example.incidents().path("INC-2").unlink()
    for case in example.regressions_dir("refund-agent").glob("INC-*.yaml"):
        case.unlink()
    result = cli("incident", "open", "refund-agent", "--summary", "a third harm",
                 "--severity", "sev3", cwd=example.root)
    assert (result.returncode, result.stdout.strip()) == (0, "INC-2"), result.stderr


@pytest.mark.slow
@pytest.mark.attack
def test_a_detection_moved_past_containment_does_not_read_as_on_time(
        example: Workspace, cli: RunCli) -> None:
    """Contained 5 hours after detection (target missed), then ``detected_at`` typed in
    after the containment, or after the incident's opening: the clock would run backwards
    and read "within the 4h target". Each edit is refused, naming the file, place and line;
    ``show`` and ``postmortem`` print no clock at all."""
    incident_id = _open(example, 5)
    contain(example, incident_id, mode="review", notify=["legal", "compliance", "eng-lead"],
            scope="one refund", actor=ACTOR)
    path = example.incidents().path(incident_id)
    text = path.read_text(encoding="utf-8")
    record = example.incidents().load(incident_id)
    assert record.containment is not None and record.containment_target_met is False
    opened = record.history[0].at
    line = text.splitlines().index(next(x for x in text.splitlines()
                                        if x.startswith("detected_at:"))) + 1
    for moved, expected in (
            (record.containment.contained_at + timedelta(minutes=1), "the incident's opening"),
            (opened + timedelta(seconds=1), "the incident's opening")):
        path.write_text("\n".join(f"detected_at: '{moved.isoformat()}'"
                                  if x.startswith("detected_at:") else x
                                  for x in text.splitlines()) + "\n", encoding="utf-8")
        for args in (("incident", "show", incident_id), ("postmortem", incident_id)):
            result = cli(*args, cwd=example.root)
            assert result.returncode == 2, result.stdout
            assert f"incidents/{incident_id}.yaml:{line}: $.detected_at" in result.stderr
            assert expected in result.stderr and "within" not in result.stdout
