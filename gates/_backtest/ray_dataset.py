"""Backtests over a Ray Dataset: ``--engine ray`` on native JSONL and Parquet logs.

The logs are read as a Ray Dataset, a read task a log, in chunks of records; each chunk's
records are grouped by run into rows, so no task reads a whole log's worth of rows at once
and a run's records travel together. Most runs lie in one chunk: those are decided in
``map_batches`` right where the chunk was read, with no shuffle (a run's records put back
in log order and decided by :func:`decide_parts`, the local engine's loop, which asks the
one replay function, with the history the run had). The rows of runs that cross chunks
are put together by run (on the driver when they are few, else ``groupby("run_id")
.map_groups``) and decided the same way. Tallies are merged in ``map_batches`` and the
few left on the driver (:meth:`Tally.merge`). Steps are numbered by (file, line), the
order the local engine reads them in, so examples and labels come out in its order and
the result is its result.

Paths may be local files or object storage URIs (``s3://bucket/key``), passed to Ray and
pyarrow as they are; the workers must reach them, and the workspace for the controls. A log
in another format (OTLP, SDK dumps: not one record a line) is not a dataset: the backtest
then keeps :mod:`gates._backtest.run`'s shard tasks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import pickle
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    log_storage,
    native_record_parts,
    require_regular,
)
from gates._backtest.controls import judges, resolve_controls
from gates._backtest.decide import decide_parts
from gates._backtest.labels import BacktestLabel, Scan, scan
from gates._backtest.tally import Tally
from gates._config import Workspace
from gates._controls.judge import Judge
from gates._gate.ray_engine import EngineUnavailable, connect

DatasetFormat = Literal["jsonl", "parquet"]
# Records a read task groups by run into one block: a few MB. Bigger chunks leave fewer
# runs crossing them (about one a boundary in a log written run after run); smaller ones
# spread a single log's deciding over more workers sooner.
BLOCK_ROWS = 5_000
# Records of crossing runs decided on the driver (seconds of deciding) rather than after
# a shuffle, whose start-up costs seconds too.
ON_DRIVER = 20_000
# Crossing runs are grouped in buckets by a hash of their id: at least this many a worker
# (so the work spreads), and about this many records a bucket (so a group stays small).
GROUPS_PER_WORKER = 4
GROUP_RECORDS = 20_000
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
        InvalidInput: a local log that does not exist or is no regular file, or a Parquet
            log given with logs that are not a dataset (only the dataset reads Parquet).
    """
    found: list[DatasetFormat | None] = []
    for path in logs:
        location = log_location(path)
        name = location.lower()
        uri = _URI.match(location) is not None
        if not uri:
            # A local log the user named, Parquet too, is there before Ray is asked to
            # read it: a missing one is bad input (exit 2), never a failed engine (exit 3).
            require_regular(path)
        if name.endswith(".parquet"):
            found.append("parquet")
        elif uri:
            found.append("jsonl" if fmt in ("auto", "jsonl")
                         and name.endswith((".jsonl", ".ndjson")) else None)
        else:
            # Ray decompresses by the name's suffix: a gzip log not named .gz, and a zstd
            # log, are read here by reinstate's own reader, in shard tasks.
            found.append("jsonl" if (detect_format(path) if fmt == "auto" else fmt) == "jsonl"
                         and log_storage(path) == ("gzip" if name.endswith(".gz")
                                                       else None) else None)
    if all(kind is not None for kind in found):
        return [kind for kind in found if kind is not None]
    parquet = next((p for p, kind in zip(logs, found, strict=True) if kind == "parquet"), None)
    if parquet is not None:
        raise InvalidInput(parquet, "", "a Parquet log is read as a Ray Dataset, with native "
                                        "JSONL logs only: convert the others with "
                                        "reinstate ingest --out FILE.parquet")
    return None


