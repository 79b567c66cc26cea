"""The incident lifecycle table, its error messages, and the phase derived from a record."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from regressions import (
    PHASES,
    TRANSITIONS,
    IllegalTransition,
    Incident,
    Phase,
    next_phase,
)

# How each action must read in "Can't <verb> INC-1 when in <phase>", as users see it.
WORDING = {
    "contain": "contain",
    "investigate": "investigate",
    "capture": "capture a regression case for",
    "finding": "record a finding for",
    "change": "record a control change for",
    "review": "schedule the review of",
    "restore": "restore",
    "close": "close",
    "notify": "record a notification for",
}

DETECTED = datetime(2026, 11, 26, 1, 52, tzinfo=UTC)


def _targets_from_elsewhere() -> set[str]:
    return {there for moves in TRANSITIONS.values() for here, there in moves.items()
            if there != here}


def test_table_names_only_known_phases() -> None:
    """Every phase in the table, as source or target, is one of the declared phases."""
    for moves in TRANSITIONS.values():
        assert set(moves) <= set(PHASES)
        assert set(moves.values()) <= set(PHASES)


def test_table_has_one_initial_phase() -> None:
    """Exactly one phase is entered by no transition from another phase: detected."""
    initial = set(PHASES) - _targets_from_elsewhere()
    assert initial == {"detected"}


def test_every_phase_is_reachable_from_detected() -> None:
    """Following the table from detected reaches every phase."""
    reached = {"detected"}
    frontier = ["detected"]
    while frontier:
        here = frontier.pop()
        for moves in TRANSITIONS.values():
            there = moves.get(here)
            if there is not None and there not in reached:
                reached.add(there)
                frontier.append(there)
    assert reached == set(PHASES)


@pytest.mark.parametrize("phase", PHASES)
def test_no_dead_end_but_closed(phase: Phase) -> None:
    """Every phase but closed has a way out; closed has no transition at all."""
    exits = {moves[phase] for moves in TRANSITIONS.values() if phase in moves} - {phase}
    if phase == "closed":
        assert not any(phase in moves for moves in TRANSITIONS.values())
    else:
        assert exits, f"{phase} is a dead end"


def test_the_happy_path_walks_every_main_phase() -> None:
    """contain, investigate, finding, change, restore and close walk every phase in order."""
    phase: Phase = "detected"
    walked = [phase]
    for action in ("contain", "investigate", "finding", "change", "restore", "close"):
        phase = next_phase("INC-1", action, phase)
        walked.append(phase)
    assert walked == ["detected", "contained", "investigating", "analysing", "resolving",
                      "restored", "closed"]


def test_investigation_is_optional_and_may_be_repeated() -> None:
    """A finding may follow containment directly, and investigating again keeps the phase."""
    assert next_phase("INC-1", "finding", "contained") == "analysing"
    for phase in ("investigating", "analysing", "resolving"):
        assert next_phase("INC-1", "investigate", phase) == phase


@pytest.mark.parametrize(("action", "phase"), [
    (action, phase) for action, moves in TRANSITIONS.items() for phase in moves
])
def test_legal_transitions_follow_the_table(action: str, phase: Phase) -> None:
    """Every legal (action, phase) pair leads where the table says."""
    assert next_phase("INC-1", action, phase) == TRANSITIONS[action][phase]


ILLEGAL = [(action, phase) for action in TRANSITIONS for phase in PHASES
           if phase not in TRANSITIONS[action]]


@pytest.mark.parametrize(("action", "phase"), ILLEGAL)
def test_illegal_transition_message(action: str, phase: Phase) -> None:
    """Every illegal (action, phase) pair raises IllegalTransition saying where it is allowed."""
    allowed = ", ".join(TRANSITIONS[action])
    with pytest.raises(IllegalTransition) as info:
        next_phase("INC-1", action, phase)
    assert str(info.value) == (
        f"Can't {WORDING[action]} INC-1 when in {phase}: allowed only when {allowed}."
    )
    assert (info.value.incident_id, info.value.phase) == ("INC-1", phase)
    assert info.value.exit_code == 2


def test_illegal_pairs_cover_the_cases_users_hit() -> None:
    """Restoring an unresolved incident and closing an unrestored one are both illegal."""
    assert ("restore", "analysing") in ILLEGAL
    assert ("close", "resolving") in ILLEGAL
    assert ("contain", "contained") in ILLEGAL
    assert ("investigate", "detected") in ILLEGAL and ("investigate", "restored") in ILLEGAL
    assert {action for action, phase in ILLEGAL if phase == "closed"} == set(TRANSITIONS)


def _incident(**fields: Any) -> Incident:
    data: dict[str, Any] = {
        "id": "INC-1", "agent": "refund-agent", "summary": "over-refund",
        "severity": "sev2", "detected_at": DETECTED, "opened_by": "oncall",
    }
    return Incident.model_validate({**data, **fields})


CONTAINMENT = {
    "mode": "review", "contained_at": DETECTED + timedelta(hours=1), "contained_by": "oncall",
    "notified": ["legal"], "scope": "one refund", "target_hours": 4,
    "baseline": {"directory": "INC-1.baseline", "files": {}, "fingerprint": {}},
}
FINDING = {"id": "F-1", "layer": "tool_permission_boundary", "gap": True,
           "description": "any amount allowed"}
CHANGE = {"id": "CC-1", "layer": "tool_permission_boundary", "addresses": ["F-1"],
          "description": "cap refunds at $500"}
RESTORED = DETECTED + timedelta(days=2)
INVESTIGATION = {
    "investigated_at": DETECTED + timedelta(hours=2), "investigated_by": "oncall",
    "logs": [{"path": "logs/a.jsonl", "sha256": "0" * 64, "format": "jsonl"}],
    "signature": {"match": [{"kind": "tool_call", "tool": "issue_refund"}]},
    "scope": {"runs_searched": 3, "steps_searched": 24, "runs_matched": 1, "calls_matched": 1,
              "outputs_matched": 0},
}
LOGGING_FINDING = {"id": "F-1", "layer": "logging", "gap": True,
                   "description": "the absence of logging is the root cause"}


@pytest.mark.parametrize(("fields", "phase"), [
    ({}, "detected"),
    ({"containment": CONTAINMENT}, "contained"),
    ({"containment": CONTAINMENT, "investigation": INVESTIGATION}, "investigating"),
    ({"containment": CONTAINMENT, "investigation": INVESTIGATION,
      "findings": [LOGGING_FINDING]}, "investigating"),
    ({"containment": CONTAINMENT, "findings": [FINDING]}, "analysing"),
    ({"containment": CONTAINMENT, "investigation": INVESTIGATION,
      "findings": [{**FINDING, "id": "F-2"}, LOGGING_FINDING]}, "analysing"),
    ({"containment": CONTAINMENT, "findings": [FINDING], "control_changes": [CHANGE]},
     "resolving"),
    ({"containment": CONTAINMENT, "findings": [FINDING], "control_changes": [CHANGE],
      "post_incident_review": date(2026, 12, 3)}, "resolving"),
    ({"containment": CONTAINMENT, "findings": [FINDING], "control_changes": [CHANGE],
      "restored_at": RESTORED}, "restored"),
    ({"containment": CONTAINMENT, "findings": [FINDING], "control_changes": [CHANGE],
      "restored_at": RESTORED, "closed_at": RESTORED + timedelta(days=7)}, "closed"),
])
def test_derived_phase_for_each_stage(fields: dict[str, Any], phase: Phase) -> None:
    """An incident's phase follows from the furthest stage its record holds."""
    assert _incident(**fields).phase == phase


