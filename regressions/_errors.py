"""Errors of the regressions package."""

from __future__ import annotations

from evalsuite import ReinstateError


class RegressionsError(ReinstateError):
    """Base error of the regressions package."""


class UnknownIncident(RegressionsError):
    """No incident file has this id."""

    def __init__(self, incident_id: str, known: list[str], hint: str) -> None:
        self.incident_id = incident_id
        self.known = known
        super().__init__(f"unknown incident '{incident_id}'{hint}")


class IllegalTransition(RegressionsError):
    """An incident cannot take this step in its current phase."""

    def __init__(self, incident_id: str, event: str, phase: str, allowed: list[str]) -> None:
        self.incident_id = incident_id
        self.event = event
        self.phase = phase
        where = ", ".join(allowed)
        super().__init__(
            f"Can't {event} {incident_id} when in {phase}: allowed only when {where}."
        )
