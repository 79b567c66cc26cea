"""Errors of the gates package."""

from __future__ import annotations

from evalsuite import ReinstateError


class GatesError(ReinstateError):
    """Base error of the gates package."""


class Refused(GatesError):
    """An action the controls do not allow yet (restore without a current passing verdict)."""

    exit_code = 1

    def __init__(self, what: str, reasons: list[str]) -> None:
        self.what = what
        self.reasons = reasons
        lines = "\n".join(f"  - {r}" for r in reasons)
        super().__init__(f"{what}:\n{lines}")


class StoreUnavailable(GatesError):
    """The state store could not be read or written."""

    exit_code = 3


class ContainedMidGate(GatesError):
    """The agent was contained while its gate ran: no verdict is stored (exit 3)."""

    exit_code = 3


class UnknownAgent(GatesError):
    """No ``agents/<name>/`` folder in the workspace."""

    def __init__(self, name: str, hint: str) -> None:
        self.name = name
        super().__init__(f"unknown agent '{name}'{hint}")


class ModeChanged(Refused):
    """The agent's mode changed while a restore was deciding (a containment came in)."""

    def __init__(self, agent: str, now: str) -> None:
        self.agent = agent
        super().__init__(f"Can't restore '{agent}'",
                         [f"its mode changed while restore was checking: it is now {now}; "
                          f"run `reinstate restore {agent}` again to see why"])


class UnknownReview(GatesError):
    """No item of the review queue has that id."""

    def __init__(self, review: str, where: str) -> None:
        self.review = review
        super().__init__(f"review {review!r}: no such item in the review queue of {where} "
                         f"(expected an id that `reinstate review list --all` shows, e.g. R-1)")


class UnvouchedReview(GatesError):
    """A review decision the audit log does not vouch for: released nothing."""

    exit_code = 1


class ReviewDecided(GatesError):
    """A review item was decided already: only a pending item can be decided."""

    exit_code = 1

    def __init__(self, review: str, status: str, by: str | None, reason: str | None) -> None:
        self.review = review
        self.status = status
        who = f" by {by}" if by else ""
        why = f" ({reason})" if reason else ""
        super().__init__(f"review {review} was already decided: {status}{who}{why}; "
                         f"nothing changed")
