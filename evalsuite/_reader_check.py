"""The reader contract, as a test a reader's author runs: :func:`check_reader`.

A reader is ``reader(path, skips) -> Iterator[RunPart]``. What every command relies on:

- every part names its run (``run_id``, a non-empty string; a part with a ``header``
  has the same id in it) and its file (``source``), and says where each step was read
  (``places``: one per step, a line number or a place such as ``$[3].turns[2]``);
- every step is a valid step of the run record, as its model would build it;
- the file's runs have steps: a log read as runs with none is a silent empty read;
- with ``skips=None`` a bad record raises :class:`InvalidInput` naming the file and its
  place in it (a JSON path, a line, or both); with a :class:`Skips` the same record is
  counted there, and reading goes on to the good records after it;
- reading the same file twice gives the same runs (readers keep no state between reads).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from evalsuite._errors import InvalidInput
from evalsuite._parts import RunHeader, RunPart, Skips
from evalsuite._readers import Reader, broken_part
from evalsuite._run import Step

_STEP = TypeAdapter[Step](Step)


class ReaderContractError(AssertionError):
    """A reader breaks the contract; the message says how, and where."""


@dataclass
class ReaderCheck:
    """What a reader read from the sample, once it kept the contract."""

    runs: int
    steps: int
    kinds: Counter[str] = field(default_factory=Counter)
    skipped: int = 0


def check_reader(reader: Reader, sample: Path, *, invalid: Path | None = None) -> ReaderCheck:
    """Check that ``reader`` keeps the contract on ``sample`` (and on ``invalid``, a file
    with at least one bad record, when given); raise :class:`ReaderContractError` if not.

    Args:
        reader: the reader, ``reader(path, skips) -> Iterator[RunPart]``.
        sample: a log the reader reads whole, with at least one run that has steps.
        invalid: a log holding a bad record among good ones.

    Returns:
        What was read from ``sample``: runs, steps, steps by kind, and (from ``invalid``)
        how many records were skipped.
    """
    parts = _read(reader, sample, None)
    if not parts:
        raise ReaderContractError(f"{sample}: the reader yielded no parts: a log it reads "
                                  f"must hold at least one run")
    for index, part in enumerate(parts):
        _check_part(part, index, sample)
    steps = [s for p in parts for s in p.steps]
    if not steps:
        raise ReaderContractError(f"{sample}: the reader yielded {len(parts)} part(s) with no "
                                  f"steps: a silent empty read")
    again = _read(reader, sample, None)
    if _shape(again) != _shape(parts):
        raise ReaderContractError(f"{sample}: reading the file twice gave different runs: a "
                                  f"reader keeps no state between reads")
    done = ReaderCheck(runs=len({p.run_id for p in parts}), steps=len(steps),
                       kinds=Counter(s.kind for s in steps))
    if invalid is not None:
        done.skipped = _check_invalid(reader, invalid)
    return done


def _read(reader: Reader, path: Path, skips: Skips | None) -> list[RunPart]:
    try:
        return list(reader(path, skips))
    except InvalidInput:
        raise
    except Exception as exc:
        raise ReaderContractError(f"{path}: the reader raised {type(exc).__name__}: {exc}; "
                                  f"a bad record must raise InvalidInput") from exc


def _check_part(part: RunPart, index: int, sample: Path) -> None:
    where = f"{sample}: part #{index + 1}"
    problem = broken_part(part)
    if problem:
        raise ReaderContractError(f"{where}: {problem}")
    if part.source != sample:
        raise ReaderContractError(f"{where}: expected source {sample}, got {part.source}")
    if part.header is not None:
        try:
            RunHeader.model_validate(part.header.model_dump(warnings=False))
        except ValidationError as exc:
            raise ReaderContractError(f"{where}: its header is not valid: {exc}") from None
    for number, (step, place) in enumerate(zip(part.steps, part.places, strict=True)):
        if not isinstance(place, int | str) or place in ("", None):
            raise ReaderContractError(f"{where}, step {number}: expected its place (a line "
                                      f"or a JSON path), got {place!r}")
        try:
            _STEP.validate_python(step.model_dump(warnings=False))
        except ValidationError as exc:
            raise ReaderContractError(f"{where}, step {number} ({place}): not a valid "
                                      f"{step.kind} step: {exc}") from None


def _shape(parts: list[RunPart]) -> list[Any]:
    return [(p.run_id, p.place, [s.model_dump(warnings=False) for s in p.steps], p.places)
            for p in parts]


def _check_invalid(reader: Reader, invalid: Path) -> int:
    try:
        _read(reader, invalid, None)
    except InvalidInput as exc:
        if exc.path is None or exc.path.resolve() != invalid.resolve():
            raise ReaderContractError(f"{invalid}: the InvalidInput raised names "
                                      f"{exc.path}, not the file") from None
        if not exc.place and exc.line is None:
            raise ReaderContractError(f"{invalid}: the InvalidInput raised ({exc}) names no "
                                      f"place in the file: give a JSON path or a line") from None
    else:
        raise ReaderContractError(f"{invalid}: read without an error: expected InvalidInput "
                                  f"for its bad record")
    skips = Skips()
    try:
        kept = _read(reader, invalid, skips)
    except InvalidInput as exc:
        raise ReaderContractError(f"{invalid}: with skips given the reader still raised "
                                  f"({exc}): a bad record is counted in skips and reading "
                                  f"goes on") from None
    if skips.total == 0:
        raise ReaderContractError(f"{invalid}: with skips given, no record was counted in "
                                  f"them: expected the bad record to be")
    for index, part in enumerate(kept):
        _check_part(part, index, invalid)
    return skips.total
