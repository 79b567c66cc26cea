"""Reading logs in: validate every record, say what each file holds, and optionally write
the runs in the native format (``--out``), streaming, so any size of log fits.

Every file is accounted for: what was understood (runs, steps by kind, calls with and
without a result, content present or not), and a warning, with counts and the first
place, for runs with no steps and records the reader did not understand, so a file read
as nothing is never a silent all-clear; ``--strict`` makes such a warning an error.

Ingested runs are not copied into a store: the logs stay the record, and every command
that needs runs (investigate, metrics, the logging check) streams them from the files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from evalsuite import (
    InvalidInput,
    RunPart,
    Skips,
    as_utc,
    detect_format,
    display_path,
    is_log_format,
    located,
    ns_time,
    read_logs,
    write_parquet_parts,
    write_parts,
)
from gates._response.seen_runs import SeenRuns

# How each kind of step is named when counted, and how its content is named.
_KINDS = {"user_input": ("input", "inputs"), "reasoning": ("reasoning", "reasoning"),
          "tool_call": ("call", "calls"), "tool_result": ("result", "results"),
          "output": ("output", "outputs")}
_STRICT = "--strict refuses a log that was read only in part"


@dataclass
class FileWarning:
    """Something in one file that was not read as evidence: what, and where it starts."""

    path: Path
    place: str | int
    message: str

    def error(self) -> InvalidInput:
        """The warning as the error ``--strict`` makes of it."""
        if isinstance(self.place, int):
            return InvalidInput(self.path, "", f"{self.message}; {_STRICT}", line=self.place)
        where, line = self.place, None
        if where.startswith("line "):
            number, _, where = where[5:].partition(" ")
            line = int(number) if number.isdigit() else None
        return InvalidInput(self.path, where, f"{self.message}; {_STRICT}", line=line)


@dataclass
class FileSummary:
    """What one log holds, counted as it streams (only the runs' ids, as hashes, and their
    calls still waiting for a result are kept)."""

    path: Path
    format: str
    runs: int = 0
    steps: int = 0
    tool_calls: int = 0
    paired: bool = False
    """An OTLP/JSON file read with the others given whose runs all came out under those
    files (a logs export whose events joined spans elsewhere): no runs of its own is right."""
    kinds: Counter[str] = field(default_factory=Counter)
    """Steps by kind."""
    empty: Counter[str] = field(default_factory=Counter)
    """Steps by kind that carry no content: no text, no arguments, no result."""
    answered: int = 0
    """Calls a result answers (paired within their run, by id, else by tool and order)."""
    unread: Skips = field(default_factory=Skips)
    """Records the reader read but did not understand, by reason."""
    first_unread: str | int | None = None
    """Where the first record not understood is."""
    # Every run id seen (to count runs that interleave), as its hash in about 8 bytes (a
    # set of the ids was ingest's one growth with the log's size), and where each run not
    # yet seen with a step first was.
    _seen: SeenRuns = field(default_factory=SeenRuns)
    _stepless: dict[str, str | int] = field(default_factory=dict)
    # Calls waiting for a result, per run, as (call id, tool): small, since a log's calls
    # without results stay here to the end.
    _waiting: dict[str, list[tuple[str | None, str]]] = field(default_factory=dict)
    # The first and last step times: of the parts that gave them as times, and of those
    # that gave them in nanoseconds (OTLP's records), kept so: no time made for each part.
    _first: datetime | None = field(default=None, repr=False)
    _last: datetime | None = field(default=None, repr=False)
    _first_ns: int | None = field(default=None, repr=False)
    _last_ns: int | None = field(default=None, repr=False)

    @property
    def first_at(self) -> datetime | None:
        """When the file's earliest step happened, if its steps say."""
        first, ns = self._first, self._first_ns
        if ns is not None:
            at = ns_time(ns)
            if first is None or at < first:
                return at
        return first

    @property
    def last_at(self) -> datetime | None:
        """When the file's latest step happened, if its steps say."""
        last, ns = self._last, self._last_ns
        if ns is not None:
            at = ns_time(ns)
            if last is None or at > last:
                return at
        return last

    def count(self, part: RunPart) -> None:
        """Count one part of a run (once a step: this runs over every step ingested)."""
        # The steps' records, not their models: a reader that defers building the models
        # (the native format) is counted without building them.
        run_id, steps = part.run_id, part.records
        if self._seen.add(run_id):
            self.runs += 1
            if not steps:
                self._stepless[run_id] = part.place
        elif steps and self._stepless:
            self._stepless.pop(run_id, None)
        if part.unread:
            self._count_unread(part)
        if not steps:
            return
        self.steps += len(steps)
        # One pass over the steps, dispatching on ``kind`` once a step, with what it touches
        # held in locals and no list, generator or Counter.update made per part: this loop
        # runs once a step ingested and was as costly as validating the step.
        kinds, empty = self.kinds, self.empty
        waiting = self._waiting.get(run_id)
        for step in steps:
            kind = step.kind
            kinds[kind] += 1
            if kind == "tool_call":
                self.tool_calls += 1
                if step.arguments_logged is False:
                    empty[kind] += 1
                if waiting is None:
                    waiting = self._waiting[run_id] = []
                waiting.append((step.call_id, step.tool))
            elif kind == "tool_result":
                if step.result in (None, "") and step.error is None:
                    empty[kind] += 1
                if waiting:
                    call_id = step.call_id  # most often the earliest call waiting: inline
                    if call_id is not None and waiting[0][0] == call_id:
                        del waiting[0]
                        self.answered += 1
                    else:
                        self._answer(waiting, call_id, step.tool)
            elif not step.content.strip():
                empty[kind] += 1
        if waiting is not None and not waiting:
            del self._waiting[run_id]
        # A reader whose records keep their times as integers (OTLP's nanoseconds) gives
        # the part's first and last as such: compared so, no time object made for a part.
        ns = part.ns_range()
        if ns is not None:
            first, last = ns
            if self._first_ns is None or first < self._first_ns:
                self._first_ns = first
            if self._last_ns is None or last > self._last_ns:
                self._last_ns = last
            return
        times: Sequence[datetime] | None = part.time_range()
        if times is None:
            times = [at for step in steps if (at := step.at) is not None]
        if times:
            self._span(times)

    def _count_unread(self, part: RunPart) -> None:
        for place, why in part.unread:
            self.unread.note(why, located(part.source, place))
            if self.first_unread is None:
                self.first_unread = place

    def _span(self, times: Sequence[datetime]) -> None:
        """Widen the file's first and last times to a part's step times."""
        try:  # times all with a zone (or all without) compare as they are: no copies
            first, last = min(times), max(times)
            mixed = first.tzinfo is None or last.tzinfo is None
        except TypeError:  # with a zone and without: compare all as UTC
            mixed = True
        if mixed:
            utc = [as_utc(at) or at for at in times]
            first, last = min(utc), max(utc)
        if self._first is None or first < self._first:
            self._first = first
        if self._last is None or last > self._last:
            self._last = last

    def _answer(self, waiting: list[tuple[str | None, str]], call_id: str | None,
                tool: str | None) -> None:
        """Pair a result (its call id and tool) with the call it answers, as
        :meth:`Run.pairs` does, streaming."""
        if call_id is not None:
            for index, call in enumerate(waiting):
                if call[0] == call_id:
                    del waiting[index]
                    self.answered += 1
                    return
        for index, (waiting_id, waiting_tool) in enumerate(waiting):
            if waiting_id is None and tool in (None, waiting_tool):
                del waiting[index]
                self.answered += 1
                return

    def understood(self) -> str:
        """One sentence: the runs, steps by kind, calls with and without a result, content."""
        if self.paired:
            return (f"{display_path(self.path)} ({self.format}): read with the other OTLP/JSON "
                    f"files given, its log events joined to their spans (counted there)")
        kinds = ", ".join(f"{self.kinds[k]} {_KINDS[k][self.kinds[k] != 1]}"
                          for k in _KINDS if self.kinds[k])
        text = (f"{display_path(self.path)} ({self.format}): {_n(self.runs, 'run')}, "
                f"{_n(self.steps, 'step')}" + (f" ({kinds})" if kinds else ""))
        if self.tool_calls:
            text += (f"; calls: {self.answered} with a result, "
                     f"{self.tool_calls - self.answered} without")
        missing = [f"{self.empty[k]} of {self.kinds[k]} {_KINDS[k][1]}"
                   for k in _KINDS if self.empty[k]]
        if self.steps:
            text += ("; content: missing from " + ", ".join(missing) if missing
                     else "; content: present in every step")
        return text

    def warnings(self, agent: str | None = None) -> list[FileWarning]:
        """What was not read as evidence: no runs, runs with no steps, records not understood."""
        found = []
        if not self.runs and not self.paired:
            whose = f" of agent {agent}" if agent else ""
            found.append(FileWarning(self.path, "", f"no runs{whose} were read"))
        empty = list(self._stepless)
        if empty:
            found.append(FileWarning(self.path, self._stepless[empty[0]],
                                     f"{len(empty)} of {_n(self.runs, 'run')} read with no "
                                     f"steps (the first here: {empty[0]})"))
        if self.unread.total and self.first_unread is not None:
            reasons = "; ".join(f"{count} × {reason}"
                                for reason, count in self.unread.reasons.most_common())
            found.append(FileWarning(self.path, self.first_unread,
                                     f"{_n(self.unread.total, 'record')} not understood, the "
                                     f"first here: {reasons}"))
        return found


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class Ingested:
    """What ingest read, skipped and wrote."""

    files: list[FileSummary]
    skipped: Skips | None = None
    written: Path | None = None
    lines: int = 0
    warnings: list[str] = field(default_factory=list)