def test_derived_phase_agrees_with_the_table() -> None:
    """Each action applied to a record's derived phase gives the phase of the updated record."""
    stages = [
        ("contain", _incident(), _incident(containment=CONTAINMENT)),
        ("investigate", _incident(containment=CONTAINMENT),
         _incident(containment=CONTAINMENT, investigation=INVESTIGATION)),
        ("finding", _incident(containment=CONTAINMENT, investigation=INVESTIGATION),
         _incident(containment=CONTAINMENT, investigation=INVESTIGATION, findings=[FINDING])),
        ("finding", _incident(containment=CONTAINMENT),
         _incident(containment=CONTAINMENT, findings=[FINDING])),
        ("change", _incident(containment=CONTAINMENT, findings=[FINDING]),
         _incident(containment=CONTAINMENT, findings=[FINDING], control_changes=[CHANGE])),
        ("restore",
         _incident(containment=CONTAINMENT, findings=[FINDING], control_changes=[CHANGE]),
         _incident(containment=CONTAINMENT, findings=[FINDING], control_changes=[CHANGE],
                   restored_at=RESTORED)),
    ]
    for action, before, after in stages:
        assert next_phase(before.id, action, before.phase) == after.phase, action


def test_times_are_kept_in_utc_and_containment_is_timed() -> None:
    """Aware times in another zone are stored in UTC, and time to contain meets its target."""
    local = datetime(2026, 11, 26, 3, 52, tzinfo=timezone(timedelta(hours=2)))
    incident = _incident(detected_at=local, containment=CONTAINMENT)
    assert incident.detected_at.utcoffset() == timedelta(0)
    assert incident.detected_at == DETECTED
    assert incident.time_to_contain == timedelta(hours=1)
    assert incident.containment_target_met is True
    slow = _incident(containment={**CONTAINMENT, "target_hours": 0.5})
    assert slow.containment_target_met is False
    assert _incident().time_to_contain is None
