"""One atomic-output writer: every file evalsuite writes whole or not at all, and durably."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evalsuite import RunPart, atomic_output, read_log, write_parquet_parts, write_parts
from gates import Workspace
from tests.helpers import LOG, fsynced

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


class Boom(Exception):
    """A failure in the middle of a write."""


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_parquet_writer_on_the_handle_writes_a_file_pyarrow_reads_back(
        tmp_path: Path) -> None:
    """pyarrow's ParquetWriter writing to the handle gives a file read_table reads back."""
    path = tmp_path / "out" / "table.parquet"
    schema = pa.schema([("run_id", pa.string()), ("kind", pa.string())])
    with atomic_output(path) as handle, pq.ParquetWriter(handle, schema) as writer:
        writer.write_table(pa.table({"run_id": ["r1", "r2"], "kind": ["run", "output"]},
                                    schema=schema))
    assert pq.read_table(path).to_pylist() == [{"run_id": "r1", "kind": "run"},
                                               {"run_id": "r2", "kind": "output"}]
    assert _only(path.parent) == ["table.parquet"]


def test_a_failure_inside_the_block_leaves_the_target_byte_identical(tmp_path: Path) -> None:
    """An error raised mid-write leaves the previous file byte for byte and no temporary."""
    path = tmp_path / "runs.bin"
    path.write_bytes(b"the previous content\x00\xff")
    with pytest.raises(Boom), atomic_output(path) as handle:
        handle.write(b"half of the new content")
        handle.flush()
        raise Boom
    assert path.read_bytes() == b"the previous content\x00\xff"
    assert _only(tmp_path) == ["runs.bin"]


def test_a_failure_before_any_file_existed_leaves_nothing(tmp_path: Path) -> None:
    """An error raised mid-write of a new file leaves no file at all."""
    with pytest.raises(Boom), atomic_output(tmp_path / "new.bin") as handle:
        handle.write(b"partial")
        raise Boom
    assert _only(tmp_path) == []


def test_the_file_and_then_its_folder_arefsynced(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The data is fsynced before the rename and the folder after it, so both survive."""
    path = tmp_path / "verdict.json"
    reached = fsynced(monkeypatch)
    with atomic_output(path) as handle:
        handle.write(b"{}\n")
    assert len(reached) == 2
    assert reached[0].parent == tmp_path and reached[0].name.startswith(".verdict.json.")
    assert reached[1] == tmp_path
    assert path.read_bytes() == b"{}\n"


def test_a_writer_that_closes_its_handle_still_gets_a_durable_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer may close the handle it is given; the data is still fsynced and renamed."""
    path = tmp_path / "closed.bin"
    reached = fsynced(monkeypatch)
    with atomic_output(path) as handle:
        handle.write(b"written, then closed")
        handle.close()
    assert path.read_bytes() == b"written, then closed"
    assert reached[0].parent == tmp_path and reached[1] == tmp_path


def test_a_private_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """``private`` keeps the written file 0600."""
    path = tmp_path / "signing.key"
    with atomic_output(path, private=True) as handle:
        handle.write(b"secret\n")
    assert path.stat().st_mode & 0o777 == 0o600


def test_parquet_parts_fsync_the_folder_after_the_rename(
        example: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_parquet_parts fsyncs the Parquet file and then the folder it was renamed in."""
    path = tmp_path / "logs" / "runs.parquet"
    parts = list(read_log(example.root / LOG))
    reached = fsynced(monkeypatch)
    rows = write_parquet_parts(parts, path)
    assert rows == pq.read_table(path).num_rows > 0
    assert reached[-1] == path.parent
    assert reached[-2].parent == path.parent and reached[-2].name.startswith(".runs.parquet.")


def test_parquet_parts_that_fail_midway_leave_the_previous_file(
        example: Workspace, tmp_path: Path) -> None:
    """A log that fails while Parquet is written leaves the previous file and no temporary."""
    path = tmp_path / "out" / "runs.parquet"
    write_parquet_parts(read_log(example.root / LOG), path)
    before = path.read_bytes()

    def failing() -> Iterator[RunPart]:
        yield from list(read_log(example.root / LOG))[:3]
        raise Boom

    with pytest.raises(Boom):
        write_parquet_parts(failing(), path)
    assert path.read_bytes() == before
    assert _only(path.parent) == ["runs.parquet"]


def test_streamed_native_lines_fsync_the_folder_and_fail_without_leftovers(
        example: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_parts streams native lines durably, and a failing stream leaves the old file."""
    path = tmp_path / "out" / "runs.jsonl"
    parts = list(read_log(example.root / LOG))
    reached = fsynced(monkeypatch)
    lines = write_parts(parts, path)
    before = path.read_bytes()
    assert before.count(b"\n") == lines > 0
    assert reached[-1] == path.parent

    def failing() -> Iterator[RunPart]:
        yield from parts[:3]
        raise Boom

    with pytest.raises(Boom):
        write_parts(failing(), path)
    assert path.read_bytes() == before
    assert _only(path.parent) == ["runs.jsonl"]