class NativeRecords(FileBasedDatasource):
    """One log's records as rows, one row a run's records within a chunk of the log.

    A read task reads a whole log, ``block_rows`` records at a time. Each chunk's records
    are grouped by run into rows: ``file``, ``place`` (the run's first line or row in the
    chunk), ``run_id``, ``places`` and ``records`` (its lines or rows there, in order) and
    ``whole``: whether the run has no record in the chunks just before and after, nor in
    any earlier chunk of the log. A whole run is decided where its chunk is (no shuffle);
    the others are put together by run first. A run whole in one chunk that turns out to
    have records further on (or in another log) is caught on the driver, by its id
    decided twice, and the backtest is then redone by run (:func:`backtest_dataset`).
    """

    def __init__(self, location: str, number: int, shown: str, kind: DatasetFormat, *,
                 block_rows: int = BLOCK_ROWS, by_chunk: bool = True) -> None:
        super().__init__(location)
        if len(self._paths()) != 1:
            raise InvalidInput(Path(shown), "", f"expected one log file, found "
                                                f"{len(self._paths())} under it")
        self._number = number
        self._source = Path(shown)
        self._kind = kind
        self._block_rows = block_rows
        self._by_chunk = by_chunk

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> Any:
        if self._kind == "parquet":  # Parquet's footer needs random access, not a stream
            return filesystem.open_input_file(path)
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f: Any, path: str) -> Iterator[Any]:
        rows = self._parquet_rows(f) if self._kind == "parquet" else self._jsonl_rows(f)
        earlier: set[str] = set()  # runs of the chunks already given
        pending: dict[str, tuple[list[int], list[str]]] | None = None
        while True:
            chunk = list(itertools.islice(rows, self._block_rows))
            runs: dict[str, tuple[list[int], list[str]]] = {}
            for place, run_id, record in chunk:
                places, records = runs.setdefault(run_id, ([], []))
                places.append(place)
                records.append(record)
            if pending is not None:  # a chunk is given once the next one is known
                yield self._table(pending, earlier, runs)
                earlier.update(pending)
            if not chunk:
                return
            pending = runs

    def _table(self, runs: dict[str, tuple[list[int], list[str]]], earlier: set[str],
               later: dict[str, tuple[list[int], list[str]]]) -> Any:
        import pyarrow as pa

        ids = list(runs)
        return pa.table({
            "file": pa.array([self._number] * len(ids), pa.int64()),
            "place": pa.array([runs[r][0][0] for r in ids], pa.int64()),
            "run_id": pa.array(ids, pa.string()),
            "whole": pa.array([self._by_chunk and r not in earlier and r not in later
                               for r in ids], pa.bool_()),
            "places": pa.array([runs[r][0] for r in ids], pa.list_(pa.int64())),
            "records": pa.array([runs[r][1] for r in ids], pa.list_(pa.string()))})

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


# A run's records in log order: (file number, line or row, record text).
RunRecords = list[tuple[int, int, str]]


@dataclass
class Outcome:
    """What deciding some runs gave: picklable, merged on the way to the driver."""

    tally: Tally
    found: Scan | None
    """Step counts of the labelled runs among them and their labelled steps (for
    :func:`check_labels`)."""
    ids: bytes
    """A 64-bit hash of each run's id, once per place it was decided in."""
    chunked: int = 0
    """Runs decided in the chunk they were read in."""
    crossing: int = 0
    """Records of runs that crossed chunks, left to be put together by run."""

    def merge(self, other: Outcome) -> None:
        """Add another batch's runs (none of them decided here too, which
        :func:`backtest_dataset` checks)."""
        self.tally.merge(other.tally)
        if other.found is not None:
            if self.found is None:
                self.found = Scan()
            self.found.steps.update(other.found.steps)
            self.found.labelled.update(other.found.labelled)
        self.ids += other.ids
        self.chunked += other.chunked
        self.crossing += other.crossing


def decide_runs(runs: Iterable[tuple[str, RunRecords]], job: DatasetJob) -> Outcome:
    """Whole runs decided together, each record decoded once, steps fed in log order."""
    deciders = _deciders(job)
    numbered: list[tuple[int, RunPart]] = []
    ids: list[bytes] = []
    for run_id, records in runs:
        ids.append(hashlib.blake2b(run_id.encode(), digest_size=8).digest())
        numbered += _run_parts(run_id, records, job)
    numbered.sort(key=lambda pair: pair[0])  # one tally keeps the first examples it sees
    tally = Tally.for_labels(job.labels)
    decide_parts([part for _, part in numbered], deciders.judge, deciders.against, tally,
                 show=deciders.show, numbers=[number for number, _ in numbered])
    wanted = [part for _, part in numbered if part.run_id in deciders.wanted]
    return Outcome(tally, scan(wanted, job.labels) if wanted else None, b"".join(ids))


