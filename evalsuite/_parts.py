"""Runs as a log streams them: parts of runs, read one record at a time, and what was skipped.

A log is read as a stream of :class:`RunPart`: one line of the native format (a header
or a step), one conversation, one OpenTelemetry trace. Parts of the same run (interleaved
native lines, a conversation traced turn by turn) share a ``run_id``; :func:`merge_parts`
puts them together for the few runs a command needs whole, so nothing holds a whole log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from evalsuite._errors import InvalidInput, display_path
from evalsuite._guard_edits import apply_to_merged
from evalsuite._record import Record
from evalsuite._run import Run, RunOutcome, Step, Usage


class RunHeader(Record):
    """What a run is, apart from its steps: the header line of the native format."""

    run_id: str = Field(min_length=1)
    """Identifier of the run, unique within its log."""
    agent: str | None = None
    """Name of the agent that ran."""
    agent_version: str | None = None
    """Version of the agent that ran."""
    started_at: datetime | None = None
    """When the run started."""
    context: dict[str, Any] = Field(default_factory=dict)
    """What the agent was given besides the messages."""
    outcome: RunOutcome | None = None
    """How the run ended, when the log says."""
    usage: Usage | None = None
    """Tokens, model calls and cost, when the log says."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """What the source log says about the run that has no field here."""


class RunPart:
    """Part of one run as read from a log: maybe its header, some steps, and where they were.

    ``places`` holds, for each step, where in ``source`` it was read: a line number,
    ``line 4 span 00f067aa0ba902b7`` or a JSON path such as ``$[3].traj[5]``.
    ``unread`` holds the records of the part that were valid but that the reader could
    not turn into steps, each as (place, why): they are reported, never silently dropped.

    A reader may hand over steps already checked but not yet built as models
    (:meth:`deferred`): ``steps`` and ``header`` build them the first time they are read,
    and :attr:`records` lets a caller that only counts (``reinstate ingest``) read the
    steps' fields without building them.
    """

    __slots__ = ("_header", "_pending", "_steps", "place", "places", "run_id", "source",
                 "unread")

    def __init__(self, run_id: str, source: Path, place: str | int,
                 header: RunHeader | None = None, steps: list[Step] | None = None,
                 places: list[str | int] | None = None,
                 unread: list[tuple[str | int, str]] | None = None) -> None:
        self.run_id = run_id
        self.source = source
        self.place = place
        self._header = header
        self._steps: list[Step] | None = [] if steps is None else steps
        self.places: list[str | int] = [] if places is None else places
        self.unread: list[tuple[str | int, str]] = [] if unread is None else unread
        self._pending: Pending | None = None

    @classmethod
    def deferred(cls, run_id: str, source: Path, place: str | int,
                 pending: Pending) -> RunPart:
        """A part whose header and steps ``pending`` builds when they are first read."""
        part = cls(run_id, source, place, places=pending.places)
        part._steps = None
        part._pending = pending
        return part

    @property
    def steps(self) -> list[Step]:
        """The steps, in the order they were read (built now if they were deferred)."""
        if self._steps is None:
            assert self._pending is not None
            self._steps = self._pending.steps()
        return self._steps

    @steps.setter
    def steps(self, steps: list[Step]) -> None:
        self._steps = steps

    @property
    def header(self) -> RunHeader | None:
        """The run's header, when this part carries one."""
        pending = self._pending
        if pending is not None and pending.header_line is not None:
            self._header = pending.header()
            pending.header_line = None
        return self._header

    @header.setter
    def header(self, header: RunHeader | None) -> None:
        if self._pending is not None:
            self._pending.header_line = None
        self._header = header

    @property
    def steps_deferred(self) -> bool:
        """Whether the steps are still the reader's records, their models not built."""
        return self._steps is None

    @property
    def raw_header(self) -> dict[str, Any] | None:
        """The header's fields while its model is not built yet (a reader that defers it
        hands them over as a dict), for a reader that still adjusts them; else ``None``.
        Its ``agent`` is there already when the run names one (``read_logs`` filters by it)."""
        pending = self._pending
        header = pending.header_line if pending is not None else None
        return header if isinstance(header, dict) else None

    def restep(self, records: list[Any], places: list[str | int]) -> None:
        """Replace the part's steps and their places: the records while the steps are
        deferred by a reader whose records build themselves, else the step models."""
        if self._steps is None:
            pending = self._pending
            assert pending is not None and pending.self_building, "records without their lines"
            pending.records = records
            pending.places = places
        else:
            self._steps = records
        self.places = places

    @property
    def records(self) -> Sequence[Any]:
        """The steps as read, for a caller that only counts or summarises them: each has
        the step's fields (``kind``, ``tool``, ``call_id``, ``at``, …) and is the step
        model itself, or, while the steps are deferred, a lighter record of the same
        fields (a tool result's ``result`` then as logged, JSON text not yet parsed)."""
        if self._steps is None:
            assert self._pending is not None
            return self._pending.records
        return self._steps

    def __repr__(self) -> str:
        return (f"RunPart(run_id={self.run_id!r}, source={self.source!r}, "
                f"place={self.place!r}, header={self.header!r}, steps={self.steps!r}, "
                f"places={self.places!r}, unread={self.unread!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunPart):
            return NotImplemented
        return ((self.run_id, self.source, self.place, self.header, self.steps, self.places,
                 self.unread) == (other.run_id, other.source, other.place, other.header,
                                  other.steps, other.places, other.unread))

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def where(self, index: int | None = None,
              show: Callable[[Path], str] = display_path) -> str:
        """``file:line`` (or ``file $.path``) of a step, or of the part itself; ``show``
        names the file (relative to the working directory by default)."""
        place = self.place if index is None else self.places[index]
        return located(self.source, place, show)

    def time_range(self) -> tuple[datetime, datetime] | None:
        """The earliest and latest step times, when the reader's records give them without
        a time object made for each step (OTLP's light records hold nanoseconds); else
        ``None``: then read each step's ``at``. Never the range of a part without steps."""
        pending = self._pending
        return pending.time_range() if self._steps is None and pending is not None else None

    def ns_range(self) -> tuple[int, int] | None:
        """:meth:`time_range` in nanoseconds since the epoch (:func:`ns_time` makes each a
        time), when the reader's records hold their times so; else ``None``. For a caller
        that compares the times of many parts: no time object made for each part."""
        pending = self._pending
        return pending.ns_range() if self._steps is None and pending is not None else None

    def first_time(self) -> datetime | None:
        """When the part's run started, or its earliest step, if the log says."""
        if self.header is not None and self.header.started_at is not None:
            return as_utc(self.header.started_at)
        # The records, not the steps: the same times, without building deferred models.
        return min((as_utc(s.at) for s in self.records if s.at is not None),  # type: ignore[type-var]
                   default=None)


class Pending:
    """Steps (and perhaps a header) a reader checked but has not built as models yet: each
    step as its light record and the raw record it was read from, built by ``build``."""

    __slots__ = ("build", "header_line", "lines", "places", "records")

    self_building = False
    """Whether each record builds its own model (a subclass's ``steps``; ``lines`` unused)."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self.build = build
        # The raw header record: a line, or (a reader whose records build themselves) a dict.
        self.header_line: Any = None
        self.records: list[Any] = []
        self.lines: list[bytes | None] = []
        self.places: list[str | int] = []

    def add(self, record: Any, line: bytes | None, place: str | int) -> None:
        """One step: its light record and raw line, or (``line`` None) a built model."""
        self.records.append(record)
        self.lines.append(line)
        self.places.append(place)

    def steps(self) -> list[Step]:
        """The step models, built from their raw records."""
        build = self.build
        return [record if line is None else build(line)
                for record, line in zip(self.records, self.lines, strict=True)]

    def time_range(self) -> tuple[datetime, datetime] | None:
        """The records' first and last times, where they are cheap to find (a subclass
        whose records hold integer times); ``None`` here: read each record's ``at``."""
        return None

    def ns_range(self) -> tuple[int, int] | None:
        """The records' first and last times in nanoseconds since the epoch, where they
        hold them (a subclass); ``None`` here."""
        return None

    def header(self) -> RunHeader:
        """The header model, built from its raw record."""
        assert self.header_line is not None
        header: RunHeader = self.build(self.header_line)
        return header



