"""Backtests over a Ray Dataset: ``--engine ray`` on native JSONL and Parquet logs.

The logs are read as a Ray Dataset, one row a record with the file and the line (or
Parquet row) it came from, so the reading is split across the cluster as the deciding is:
no task reads a whole log. Rows are grouped by run (``groupby("run_id").map_groups``); each
run's records are put back in log order and decided by :func:`decide_parts`, the local
engine's loop, which asks the one replay function, with the history the run had. Each
run's tally is merged with others in ``map_batches`` and the few left on the driver
(:meth:`Tally.merge`). Steps are numbered by (file, line), the order the local engine reads
them in, so examples and labels come out in its order and the result is its result.

Paths may be local files or object storage URIs (``s3://bucket/key``), passed to Ray and
pyarrow as they are; the workers must reach them, and the workspace for the controls. A log
in another format (OTLP, SDK dumps: not one record a line) is not a dataset: the backtest
then keeps :mod:`gates._backtest.run`'s shard tasks.
"""

from __future__ import annotations

import itertools
import json
import logging
import pickle
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ray.data.datasource import FileBasedDatasource

from evalsuite import (
    PARQUET_COLUMNS,
    InvalidInput,
    ReinstateError,
    RunPart,
    detect_format,
    native_record_parts,
)
from gates._backtest.controls import judges, resolve_controls
from gates._backtest.decide import Judge, decide_parts
from gates._backtest.labels import BacktestLabel, Scan, scan
from gates._backtest.tally import Tally
from gates._config import Workspace
from gates._gate.ray_engine import EngineUnavailable, connect

DatasetFormat = Literal["jsonl", "parquet"]
# Rows a read task puts in one block: a few MB of records.
BLOCK_ROWS = 20_000
# Runs' tallies merged into one before they reach the driver.
MERGE_BATCH = 1_000
# A step's place in the whole history: file number * FILE_STRIDE + its line (or row).
FILE_STRIDE = 1 << 48
# pathlib (and so click's Path options) folds "s3://b/k" into "s3:/b/k"; a scheme of two
# letters or more (not a drive letter) followed by one slash was a URI.
_FOLDED_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)(.*)$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def log_location(path: Path) -> str:
    """Where Ray opens a log: a URI as the user gave it, a local file as an absolute path."""
    folded = _FOLDED_URI.match(str(path))
    if folded:
        return f"{folded[1]}://{folded[2]}"
    return str(path) if _URI.match(str(path)) else str(path.resolve())


def dataset_formats(logs: Sequence[Path], fmt: str) -> list[DatasetFormat] | None:
    """Each log's format when every log can be read as a Ray Dataset, else None.

    Parquet is known by its suffix; a local file by its first record (or ``fmt``); a URI,
    which is not opened here, by its suffix (``.jsonl``, ``.ndjson``).

    Raises:
        InvalidInput: a local log that does not exist, or a Parquet log given with logs
            that are not a dataset (only the dataset reads Parquet).
    """
    found: list[DatasetFormat | None] = []
    for path in logs:
        location = log_location(path)
        name = location.lower()
        if name.endswith(".parquet"):
            found.append("parquet")
        elif _URI.match(location):
            found.append("jsonl" if fmt in ("auto", "jsonl")
                         and name.endswith((".jsonl", ".ndjson")) else None)
        elif not path.is_file():
            raise InvalidInput(path, "", "file not found" if not path.exists()
                               else "expected a log file, got a folder")
        else:
            found.append("jsonl" if (detect_format(path) if fmt == "auto" else fmt) == "jsonl"
                         else None)
    if all(kind is not None for kind in found):
        return [kind for kind in found if kind is not None]
    parquet = next((p for p, kind in zip(logs, found, strict=True) if kind == "parquet"), None)
    if parquet is not None:
        raise InvalidInput(parquet, "", "a Parquet log is read as a Ray Dataset, with native "
                                        "JSONL logs only: convert the others with "
                                        "reinstate ingest --out FILE.parquet")
    return None


