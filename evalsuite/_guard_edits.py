"""A reviewer's edit of a held call, as a guard's log records it, read as the call that ran.

The runtime guard logs each tool call as the agent asked for it. When a person releases a
held call with other arguments (``reinstate review edit``, ``hold_for_review``, the MCP
gateway), the guard swaps the call in its live history for the edited one and adds a
metadata line ``guard.edited.<n>`` = ``{arguments, by, review}``: step ``n`` of the run ran
with those arguments. The step line keeps the agent's arguments.

Whatever puts a run's steps together reads step ``n`` as the call that ran, as the guard's
own history did from the edit on: :func:`evalsuite.merge_parts` for whole runs (``runs
show``, ``investigate``) and the backtest, which grows each run's history step by step,
so a rule over the history decides every later call as the guard decided it live. What
the agent asked for is not lost: whole runs keep it in the edit's metadata entry as
``requested``. An entry that already has ``requested`` was applied before (a run written
back whole), and its step already holds the arguments that ran.

An edit is applied when its line is read, after the step it names (the guard writes it
then); an edit that names no earlier step, a step that is not a tool call, or that does
not hold the arguments as a JSON object is refused, naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from evalsuite._documents import json_path
from evalsuite._errors import InvalidInput
from evalsuite._record import Record
from evalsuite._run import Run, Step, ToolCall

if TYPE_CHECKING:  # merge_parts (in _parts) applies the edits: imported there at run time
    from evalsuite._history import History
    from evalsuite._parts import RunPart

EDITED = "guard.edited."
"""The prefix of a run metadata key that records a reviewer's edit of step ``<n>``."""


class EditEntry(Record):
    """The value of a ``guard.edited.<n>`` metadata entry."""

    arguments: dict[str, Any]
    """The arguments the call ran with, as the reviewer released it."""
    by: str
    """Who edited the call."""
    review: str | None = None
    """The review queue item the edit was decided in, when there was one."""
    requested: dict[str, Any] | None = None
    """The arguments the agent asked for, once a reader has applied the edit to the step."""


@dataclass(frozen=True)
class GuardEdit:
    """One edit a part's header records: which step it names and what ran."""

    key: str
    """The metadata key, ``guard.edited.<n>``."""
    index: int
    """The edited step's position in its run."""
    entry: EditEntry
    """The entry as logged."""


def guard_edits(part: RunPart) -> list[GuardEdit]:
    """The reviewers' edits recorded in ``part``'s header, in the order logged.

    Raises:
        InvalidInput: a ``guard.edited.`` key whose suffix is not a step index, or an
            entry that is not ``{arguments: {...}, by: "...", review: "..."}``; the error
            names the file, the line and the entry.
    """
    header = part.header
    if header is None or not header.metadata:
        return []
    found: list[GuardEdit] = []
    for key, value in header.metadata.items():
        if not key.startswith(EDITED):
            continue
        number = key[len(EDITED):]
        if not (number.isascii() and number.isdigit()):
            raise _refused(part, key, (), "expected guard.edited.<n>, n the index of the "
                                          "edited step in its run")
        try:
            entry = EditEntry.model_validate(value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = tuple(p for p in first["loc"] if isinstance(p, int | str))
            raise _refused(part, key, loc, f"{first['msg']} (a reviewer's edit: "
                                           "{arguments: {...}, by, review})") from None
        found.append(GuardEdit(key=key, index=int(number), entry=entry))
    return found


def edited_call(part: RunPart, edit: GuardEdit, steps: Sequence[Step]) -> ToolCall:
    """The call ``edit`` names among the run's ``steps`` so far, with the arguments that ran.

    Raises:
        InvalidInput: the edit names no step read before it, or a step that is not a
            tool call.
    """
    if edit.index >= len(steps):
        raise _refused(part, edit.key, (), f"expected the index of a step of run "
                                           f"{part.run_id!r} logged before this line "
                                           f"(it has {len(steps)} so far)")
    asked = steps[edit.index]
    if not isinstance(asked, ToolCall):
        raise _refused(part, edit.key, (), f"expected step {edit.index} of run "
                                           f"{part.run_id!r} to be a tool call, got "
                                           f"{asked.kind}")
    update: dict[str, Any] = {"arguments": dict(edit.entry.arguments)}
    if asked.raw_arguments is not None:
        update["raw_arguments"] = None
    return asked.model_copy(update=update)


def apply_guard_edits(part: RunPart, history: History) -> None:
    """Apply the edits in ``part``'s header to ``history``, a run's steps read so far (a
    backtest growing each run step by step): each named step becomes the call that ran.

    Raises:
        InvalidInput: an edit that is malformed, names no earlier step or a step that is
            not a tool call, naming the file and line (see :func:`guard_edits`).
    """
    for edit in guard_edits(part):
        if edit.entry.requested is None:  # else applied before: the step holds what ran
            history.replace(edit.index, edited_call(part, edit, history))


def apply_to_merged(run: dict[str, Any], part: RunPart) -> None:
    """Apply the edits in ``part``'s header to ``run``, a run being put together from its
    parts (``steps`` a list, ``metadata`` the entries merged so far): each named step becomes
    the call that ran, and its entry keeps the agent's arguments as ``requested``."""
    edits = guard_edits(part)
    if not edits:
        return
    steps: list[Step] = run["steps"]
    metadata = dict(run.get("metadata") or {})  # the header's own dict is never changed
    for edit in edits:
        if edit.entry.requested is not None:  # applied before: the step holds what ran
            continue
        ran = edited_call(part, edit, steps)
        asked = steps[edit.index]
        assert isinstance(asked, ToolCall)
        steps[edit.index] = ran
        metadata[edit.key] = {**metadata[edit.key], "requested": asked.arguments}
    run["metadata"] = metadata


def as_asked(run: Run) -> tuple[list[Step], dict[int, dict[str, Any]]]:
    """A whole run's steps as the agent asked for them, and the edits that made them the
    calls that ran, by step index, as the guard logged them (without ``requested``).

    For a caller that replays a run read whole (its edits applied) the way the guard's log
    is replayed: each edited call decided as asked, then the edit put in the history.
    Entries that were never applied (no ``requested``) are left out: their steps hold the
    arguments as logged.
    """
    steps = list(run.steps)
    edits: dict[int, dict[str, Any]] = {}
    for key, value in run.metadata.items():
        if not key.startswith(EDITED) or not isinstance(value, dict):
            continue
        number, requested = key[len(EDITED):], value.get("requested")
        if not (number.isascii() and number.isdigit()) or not isinstance(requested, dict):
            continue
        index = int(number)
        ran = steps[index] if index < len(steps) else None
        if not isinstance(ran, ToolCall):
            continue
        steps[index] = ran.model_copy(update={"arguments": dict(requested)})
        edits[index] = {k: v for k, v in value.items() if k != "requested"}
    return steps, edits


def _refused(part: RunPart, key: str, loc: tuple[int | str, ...],
             expected: str) -> InvalidInput:
    place = json_path(("metadata", key, *loc))
    if isinstance(part.place, int):
        return InvalidInput(part.source, place, expected, line=part.place)
    return InvalidInput(part.source, f"{part.place} {place}".strip(), expected)