def located(source: Path, place: str | int,
            show: Callable[[Path], str] = display_path) -> str:
    """``logs/a.jsonl:12`` for a line, ``logs/a.json $[3].traj[5]`` for a JSON path."""
    shown = show(source)
    if isinstance(place, int):
        return f"{shown}:{place}"
    if place.startswith("line "):
        line, _, rest = place[5:].partition(" ")
        return f"{shown}:{line}" + (f" {rest}" if rest else "")
    return f"{shown} {place}" if place else shown


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_time(ns: int) -> datetime:
    """A time in nanoseconds since the epoch (as OpenTelemetry writes it) as a step's time:
    UTC, to the microsecond."""
    return _EPOCH + timedelta(0, 0, ns // 1000)  # positional: faster, once a step


def as_utc(value: datetime | None) -> datetime | None:
    """A log's time as an aware UTC time; a time without a zone is taken to be UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def clean_step(step: Step) -> Step:
    """The step as a run record holds it: without the run id a log line carries with it."""
    kind = type(step)
    if kind.__name__.endswith("Line"):
        base: Any = next(c for c in kind.__mro__[1:] if c.__name__ in _STEP_CLASSES)
        values = {k: v for k, v in step.__dict__.items() if k != "run_id"}
        return base.model_construct(  # type: ignore[no-any-return]
            _fields_set=step.model_fields_set - {"run_id"}, **values)
    return step


_RUN_FIELDS = frozenset(RunHeader.model_fields) - {"run_id"}
_STEP_CLASSES = frozenset({"UserInput", "Reasoning", "ToolCall", "ToolResult", "Output"})


def merge_parts(parts: Iterable[RunPart]) -> list[Run]:
    """Whole runs from their parts, in the order each run first appears.

    Every part was validated as it was read, so the runs are built without validating again.
    """
    runs: dict[str, dict[str, Any]] = {}
    for part in parts:
        run = runs.setdefault(part.run_id, {"run_id": part.run_id, "steps": []})
        if part.header is not None:
            for name in part.header.model_fields_set & _RUN_FIELDS:
                value = getattr(part.header, name)
                if isinstance(value, dict) and isinstance(run.get(name), dict):
                    run[name] = {**run[name], **value}
                elif isinstance(value, Usage) and isinstance(run.get(name), Usage):
                    run[name] = _summed(run[name], value)  # each part logs its own calls
                else:
                    run[name] = value
        run["steps"].extend(clean_step(s) for s in part.steps)
        if part.header is not None and part.header.metadata:
            apply_to_merged(run, part)  # a reviewer's edit: the step is the call that ran
        run.pop("kind", None)
    return [Run.model_construct(_fields_set=set(data), **data) for data in runs.values()]


def _summed(first: Usage, second: Usage) -> Usage:
    """Usage of two parts of one run (two model calls, two traces), added up."""
    values: dict[str, Any] = {}
    for name in Usage.model_fields:
        a, b = getattr(first, name), getattr(second, name)
        values[name] = b if a is None else a if b is None else a + b
    return Usage.model_construct(**{k: v for k, v in values.items() if v is not None})


def located_runs(parts: Iterable[RunPart], show: Callable[[Path], str] = display_path,
                 ) -> list[tuple[Run, list[str]]]:
    """Whole runs from their parts, each with where every step was read (``file:line``)."""
    kept = list(parts)
    places: dict[str, list[str]] = {}
    for part in kept:
        places.setdefault(part.run_id, []).extend(
            part.where(i, show) for i in range(len(part.steps)))
    return [(run, places.get(run.run_id, [])) for run in merge_parts(kept)]


class RunStarts:
    """The run ids one log starts again at another time, noted as parts stream.

    A run record's ``started_at`` starts its run; a second record of the same log starting
    the id at another time is another run logged under a reused id (or a conversation's
    turns logged as runs under one id: the log cannot say which). Readers join both into
    one run, so every figure over runs counts them as one: said, never silent. Only each
    id's first start is kept (its time and place), not its part.
    """

    __slots__ = ("_first", "again")

    def __init__(self) -> None:
        self._first: dict[str, tuple[datetime, Path, str | int]] = {}
        self.again: dict[str, list[tuple[Path, str | int]]] = {}
        """Each run id started again, with every place in its log that starts it."""

    def note(self, part: RunPart) -> None:
        """Note one part's run record, if it has one with a start."""
        header = part.header
        started = as_utc(header.started_at) if header is not None else None
        if started is None:
            return
        first = self._first.setdefault(part.run_id, (started, part.source, part.place))
        if started != first[0] and part.source == first[1]:
            self.again.setdefault(part.run_id, [(first[1], first[2])]).append(
                (part.source, part.place))

    def lines(self, joined: str, show: Callable[[Path], str] = display_path,
              limit: int = 5) -> list[str]:
        """A warning for each run id started again (the first ``limit``, then how many
        more); ``joined`` says where its runs are counted as one."""
        said = [f"run {run_id} is started again in one log "
                f"({', '.join(located(source, place, show) for source, place in places)}), "
                f"each at another started_at: its runs are joined and counted as one run "
                f"{joined}; if another run reused the id, give each run its own id"
                for run_id, places in list(self.again.items())[:limit]]
        if len(self.again) > limit:
            said.append(f"… and {len(self.again) - limit} more run ids started again in "
                        f"one log")
        return said


class Skips:
    """Records left out of a read: how many, why, and where the first of each was.

    ``--skip-invalid`` counts the invalid records here; the ingest summary counts, the same
    way, the records a reader read but did not understand (:attr:`RunPart.unread`).
    """

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, error: InvalidInput) -> None:
        """Count one skipped record."""
        reason = f"{error.place}: {error.expected}" if error.place else error.expected
        where = display_path(error.path) if error.path is not None else ""
        self.note(reason, f"{where}:{error.line}" if error.line is not None else where)

    def note(self, reason: str, where: str) -> None:
        """Count one record left out for ``reason``, found at ``where`` (``file:line``)."""
        self.reasons[reason] += 1
        self.first.setdefault(reason, where)

    @property
    def total(self) -> int:
        """Records skipped in all."""
        return sum(self.reasons.values())

    def lines(self) -> list[str]:
        """One sentence per reason, most frequent first."""
        return [f"{count} × {reason} (first at {self.first[reason]})"
                for reason, count in self.reasons.most_common()]


def skip_or_raise(skips: Skips | None, error: InvalidInput) -> None:
    """Count a bad record when invalid ones are skipped; otherwise it stops the read."""
    if skips is None:
        raise error from None
    skips.add(error)


