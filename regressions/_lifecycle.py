"""The incident's four-phase lifecycle as one declared transition table, checked at import.

Phases follow the response: detected → contained → investigating (timeline, scope of
impact, logging gaps) → analysing (root cause) → resolving (control changes) → restored →
closed (after the review). Investigating is optional: an incident may go from contained
straight to its root cause, and may be investigated again while analysed or resolved.
"""

from __future__ import annotations

from typing import Literal, get_args

from regressions._errors import IllegalTransition

Phase = Literal[
    "detected", "contained", "investigating", "analysing", "resolving", "restored", "closed"
]
PHASES: tuple[Phase, ...] = get_args(Phase)
INITIAL: Phase = "detected"
FINAL: frozenset[Phase] = frozenset({"closed"})
_OPEN: tuple[Phase, ...] = ("contained", "investigating", "analysing", "resolving")

# action → {phase it may happen in: phase it leads to}
TRANSITIONS: dict[str, dict[Phase, Phase]] = {
    "contain": {"detected": "contained"},
    "investigate": {
        "contained": "investigating",
        "investigating": "investigating",
        "analysing": "analysing",
        "resolving": "resolving",
    },
    "capture": {p: p for p in ("detected", *_OPEN, "restored")},
    "finding": {
        "contained": "analysing",
        "investigating": "analysing",
        "analysing": "analysing",
        "resolving": "resolving",
    },
    "change": {"analysing": "resolving", "resolving": "resolving"},
    "review": {p: p for p in (*_OPEN, "restored")},
    "restore": {"resolving": "restored"},
    "close": {"restored": "closed"},
    # Deliveries are recorded whenever they happen; they never change the phase.
    "notify": {p: p for p in (*_OPEN, "restored")},
}
# How each action reads in "Can't {verb} INC-3 when in {phase}".
VERBS: dict[str, str] = {
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


def next_phase(incident_id: str, action: str, phase: Phase) -> Phase:
    """The phase ``action`` leads to from ``phase``, or :class:`IllegalTransition`."""
    moves = TRANSITIONS[action]
    if phase not in moves:
        raise IllegalTransition(incident_id, VERBS[action], phase, list(moves))
    return moves[phase]


def _check_table() -> None:
    """One initial phase, every phase reachable, no dead end but the final one."""
    reachable = {INITIAL}
    frontier = [INITIAL]
    while frontier:
        here = frontier.pop()
        for moves in TRANSITIONS.values():
            there = moves.get(here)
            if there is not None and there not in reachable:
                reachable.add(there)
                frontier.append(there)
    unreachable = set(PHASES) - reachable
    if unreachable:
        raise AssertionError(f"incident phases never reached: {sorted(unreachable)}")
    for phase in PHASES:
        leaves = any(moves.get(phase, phase) != phase for moves in TRANSITIONS.values())
        if phase not in FINAL and not leaves:
            raise AssertionError(f"incident phase '{phase}' is a dead end")
    if set(VERBS) != set(TRANSITIONS):
        raise AssertionError("every action needs a verb for its error message")
    for event, moves in TRANSITIONS.items():
        if not set(moves) | set(moves.values()) <= set(PHASES):
            raise AssertionError(f"event '{event}' names an unknown phase")


_check_table()