class Tally:
    """What each of the logs read together holds, counted as their parts stream by."""

    def __init__(self, paths: Sequence[Path], fmt: str = "auto") -> None:
        self.files = [FileSummary(path=p, format=detect_format(p) if fmt == "auto" else fmt)
                      for p in paths]
        self._by_path = {s.path: s for s in self.files}
        self._last: tuple[Path, FileSummary] | None = None

    def count(self, part: RunPart) -> None:
        """Count one part in the file it came from (a trace's log events count with the
        file its spans are in)."""
        last = self._last
        if last is not None and part.source is last[0]:  # a file's parts come together:
            summary = last[1]  # its path is looked up (hashed: a Python call) once
        else:
            summary = self._by_path.get(part.source, self.files[0])
            self._last = (part.source, summary)
        summary.count(part)

    def finish(self, agent: str | None = None, *, strict: bool = False) -> list[str]:
        """The warnings, one a line (``file:place: what``), once every part is counted.

        Raises:
            InvalidInput: with ``strict``, the first warning.
        """
        otel = [s for s in self.files if s.format == "otel"]
        warnings = []
        for summary in self.files:
            summary.paired = (summary in otel and not summary.runs
                              and any(o.runs for o in otel))
            found = summary.warnings(agent)
            if found and strict:
                raise found[0].error()
            warnings += [f"{located(w.path, w.place)}: {w.message}" for w in found]
        return warnings


