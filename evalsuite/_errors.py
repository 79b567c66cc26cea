"""The error every reinstate package builds on, and the one for a bad user file."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ReinstateError(Exception):
    """Base of every error reinstate reports to a user as one clean line.

    ``exit_code`` is what the CLI exits with: 2 for bad usage or input unless a
    subclass says otherwise (1 refused, 3 a check could not run).
    """

    exit_code = 2


class EvalsuiteError(ReinstateError):
    """Base error of the evalsuite package."""


_CONTROL = {**{c: f"\\x{c:02x}" for c in (*range(32), 127)}, 9: "\\t", 10: "\\n", 13: "\\r"}


class InvalidInput(EvalsuiteError):
    """A file or value a user gave is not what reinstate expected.

    Carries the file, the place inside it (a JSON path such as ``$.tools[0].tool``)
    and its line when known, so the message can point straight at the mistake.
    """

    def __init__(
        self,
        path: Path | str | None,
        place: str,
        expected: str,
        *,
        line: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.place = place
        self.expected = expected
        self.line = line
        super().__init__(self._render())

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its parts where it is unpickled (a Ray task's error on the driver),
        # so the message names the file as the process that reports it sees it.
        return _rebuild, (type(self), self.path, self.place, self.expected, self.line)

    def _render(self) -> str:
        where = ""
        if self.path is not None:
            where = display_path(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        place = f"{self.place}: " if self.place else ""
        # One line whatever a hostile file puts into a key or value the message quotes.
        return f"{where}{place}{self.expected}".translate(_CONTROL)


def _rebuild(kind: type[InvalidInput], path: Path | None, place: str, expected: str,
             line: int | None) -> InvalidInput:
    return kind(path, place, expected, line=line)


def display_path(path: Path) -> str:
    """Show a path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for a near miss, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
