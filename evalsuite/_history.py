"""A run's history, kept in the form expressions read as its steps are appended.

A rule over ``history`` sees every earlier step as plain data (:func:`steps_as_data`).
Replaying a run step by step with a plain list rebuilds that data for every step, so a run
of n steps costs n² conversions; a :class:`History` converts each step once, when it is
appended, and hands the same data to every decision until the next step arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from evalsuite._expressions import is_plain, step_as_data
from evalsuite._run import Step, UserInput


class History(Sequence[Step]):
    """The steps of one run so far, with their data form, built incrementally.

    Use it wherever a ``history: Sequence[Step]`` is taken: a caller that streams a run
    appends each step after deciding on it, and every decision reads the data made once
    per step. Steps are records: they must not be changed once appended (the data form
    was made from them then). A history belongs to one run and is not shared between
    threads.
    """

    __slots__ = ("_data", "_plain_upto", "_steps", "_tools", "_user_inputs")

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: list[Step] = []
        self._data: list[dict[str, Any]] = []
        self._user_inputs: list[str] = []
        self._tools: dict[str, str] = {}  # call id → tool, to name the tool of a result
        self._plain_upto: int | None = 0  # steps known to be plain data; None: one is not
        self.extend(steps)

    def append(self, step: Step) -> None:
        """Add the run's next step."""
        self._data.append(step_as_data(step, self._tools))
        if isinstance(step, UserInput):
            self._user_inputs.append(step.content)
        self._steps.append(step)

    def extend(self, steps: Iterable[Step]) -> None:
        """Add the run's next steps, in order."""
        for step in steps:
            self.append(step)

    def replace(self, index: int, step: Step) -> None:
        """Put ``step`` at ``index`` instead of the step there: a call a reviewer edited
        before it ran is, from then on, the call that ran (its data made anew)."""
        self._data[index] = step_as_data(step, self._tools)
        self._steps[index] = step
        if self._plain_upto is not None:
            self._plain_upto = min(self._plain_upto, index)

    def data(self) -> list[dict[str, Any]]:
        """The steps as expressions see them (:func:`steps_as_data`); shared, not a copy:
        read it, never change it."""
        return self._data

    def user_inputs(self) -> list[str]:
        """The text of every user input so far; shared, not a copy: read it, never change it."""
        return self._user_inputs

    def plain(self) -> bool:
        """Whether every step's data is plain JSON data CEL surely takes (see
        :func:`~evalsuite.is_plain`); each step is looked at once."""
        if self._plain_upto is None:
            return False
        for item in self._data[self._plain_upto:]:
            if not is_plain(item):
                self._plain_upto = None
                return False
        self._plain_upto = len(self._data)
        return True

    def __len__(self) -> int:
        return len(self._steps)

    @overload
    def __getitem__(self, index: int) -> Step: ...

    @overload
    def __getitem__(self, index: slice) -> list[Step]: ...

    def __getitem__(self, index: int | slice) -> Step | list[Step]:
        return self._steps[index]

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps)

    def __repr__(self) -> str:
        return f"History({len(self._steps)} steps)"