def _run_parts(run_id: str, records: RunRecords,
               job: DatasetJob) -> Iterator[tuple[int, RunPart]]:
    """One run's records as numbered parts, as ``read_logs(agent=…)`` gives them."""
    other_agent = False
    for file, placed in itertools.groupby(records, key=lambda record: record[0]):
        source = Path(job.sources[file])
        for part in native_record_parts(((place, text) for _, place, text in placed), source):
            place = int(part.place)  # the line or row given above
            if part.run_id != run_id:
                raise InvalidInput(source, "$.run_id", f"expected {run_id!r}, the row's "
                                                       f"run_id column", line=place)
            # Runs of another agent are left out, as read_logs(agent=…) leaves them out:
            # a part naming no agent follows the last part that named one, so a run handed
            # over to the agent is its own from there.
            header = part.header
            if header is not None and header.agent is not None:
                other_agent = header.agent != job.agent
            if other_agent:
                continue
            if header is not None and header.agent is None:
                part.header = header.model_copy(update={"agent": job.agent})
            yield file * FILE_STRIDE + place, part


def _row_records(file: int, places: list[int], records: list[str]) -> RunRecords:
    return [(file, place, record) for place, record in zip(places, records, strict=True)]


def decide_chunk(batch: Any, job: DatasetJob) -> Any:
    """A batch of rows (``map_batches``): its whole runs decided, as one row whose
    ``result`` is the pickled :class:`Outcome`, and its crossing rows passed on as
    they are (their ``result`` null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    whole = batch.column("whole")
    decided_rows = batch.filter(whole)
    crossing = batch.filter(pc.invert(whole))
    runs = ((run_id, _row_records(file, places, records)) for file, run_id, places, records
            in zip(*(decided_rows.column(n).to_pylist()
                     for n in ("file", "run_id", "places", "records")), strict=True))
    result = decide_runs(runs, job)
    result.chunked = decided_rows.num_rows
    result.crossing = pc.sum(pc.list_value_length(crossing.column("places"))).as_py() or 0
    row = pa.table({field.name: pa.nulls(1, field.type) for field in batch.schema})
    return pa.concat_tables([
        crossing.append_column("result", pa.nulls(crossing.num_rows, pa.binary())),
        row.append_column("result", pa.array([pickle.dumps(result)], pa.binary()))])


def decide_group(group: Any, job: DatasetJob) -> dict[str, list[bytes]]:
    """A group of crossing runs (``map_groups`` by bucket: every row of a run falls in
    the same one), each run's rows put together and the runs decided together."""
    return {"result": [pickle.dumps(decide_runs(_runs_of([group]).items(), job))]}


def _runs_of(tables: Iterable[Any]) -> dict[str, RunRecords]:
    """Rows of runs crossing chunks put together by run, each run's records in log order."""
    rows: list[tuple[int, int, str, list[int], list[str]]] = []
    for table in tables:
        rows += zip(*(table.column(n).to_pylist()
                      for n in ("file", "place", "run_id", "places", "records")), strict=True)
    by_run: dict[str, RunRecords] = {}
    for file, _, run_id, places, texts in sorted(rows, key=lambda row: row[:2]):
        by_run.setdefault(run_id, []).extend(_row_records(file, places, texts))
    return by_run


def _decided_rows(batch: Any) -> Any:
    return batch.filter(batch.column("result").is_valid()).select(["result"])


def _crossing_rows(batch: Any, buckets: int) -> Any:
    """The rows of runs crossing chunks, each with its run's bucket (a stable hash)."""
    import pyarrow as pa

    rows = batch.filter(batch.column("result").is_null()).drop_columns(["result"])
    return rows.append_column("bucket", pa.array(
        [zlib.crc32(run_id.encode()) % buckets for run_id in rows.column("run_id").to_pylist()],
        pa.int64()))


def merge_results(batch: Any) -> dict[str, list[bytes]]:
    """Many pickled :class:`Outcome` as one (``map_batches``)."""
    merged: Outcome | None = None
    for blob in batch.column("result").to_pylist():
        theirs = pickle.loads(blob)  # our own tasks' results
        if merged is None:
            merged = theirs
        else:
            merged.merge(theirs)
    return {"result": [] if merged is None else [pickle.dumps(merged)]}


