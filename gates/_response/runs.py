"""Finding a recorded run before anything is captured: which runs the logs hold, and one run
whole with where each step was read.

Steps are numbered as ``capture --step`` and ``investigate`` number them: the position in
the run put together from all its parts (:func:`evalsuite.located_runs`), so the number a
user reads here is the number they pass to capture. Logs are streamed; only the parts of the
one run asked for are kept.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from evalsuite import (
    InvalidInput,
    LogFormat,
    Record,
    Run,
    RunPart,
    display_path,
    located_runs,
    read_logs,
)


@dataclass
class RunSummary:
    """One run of the logs in a line: enough to find its id."""

    run_id: str
    agent: str | None
    steps: int
    first_at: datetime | None
    where: str

    def add(self, part: RunPart) -> None:
        """Count a later part of the same run."""
        self.steps += len(part.records)  # counted without building the step models
        if self.agent is None and part.header is not None:
            self.agent = part.header.agent
        first = part.first_time()
        if first is not None and (self.first_at is None or first < self.first_at):
            self.first_at = first


class LocatedRun(Record):
    """A run as the logs recorded it, with where each of its steps was read."""

    schema_version: Literal[1] = 1
    """Version of this record's format."""
    run: Run
    """The run, its steps numbered from 0 as ``capture --step`` and ``investigate`` count them."""
    places: list[str] = Field(default_factory=list)
    """Where step N was read (``file:line`` or ``file $.json.path``), at index N."""
    split: list[str] = Field(default_factory=list)
    """When the run's steps were read from more than one log (a rotated log and the live
    one): each log with the steps numbered here that it holds (``logs/a.jsonl: steps
    5–13``); empty when one log holds them all. ``capture --run`` reads one log and counts
    its steps from 0 in it, so these numbers are not the ones to pass it."""


def _checked(logs: Sequence[Path]) -> list[Path]:
    if not logs:
        raise InvalidInput(None, "--logs", "expected at least one log file")
    return list(logs)


def list_runs(logs: Sequence[Path], fmt: LogFormat | Literal["auto"] = "auto",
              ) -> list[RunSummary]:
    """Every run of ``logs`` in the order it first appears: id, agent, steps, first time and
    the ``file:line`` it starts at. A bad record stops the read with its file and line."""
    found: dict[str, RunSummary] = {}
    for part in read_logs(_checked(logs), fmt, defer_steps=True):  # counted, not read
        summary = found.get(part.run_id)
        if summary is None:
            found[part.run_id] = summary = RunSummary(
                run_id=part.run_id, agent=None, steps=0, first_at=None, where=part.where())
        summary.add(part)
    return list(found.values())


def find_run(logs: Sequence[Path], run_id: str,
             fmt: LogFormat | Literal["auto"] = "auto") -> LocatedRun:
    """The run ``run_id`` of ``logs``, whole, with where each step was read.

    Raises:
        InvalidInput: no log holds the run (the message names the files searched and the
            nearest ids), or a log cannot be read (its file and line).
    """
    files = _checked(logs)
    kept: list[RunPart] = []
    seen: dict[str, None] = {}
    for part in read_logs(files, fmt, defer_steps=True):  # only the run asked for is built
        if part.run_id == run_id:
            kept.append(part)
        elif len(seen) < 100_000:  # enough to suggest from, without holding a huge log's ids
            seen[part.run_id] = None
    if not kept:
        near = difflib.get_close_matches(run_id, list(seen), n=3, cutoff=0.6)
        hint = (f"; nearest: {', '.join(near)}" if near
                else f"; they hold {len(seen)} other run(s): `reinstate runs list` names them")
        searched = ", ".join(display_path(p) for p in files)
        raise InvalidInput(None, "run id", f"no run '{run_id}' in {searched}{hint}")
    run, places = located_runs(kept)[0]
    return LocatedRun(run=run, places=places, split=_split(kept))


def _split(parts: list[RunPart]) -> list[str]:
    """Each log that holds steps of the run, with the steps it holds, when more than one
    does: ``logs/a.jsonl.1.gz: steps 0–4``."""
    ranges: list[tuple[Path, int, int]] = []
    start = 0
    for part in parts:
        count = len(part.records)
        if count:
            if ranges and ranges[-1][0] == part.source and ranges[-1][2] == start - 1:
                ranges[-1] = (part.source, ranges[-1][1], start + count - 1)
            else:
                ranges.append((part.source, start, start + count - 1))
        start += count
    if len({source for source, _, _ in ranges}) < 2:
        return []
    return [f"{display_path(source)}: step{'s' if last > first else ''} {first}"
            + (f"–{last}" if last > first else "") for source, first, last in ranges]
