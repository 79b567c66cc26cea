"""The variables every rule sees about the run: one definition for conditions and criteria.

A permission condition (``deny_when``, ``review_when``, a review rule) and an acceptance
criterion both judge something an agent did inside a run, and both may need what came
before it: what the tools returned, what the user asked, what the run was given. They read
it under the same names, made here:

- ``history``: every step so far, one map per step (:func:`~evalsuite.steps_as_data`);
  a tool result's ``result`` is JSON data, parsed from the text the log held.
- ``user_inputs``: the text of every user input so far.
- ``context``: the run's context (customer id, channel, …).

Each is made when a rule first reads it, and only then: a rule over ``args`` never
converts the history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evalsuite._expressions import Variables
from evalsuite._history import History
from evalsuite._run import Step

RUN_VARIABLES = ("history", "context", "user_inputs")
"""The variables about the run that conditions and criteria both see."""


class RunView:
    """One run so far, as rules read it: its history converted to data at most once, on
    first need. Give a :class:`~evalsuite.History` to reuse data already made per step."""

    __slots__ = ("_context", "_history", "_plain", "_steps")

    def __init__(self, steps: Sequence[Step], context: Mapping[str, Any]) -> None:
        self._steps = steps
        self._context = context
        self._history: History | None = steps if isinstance(steps, History) else None
        self._plain: bool | None = None

    def history(self) -> History:
        """The steps with their data form, made on first call."""
        if self._history is None:
            self._history = History(self._steps)
        return self._history

    def plain(self) -> bool:
        """Whether the history's data is plain JSON data CEL surely takes."""
        if self._plain is None:
            self._plain = self.history().plain()
        return self._plain

    def variables(self, own: Mapping[str, Callable[[], Any]]) -> Variables:
        """The run's variables (:data:`RUN_VARIABLES`) and a rule's ``own`` (``tool`` and
        ``args`` for a call, ``output`` for an output, …), each made on first read."""
        makers: dict[str, Callable[[], Any]] = {
            "history": lambda: self.history().data(),
            "context": lambda: self._context,
            "user_inputs": lambda: self.history().user_inputs(),
        }
        makers |= own
        return Variables(makers, {"history": self.plain, "user_inputs": self.plain})
