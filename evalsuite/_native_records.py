"""Native run records one at a time, away from their file: each given with its place, and
the Parquet layout that stores them.

An engine that splits a log (a Ray Dataset grouped by run) hands over records without the
file around them, each with the line (or row) it was read from. :func:`native_record_parts`
validates them exactly as :func:`evalsuite.read_log` validates a native JSONL file's lines,
with the same models and the same error for a bad one, and gives one part a record.

The Parquet layout is the native JSONL format, one row a record, in log order:

- ``run_id`` (string): the run the record belongs to (the record's own ``run_id``);
- ``kind`` (string): ``run`` for a header, else the step's kind (``tool_call``, …);
- ``record`` (string): the native JSON line itself.

The nested values (a call's ``args``, a run's ``context``) have no fixed shape, so they
stay JSON text: as Arrow columns every record would get every key any record has, as
null, and an argument constraint would see arguments the agent never passed. A row's
place is its 1-based row number in the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evalsuite._documents import atomic_output, load_json
from evalsuite._errors import InvalidInput
from evalsuite._jsonl import _LINE, _explain, _HeaderLine, part_lines
from evalsuite._parts import RunPart

PARQUET_COLUMNS = ("run_id", "kind", "record")
# Rows a Parquet row group holds: a reader's unit of work (a few MB of records).
ROWS_PER_GROUP = 50_000


def native_record_parts(records: Iterable[tuple[int, str | bytes]],
                        source: Path) -> Iterator[RunPart]:
    """Native records given with their places (line or row numbers), as parts of their runs.

    Each record is one part: a header part or a part of one step. A blank record is
    skipped, as a blank line is.

    Raises:
        InvalidInput: the first bad record, naming ``source`` and its place.
    """
    validate = _LINE.validator.validate_json
    for number, raw in records:
        try:
            record = validate(raw)
        except ValidationError:
            data = raw.encode() if isinstance(raw, str) else raw
            if not data.strip():
                continue
            _explain(data, number, source)
            raise AssertionError("unreachable: _explain raises") from None
        if type(record) is _HeaderLine:
            yield RunPart(run_id=record.run_id, source=source, place=number, header=record)
        else:
            yield RunPart(run_id=record.run_id, source=source, place=number,
                          steps=[record], places=[number])


def pyarrow_modules() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``, or one clean error saying how to install them.

    Raises:
        InvalidInput: pyarrow is not installed.
    """
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InvalidInput(None, "--out", "Parquet needs pyarrow, which is not installed: "
                                          "pip install 'reinstate[ray]'") from None
    return pyarrow, pyarrow.parquet


def write_parquet_parts(parts: Iterable[RunPart], path: Path) -> int:
    """Stream parts to ``path`` atomically as native Parquet; returns the rows written.

    The rows are the lines :func:`evalsuite.write_parts` writes, in the same order (a
    header before each run's first step), so row N of the Parquet file is line N of the
    native JSONL file written from the same logs.
    """
    pa, pq = pyarrow_modules()
    schema = pa.schema([(name, pa.string()) for name in PARQUET_COLUMNS])
    count = 0
    with atomic_output(path) as handle, pq.ParquetWriter(handle, schema) as writer:
        batch: dict[str, list[str]] = {column: [] for column in PARQUET_COLUMNS}
        for line in part_lines(parts):
            record = load_json(line)
            batch["run_id"].append(record["run_id"])
            batch["kind"].append(record["kind"])
            batch["record"].append(line.rstrip("\n"))
            count += 1
            if len(batch["record"]) >= ROWS_PER_GROUP:
                writer.write_table(pa.table(batch, schema=schema))
                batch = {column: [] for column in PARQUET_COLUMNS}
        if batch["record"] or not count:
            writer.write_table(pa.table(batch, schema=schema))
    return count