def backtest_dataset(job: DatasetJob, logs: Sequence[Path], formats: Sequence[DatasetFormat],
                     workers: int) -> tuple[Tally, Scan, str]:
    """Every call and output in ``logs`` decided on Ray; the merged tally, what the
    labelled runs hold (for :func:`check_labels`) and how the runs were decided.

    Runs whose records sit in one chunk of a log are decided in that chunk's batch;
    the rows of runs crossing chunks are put together by run, on the driver when they
    are few (a shuffle costs seconds of start-up), else in ``map_groups``. When a run
    was decided in two places after all (its records far apart, or in two logs), the
    backtest is redone with every run put together by run: the result is exact either way.

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
    # Crossing runs are grouped with the task-based sort shuffle: the default hash shuffle
    # starts aggregator actors for each backtest, seconds that outweighed the deciding
    # (bench: a fully interleaved 18,200-line log at 0.35x of local, 0.8x with this).
    strategy = context.shuffle_strategy
    context.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        result, how = _decide_all(ray, job, logs, formats, workers, by_chunk=True)
        if not _once_each(result.ids):
            result, how = _decide_all(ray, job, logs, formats, workers, by_chunk=False)
            how = (f"a run's records were too far apart (or in two logs) to decide it in "
                   f"one chunk, so every run was put together first: {how}")
    except Exception as exc:
        cause = _reinstate_error(exc)
        if cause is not None:
            raise cause from None
        raise EngineUnavailable(f"--engine ray: reading the logs as a Ray Dataset failed: "
                                f"{_first_line(exc)}") from None
    finally:
        quiet.setLevel(level)
        context.shuffle_strategy = strategy
    return result.tally, result.found or Scan(), how


def _decide_all(ray: Any, job: DatasetJob, logs: Sequence[Path],
                formats: Sequence[DatasetFormat], workers: int,
                *, by_chunk: bool) -> tuple[Outcome, str]:
    datasets = [ray.data.read_datasource(NativeRecords(
        log_location(log), number, job.sources[number], kind, block_rows=BLOCK_ROWS,
        by_chunk=by_chunk))
        for number, (log, kind) in enumerate(zip(logs, formats, strict=True))]
    dataset = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    decided = dataset.map_batches(decide_chunk, fn_args=(job,), concurrency=workers,
                                  batch_size=None, batch_format="pyarrow").materialize()
    result = _merged(decided.map_batches(_decided_rows, batch_format="pyarrow"), job)
    chunked, crossing = result.chunked, result.crossing
    how = (f"{chunked:,} runs decided in the chunk of {BLOCK_ROWS:,} records they were "
           f"read in, {workers} at a time")
    if crossing == 0:
        return result, how
    # Runs go to buckets by a hash of their id, so a group holds whole runs, and many of
    # them: map_groups then costs a call per bucket, not a call (and a tally) per run.
    buckets = max(GROUPS_PER_WORKER * workers, -(-crossing // GROUP_RECORDS))
    rows = decided.map_batches(_crossing_rows, fn_args=(buckets,), batch_format="pyarrow")
    if crossing <= ON_DRIVER:
        by_run = _runs_of(rows.iter_batches(batch_format="pyarrow", batch_size=None))
        result.merge(decide_runs(by_run.items(), job))
        return result, f"{how}; {len(by_run):,} runs crossing chunks put together on the driver"
    grouped = rows.groupby("bucket", num_partitions=workers).map_groups(
        decide_group, fn_args=(job,), concurrency=workers, batch_format="pyarrow")
    result.merge(_merged(grouped, job))
    return result, (f"{how}; {crossing:,} records of runs crossing chunks put together in "
                    f"{buckets:,} groups of runs (map_groups)")


def _merged(results: Any, job: DatasetJob) -> Outcome:
    """The pickled results of a dataset merged on their way to the driver."""
    merged = Outcome(Tally.for_labels(job.labels), None, b"")
    blobs = results.map_batches(merge_results, batch_size=MERGE_BATCH, batch_format="pyarrow")
    for row in blobs.iter_rows():
        if row["result"] is not None:
            merged.merge(pickle.loads(row["result"]))  # our own tasks' results
    return merged


def _once_each(ids: bytes) -> bool:
    """Whether no run was decided in two places (two chunks, or a chunk and a group)."""
    import numpy as np

    hashes = np.frombuffer(ids, dtype=np.uint64)
    return len(np.unique(hashes)) == len(hashes)


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