class NativeRecords(FileBasedDatasource):
    """One log's records as rows: ``file``, ``place`` (line or row), ``run_id``, ``record``."""

    def __init__(self, location: str, number: int, shown: str, kind: DatasetFormat) -> None:
        super().__init__(location)
        if len(self._paths()) != 1:
            raise InvalidInput(Path(shown), "", f"expected one log file, found "
                                                f"{len(self._paths())} under it")
        self._number = number
        self._source = Path(shown)
        self._kind = kind

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> Any:
        if self._kind == "parquet":  # Parquet's footer needs random access, not a stream
            return filesystem.open_input_file(path)
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f: Any, path: str) -> Iterator[Any]:
        import pyarrow as pa

        rows = self._parquet_rows(f) if self._kind == "parquet" else self._jsonl_rows(f)
        while True:
            chunk = list(itertools.islice(rows, BLOCK_ROWS))
            if not chunk:
                return
            places, run_ids, records = zip(*chunk, strict=True)
            yield pa.table({"file": pa.array([self._number] * len(chunk), pa.int64()),
                            "place": pa.array(places, pa.int64()),
                            "run_id": pa.array(run_ids, pa.string()),
                            "record": pa.array(records, pa.string())})

    def _jsonl_rows(self, f: Any) -> Iterator[tuple[int, str, str]]:
        number, rest = 0, b""
        while True:
            chunk = f.read(1 << 20)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop() if chunk else b""
            for raw in lines:
                number += 1
                if raw.strip():
                    yield number, *self._run_of(raw.rstrip(b"\r"), number)
            if not chunk:
                return

    def _run_of(self, raw: bytes, number: int) -> tuple[str, str]:
        """The line's run id and text; a line without one is refused as reading it would."""
        try:
            text = raw.decode("utf-8")
            run_id = json.loads(text).get("run_id")
        except (ValueError, AttributeError):
            run_id = None
        if isinstance(run_id, str) and run_id:
            return run_id, text
        for _ in native_record_parts([(number, raw)], self._source):
            pass  # raises the error ingest gives for this line
        raise InvalidInput(self._source, "$.run_id", "expected the run's id as a string",
                           line=number)

    def _parquet_rows(self, f: Any) -> Iterator[tuple[int, str, str]]:
        import pyarrow.parquet as pq

        try:
            table_file = pq.ParquetFile(f)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError …
            raise InvalidInput(self._source, "", f"expected a Parquet file ({exc})") from None
        names = table_file.schema_arrow.names
        expected = PARQUET_COLUMNS
        if sorted(names) != sorted(expected):
            odd = [n for n in names if n not in expected] or [
                n for n in expected if n not in names]
            raise InvalidInput(self._source, f"column {odd[0]}", f"expected the native "
                                                                 f"columns {', '.join(expected)}")
        row = 0
        for batch in table_file.iter_batches(columns=["run_id", "record"]):
            for run_id, record in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(),
                                      strict=True):
                row += 1
                if not isinstance(run_id, str) or not isinstance(record, str):
                    column = "run_id" if not isinstance(run_id, str) else "record"
                    raise InvalidInput(self._source, f"column {column}",
                                       "expected a string, got null", line=row)
                yield row, run_id, record


@dataclass(frozen=True)
class DatasetJob:
    """What every group's decider needs: the workspace, the controls, the labels, the logs."""

    root: Path
    agent: str
    controls: str
    compare: str | None
    rule: str | None
    labels: tuple[BacktestLabel, ...]
    sources: tuple[str, ...]
    """How each log is named in ``file:line``, by file number."""


@dataclass(frozen=True)
class _Deciders:
    """What a worker builds once per backtest: the judges and how logs are named."""

    judge: Judge
    against: Judge | None
    show: Callable[[Path], str]
    wanted: frozenset[str]


# Built once per backtest in each worker process (Ray reuses them for its tasks), so a
# run's group costs its deciding, not a reading of the control files.
_DECIDERS: dict[DatasetJob, _Deciders] = {}


def _deciders(job: DatasetJob) -> _Deciders:
    built = _DECIDERS.get(job)
    if built is None:
        workspace = Workspace.find(job.root)
        compared = None if job.compare is None else resolve_controls(workspace, job.agent,
                                                                     job.compare)
        judge, against = judges(resolve_controls(workspace, job.agent, job.controls),
                                compared, job.rule)
        _DECIDERS.clear()
        built = _DECIDERS[job] = _Deciders(judge, against, _shown(workspace),
                                           frozenset(label.run_id for label in job.labels))
    return built


