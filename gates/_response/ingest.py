"""Reading logs in: validate every record, say what each file holds, and optionally write
the runs in the native format (``--out``), streaming, so any size of log fits.

Ingested runs are not copied into a store: the logs stay the record, and every command
that needs runs (investigate, metrics, the logging check) streams them from the files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from evalsuite import (
    InvalidInput,
    LogFormat,
    RunPart,
    Skips,
    ToolCall,
    as_utc,
    detect_format,
    read_logs,
    write_parts,
)


@dataclass
class FileSummary:
    """What one log holds."""

    path: Path
    format: str
    runs: int = 0
    steps: int = 0
    tool_calls: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None

    def count(self, part: RunPart) -> None:
        """Count one part of a run."""
        self.runs += part.header is not None
        self.steps += len(part.steps)
        first, last = self.first_at, self.last_at
        for step in part.steps:
            if type(step) is ToolCall or step.kind == "tool_call":
                self.tool_calls += 1
            at = step.at
            if at is None:
                continue
            if at.tzinfo is None:
                at = as_utc(at)
            if first is None or at < first:  # type: ignore[operator]
                first = at
            if last is None or at > last:  # type: ignore[operator]
                last = at
        self.first_at, self.last_at = first, last


@dataclass
class Ingested:
    """What ingest read, skipped and wrote."""

    files: list[FileSummary]
    skipped: Skips | None = None
    written: Path | None = None
    lines: int = 0
    warnings: list[str] = field(default_factory=list)


def ingest(paths: Sequence[Path], fmt: LogFormat | Literal["auto"] = "auto", *,
           agent: str | None = None, skip_invalid: bool = False,
           out: Path | None = None) -> Ingested:
    """Read every log, validating each record; with ``out``, write the runs there.

    Without ``skip_invalid`` the first bad record stops everything (and ``out`` is not
    written); with it, bad records are counted and left out.
    """
    if not paths:
        raise InvalidInput(None, "FILE", "expected at least one log file")
    summaries = [FileSummary(path=p, format=detect_format(p) if fmt == "auto" else fmt)
                 for p in paths]
    if out is not None and any(out.resolve() == p.resolve() for p in paths):
        raise InvalidInput(out, "--out", "expected a new file, not one of the logs being read")
    skips = Skips() if skip_invalid else None

    by_path = {s.path: s for s in summaries}

    def parts() -> Iterator[RunPart]:
        # All files at once: OTLP spans and logs files given together are paired.
        for part in read_logs([s.path for s in summaries], fmt, agent=agent, skips=skips):
            by_path.get(part.source, summaries[0]).count(part)
            yield part

    done = Ingested(files=summaries, skipped=skips, written=out)
    if out is not None:
        done.lines = write_parts(parts(), out)
    else:
        for _ in parts():
            pass
    if not any(s.runs or s.steps for s in summaries):
        done.warnings.append("no runs were read")
    return done
