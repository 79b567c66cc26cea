"""Ingest's memory stays nearly flat in the number of runs a log holds, and its run count
stays exact however the runs interleave."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import pytest

from gates import ingest


def _native_log(path: Path, runs: int, *, again: int = 0) -> Path:
    """A native log of ``runs`` one-step runs, then a second step for the first ``again``."""
    with path.open("w", encoding="utf-8") as out:
        for n in list(range(runs)) + list(range(again)):
            run = f"run-{n:08d}"
            out.write(json.dumps({"run_id": run, "kind": "user_input",
                                  "content": f"refund order A-{n}"}) + "\n")
    return path


def _held_after_ingest(path: Path) -> int:
    """Bytes still allocated, with ingest's result held, after reading ``path``."""
    gc.collect()
    tracemalloc.start()
    try:
        done = ingest([path])
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.files[0].runs > 0
    return held


@pytest.mark.slow
def test_ingest_holds_few_bytes_for_each_run(tmp_path: Path) -> None:
    """Counting 40,000 more runs keeps under 40 bytes a run (a set of their ids kept ~90)."""
    _held_after_ingest(_native_log(tmp_path / "warm.jsonl", 100))  # caches filled first
    small = _held_after_ingest(_native_log(tmp_path / "small.jsonl", 40_000))
    large = _held_after_ingest(_native_log(tmp_path / "large.jsonl", 80_000))
    assert (large - small) / 40_000 < 40


@pytest.mark.slow
def test_ingest_counts_runs_seen_again_long_after(tmp_path: Path) -> None:
    """Runs continued after 50,000 others are counted once, with all their steps."""
    done = ingest([_native_log(tmp_path / "log.jsonl", 50_000, again=20_000)])
    summary = done.files[0]
    assert (summary.runs, summary.steps) == (50_000, 70_000)