def decide_run(group: Any, job: DatasetJob) -> dict[str, list[bytes]]:
    """One run (a group of rows) decided: its tally, and its step count and kinds when a
    label names it, pickled (``map_groups``)."""
    deciders = _deciders(job)
    group = group.sort_by([("file", "ascending"), ("place", "ascending")])
    rows = zip(group.column("file").to_pylist(), group.column("place").to_pylist(),
               group.column("run_id").to_pylist(), group.column("record").to_pylist(),
               strict=True)
    parts: list[RunPart] = []
    numbers: list[int] = []
    other_agent = False
    for file, place, run_id, record in rows:
        source = Path(job.sources[file])
        part = next(native_record_parts([(place, record)], source))
        if part.run_id != run_id:
            raise InvalidInput(source, "$.run_id", f"expected {run_id!r}, the row's run_id "
                                                   f"column", line=place)
        # Runs of another agent are left out, as read_logs(agent=…) leaves them out.
        header = part.header
        if header is not None and header.agent not in (None, job.agent):
            other_agent = True
            continue
        if other_agent:
            continue
        if header is not None and header.agent is None:
            part.header = header.model_copy(update={"agent": job.agent})
        parts.append(part)
        numbers.append(file * FILE_STRIDE + place)
    tally = Tally.for_labels(job.labels)
    decide_parts(parts, deciders.judge, deciders.against, tally, show=deciders.show,
                 numbers=numbers)
    found = scan(parts, job.labels) if parts and parts[0].run_id in deciders.wanted else None
    return {"result": [pickle.dumps((tally, found))]}


def merge_results(batch: Any) -> dict[str, list[bytes]]:
    """Many runs' pickled results as one (``map_batches``)."""
    tally: Tally | None = None
    found = Scan()
    for blob in batch.column("result").to_pylist():
        theirs, their_found = pickle.loads(blob)  # our own tasks' results
        if tally is None:
            tally = theirs
        else:
            tally.merge(theirs)
        if their_found is not None:
            found.steps.update(their_found.steps)
            found.kinds.update(their_found.kinds)
    return {"result": [pickle.dumps((tally, found))]}


def backtest_dataset(job: DatasetJob, logs: Sequence[Path], formats: Sequence[DatasetFormat],
                     workers: int) -> tuple[Tally, Scan]:
    """Every call and output in ``logs`` decided on Ray; the merged tally and what the
    labelled runs hold (for :func:`check_labels`).

    Raises:
        ReinstateError: a bad log, record or control file found by a task, as it was raised.
        EngineUnavailable: Ray failed.
    """
    ray = connect()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the backtest's output is the result alone
    # Ray Data logs a task's error with its traceback; the user gets it as one line here.
    quiet = logging.getLogger("ray.data")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        datasets = [ray.data.read_datasource(NativeRecords(log_location(log), number,
                                                           job.sources[number], kind))
                    for number, (log, kind) in enumerate(zip(logs, formats, strict=True))]
        dataset = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
        decided = dataset.groupby("run_id").map_groups(
            decide_run, fn_args=(job,), concurrency=workers, batch_format="pyarrow")
        merged = decided.map_batches(merge_results, batch_size=MERGE_BATCH,
                                     batch_format="pyarrow")
        blobs = [row["result"] for row in merged.iter_rows()]
    except Exception as exc:
        cause = _reinstate_error(exc)
        if cause is not None:
            raise cause from None
        raise EngineUnavailable(f"--engine ray: reading the logs as a Ray Dataset failed: "
                                f"{_first_line(exc)}") from None
    finally:
        quiet.setLevel(level)
    tally = Tally.for_labels(job.labels)
    found = Scan()
    for blob in blobs:
        theirs, their_found = pickle.loads(blob)  # our own tasks' results
        if theirs is not None:
            tally.merge(theirs)
        found.steps.update(their_found.steps)
        found.kinds.update(their_found.kinds)
    return tally, found


def _reinstate_error(exc: BaseException) -> ReinstateError | None:
    """The project's own error a Ray task raised, however Ray wrapped it, if it was one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ReinstateError) and type(current).__module__.split(".")[0] in (
                "evalsuite", "regressions", "gates"):
            return current
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _shown(workspace: Workspace) -> Any:
    """How a log is named in ``file:line``: a URI as given, a local file as the local
    engine names it."""
    def show(path: Path) -> str:
        folded = _FOLDED_URI.match(str(path))
        return f"{folded[1]}://{folded[2]}" if folded else workspace.relative(path)
    return show


def sources(logs: Sequence[Path]) -> tuple[str, ...]:
    """Each log as the parts name their source: the path the user gave, a URI unfolded."""
    return tuple(log_location(p) if _FOLDED_URI.match(str(p)) or _URI.match(str(p))
                 else str(p) for p in logs)
