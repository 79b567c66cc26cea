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
