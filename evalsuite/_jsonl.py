"""The native JSONL run format: one JSON object a line.

A line is either a run header (``{"kind": "run", "run_id": …}``) or a step that names
its run (``{"run_id": …, "kind": "tool_call", …}``). A file may hold many runs, and
their lines may interleave; runs come back in the order they first appear.

Reading streams: :func:`native_parts` yields one part per run (per stretch of one run's
lines), so a log of millions of steps is read in constant memory. Each line is parsed and
validated in one pass by pydantic's JSON parser against a line model derived from the run
record's own step models; only a line that fails is parsed again, slowly, to say exactly
what is wrong. For a caller that only counts steps (``defer``), each line is first checked
by the fast path (:mod:`evalsuite._jsonl_fast`: msgspec structs under the step models'
rules) and its model is built only if the part's steps are read; a line the fast path
cannot decide goes to the pydantic path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, create_model

from evalsuite._documents import (
    json_path,
    load_json,
    strip_tags,
    write_atomic,
    write_atomic_lines,
)
from evalsuite._errors import InvalidInput
from evalsuite._jsonl_fast import FAST_DECODER, FAST_ERRORS, LONG_FRACTION
from evalsuite._log_files import open_log
from evalsuite._parts import Pending, RunHeader, RunPart, Skips, merge_parts, skip_or_raise
from evalsuite._run import STEP_KINDS, Output, Reasoning, Run, Step, ToolCall, ToolResult, UserInput

_STEP = TypeAdapter[Step](Step)


def _line_model(base: type[Any]) -> Any:
    return create_model(f"{base.__name__}Line", __base__=base,
                        run_id=(str, Field(min_length=1)))


class _HeaderLine(RunHeader):
    kind: Literal["run"]
    schema_version: Literal[1] = 1


# One model per kind of line, each the step model plus the run id it names.
_LINE_TYPE: Any = Annotated[
    _HeaderLine | _line_model(UserInput) | _line_model(Reasoning)
    | _line_model(ToolCall) | _line_model(ToolResult) | _line_model(Output),
    Field(discriminator="kind"),
]
_LINE = TypeAdapter[Any](_LINE_TYPE)


def native_parts(path: Path, skips: Skips | None = None, *,
                 defer: bool = False) -> Iterator[RunPart]:
    """The lines of a native JSONL file as parts of their runs, validated as they are read.

    Consecutive lines of one run make one part (a header starts a new one), so the usual
    log, written run after run, costs one part a run. A bad line raises
    :class:`InvalidInput` naming its line, unless ``skips`` is given: then it is counted
    there and reading goes on.

    With ``defer``, for a caller that counts more steps than it reads (``ingest``, ``runs``),
    each line is checked without building its model, and the models are built only when a
    part's ``steps`` or ``header`` is read (``RunPart.records`` reads the fields without
    building them): about twice as fast when the steps are only counted, a little slower
    when every step is read. Acceptance and errors are the same either way.
    """
    return _deferred_parts(path, skips) if defer else _validated_parts(path, skips)


def _deferred_parts(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    """:func:`native_parts` with ``defer``: each line is checked by the fast path
    (:mod:`evalsuite._jsonl_fast`) and its models are built only when the part's steps or
    header are read; a line the fast path cannot decide is validated here by the pydantic
    models, as :func:`_validated_parts` validates every line."""
    validate = _LINE.validator.validate_json  # the validator itself: no wrapper a line
    # The fast path inlined, and the current part's lists held in locals: this loop runs
    # once a line, and a call or attribute look-up a line cost as much as the decoding.
    decode, long_fraction = FAST_DECODER.decode, LONG_FRACTION.search
    part: RunPart | None = None
    run_id: str | None = None
    records: list[Any] = []
    lines: list[bytes | None] = []
    places: list[str | int] = []
    try:
        with open_log(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    record: Any = decode(raw)
                    line: bytes | None = raw if long_fraction(raw) is None else None
                except FAST_ERRORS:
                    line = None
                if line is None:  # not decided by the fast path: the models decide
                    try:
                        record = validate(raw)
                    except ValidationError:
                        _refuse(raw, number, path, skips)
                        continue
                if record.kind == "run" or run_id != record.run_id or part is None:
                    if part is not None:
                        yield part
                    run_id = record.run_id
                    pending = Pending(validate)
                    records, lines, places = pending.records, pending.lines, pending.places
                    part = RunPart.deferred(record.run_id, path, number, pending)
                    if record.kind == "run":
                        if line is None:
                            part.header = record
                        else:
                            pending.header_line = line
                        continue
                records.append(record)
                lines.append(line)
                places.append(number)
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the run log ({exc.strerror})") from None
    if part is not None:
        yield part


def _validated_parts(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    """:func:`native_parts` building every line's model as it is read (one pass of
    pydantic's JSON parser and validator)."""
    validate = _LINE.validator.validate_json  # the validator itself: no wrapper a line
    part: RunPart | None = None
    try:
        with open_log(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    record = validate(raw)
                except ValidationError:
                    _refuse(raw, number, path, skips)
                    continue
                if type(record) is _HeaderLine:
                    if part is not None:
                        yield part
                    part = RunPart(run_id=record.run_id, source=path, place=number,
                                   header=record, steps=[], places=[])
                elif part is not None and part.run_id == record.run_id:
                    part.steps.append(record)
                    part.places.append(number)
                else:
                    if part is not None:
                        yield part
                    part = RunPart(run_id=record.run_id, source=path, place=number,
                                   steps=[record], places=[number])
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the run log ({exc.strerror})") from None
    if part is not None:
        yield part


def _refuse(raw: bytes, number: int, path: Path, skips: Skips | None) -> None:
    """A line the models refused: a blank line is passed over; any other is explained
    (file, line, JSON path) and skipped when ``skips`` collects, else raised."""
    if not raw.strip():
        return
    try:
        _explain(raw, number, path)
    except InvalidInput as exc:
        skip_or_raise(skips, exc)


def _explain(raw: bytes, number: int, path: Path) -> None:
    """Raise the precise error for a line the fast path refused."""
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise InvalidInput(path, "", f"not UTF-8 text ({exc.reason})", line=number) from None
    _read_line(line, number, path, {})
    raise InvalidInput(path, "$", "expected a run header or a step", line=number)


def read_runs(path: Path) -> list[Run]:
    """Read every run in a native JSONL file."""
    runs = merge_parts(native_parts(path))
    if not runs:
        raise InvalidInput(path, "", "no runs in this file: expected JSON lines with a run_id")
    return runs


def _read_line(line: str, number: int, path: Path, runs: dict[str, dict[str, Any]]) -> None:
    try:
        record = load_json(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(path, "", f"not valid JSON: {exc.msg}", line=number) from None
    if not isinstance(record, dict):
        raise InvalidInput(path, "$", "expected a JSON object on each line", line=number)
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput(path, "$.run_id", "expected the run's id as a string", line=number)
    kind = record.pop("kind", None)
    if kind == "run":
        version = record.pop("schema_version", 1)
        if version != 1:
            raise InvalidInput(
                path, "$.schema_version", f"expected 1, got {version!r}", line=number
            )
        header = _validated(RunHeader, record, path, number, "")
        run = runs.setdefault(run_id, {"run_id": run_id, "steps": []})
        run.update(header.model_dump(exclude_unset=True))
        return
    if kind not in STEP_KINDS:
        raise InvalidInput(
            path, "$.kind", f"expected 'run' or one of {', '.join(STEP_KINDS)}, got {kind!r}",
            line=number,
        )
    record.pop("run_id")
    step = _validated(_STEP, {"kind": kind, **record}, path, number, f" (in a {kind} step)")
    runs.setdefault(run_id, {"run_id": run_id, "steps": []})["steps"].append(step)


def _validated(model: Any, record: dict[str, Any], path: Path, number: int, where: str) -> Any:
    try:
        return model.validate_python(record) if isinstance(model, TypeAdapter) else (
            model.model_validate(record))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = strip_tags([p for p in first["loc"] if isinstance(p, int | str)], record)
        raise InvalidInput(path, json_path(loc), f"{first['msg']}{where}", line=number) from None


def header_line(run: Run | RunHeader) -> str:
    """The native header line of a run."""
    header = run.model_dump(mode="json", exclude={"steps", "kind"}, exclude_none=True)
    header.pop("schema_version", None)
    if not header.get("metadata"):
        header.pop("metadata", None)
    return json.dumps({"schema_version": 1, "kind": "run", **header})


def step_line(run_id: str, step: Step) -> str:
    """The native line of one step of a run."""
    body = step.model_dump(mode="json", exclude_none=True, exclude={"run_id"})
    return json.dumps({"run_id": run_id, **body})


def dump_runs(runs: Iterable[Run]) -> str:
    """Render runs in the native JSONL format."""
    lines = []
    for run in runs:
        lines.append(header_line(run))
        lines.extend(step_line(run.run_id, step) for step in run.steps)
    return "\n".join(lines) + "\n"


def part_lines(parts: Iterable[RunPart]) -> Iterator[str]:
    """Native lines for parts as they stream, a header for each run before its first step."""
    headed: set[str] = set()
    for part in parts:
        if part.header is not None:
            headed.add(part.run_id)
            yield header_line(part.header) + "\n"
        if part.steps and part.run_id not in headed:
            headed.add(part.run_id)
            yield header_line(RunHeader(run_id=part.run_id)) + "\n"
        for step in part.steps:
            yield step_line(part.run_id, step) + "\n"


def write_runs(runs: Iterable[Run], path: Path) -> None:
    """Write runs to ``path`` atomically in the native JSONL format."""
    write_atomic(path, dump_runs(runs))


def write_parts(parts: Iterable[RunPart], path: Path) -> int:
    """Stream parts to ``path`` atomically in the native format; returns the lines written."""
    return write_atomic_lines(path, part_lines(parts))