def ingest(paths: Sequence[Path], fmt: str = "auto", *, agent: str | None = None,
           skip_invalid: bool = False, strict: bool = False,
           out: Path | None = None) -> Ingested:
    """Read every log, validating each record; with ``out``, write the runs there.

    Without ``skip_invalid`` the first bad record stops everything (and ``out`` is not
    written); with it, bad records are counted and left out. A file read as no runs,
    as runs with no steps, or with records the reader did not understand is a warning;
    with ``strict`` it raises :class:`InvalidInput` instead, and ``out`` is not written.
    ``fmt`` is ``auto``, a bundled format or a reader plugin (see ``read_log``).
    """
    if not paths:
        raise InvalidInput(None, "FILE", "expected at least one log file")
    if fmt != "auto" and not is_log_format(fmt):
        raise InvalidInput(None, "--format", f"no reader named {fmt!r}: expected auto, a "
                                             f"bundled format, an installed reader plugin "
                                             f"or module:callable")
    tally = Tally(paths, fmt)
    if out is not None and any(out.resolve() == p.resolve() for p in paths):
        raise InvalidInput(out, "--out", "expected a new file, not one of the logs being read")
    skips = Skips() if skip_invalid else None
    done = Ingested(files=tally.files, skipped=skips, written=out)

    def parts() -> Iterator[RunPart]:
        # All files at once: OTLP spans and logs files given together are paired.
        # Without --out the steps are only counted: their models are not built, and no
        # header is read.
        for part in read_logs(paths, fmt, agent=agent, skips=skips, defer_steps=out is None,
                              headers=out is not None):
            tally.count(part)
            yield part
        # Raised inside the stream with --strict: --out is left unwritten.
        done.warnings += tally.finish(agent, strict=strict)

    if out is not None:
        done.lines = (write_parquet_parts if out.suffix.lower() == ".parquet"
                      else write_parts)(parts(), out)
    else:
        for _ in parts():
            pass
    return done
