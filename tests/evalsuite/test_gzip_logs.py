"""Run logs compressed with gzip (rotated logs) are read as the text they hold.

Every bundled format is read from a gzip file, named ``.gz`` or not, into exactly the runs
its uncompressed file gives, on the paths that stream (JSON Lines, OTLP export lines) and
on those that read one JSON document whole (tau-bench, R-Judge). A gzip file cut off or
corrupt is an error naming the file, never a read that stops early and passes.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite import InvalidInput, detect_format, merge_parts, read_logs
from gates import FileSummary, ingest

DATA = Path(__file__).parent.parent / "data" / "logs"
NATIVE = Path(__file__).parents[2] / "gates" / "_example" / "workspace" / "logs" / (
    "2026-11-25-refund-agent.jsonl")
LOGS = {
    "jsonl": NATIVE,
    "otel": DATA / "refund-agent.otlp.jsonl",
    "openai": DATA / "refund-agent.openai.jsonl",
    "anthropic": DATA / "refund-agent.anthropic.jsonl",
    "openai-document": DATA / "tau-bench-airline.excerpt.json",
    "text-actions": DATA / "rjudge.excerpt.json",
}


def _runs(path: Path) -> list[dict[str, object]]:
    """The file's runs as JSON, places left out (they name the file)."""
    return [run.model_dump(mode="json", exclude={"steps": {"__all__": {"place"}}})
            for run in merge_parts(read_logs([path]))]


def _gzipped(source: Path, to: Path) -> Path:
    to.write_bytes(gzip.compress(source.read_bytes()))
    return to


@pytest.mark.parametrize("name", list(LOGS))
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_a_gzip_log_reads_as_its_text(name: str, suffix: str, tmp_path: Path) -> None:
    """Detected as the format it holds and read into the same runs, named .gz or not."""
    source = LOGS[name]
    packed = _gzipped(source, tmp_path / (source.name + suffix))
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert detect_format(packed) == detect_format(source)
    expected = _runs(source)
    assert expected and _runs(packed) == expected


def test_ingest_counts_a_gzip_log_as_its_text(tmp_path: Path) -> None:
    """The ingest summary of a compressed log is that of the log (names aside)."""
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(NATIVE.read_bytes())
    packed = _gzipped(NATIVE, tmp_path / "packed.jsonl.gz")
    one, other = ingest([plain]).files[0], ingest([packed]).files[0]

    def counted(summary: FileSummary) -> tuple[object, ...]:
        return (summary.format, summary.runs, summary.steps, summary.tool_calls,
                summary.kinds, summary.empty, summary.answered, summary.unread.total)

    assert one.runs > 0 and counted(one) == counted(other)


@pytest.mark.parametrize("name", ["jsonl", "otel", "openai-document"])
def test_a_gzip_log_cut_off_is_an_error_naming_it(name: str, tmp_path: Path) -> None:
    """Cut mid-stream, the file is refused (the runs before the cut are not a pass)."""
    whole = gzip.compress(LOGS[name].read_bytes() * 20)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[:len(whole) * 2 // 3])
    with pytest.raises(InvalidInput) as caught:
        merge_parts(read_logs([cut]))
    assert caught.value.path == cut and "not a whole gzip file" in caught.value.expected


def test_the_cli_refuses_a_corrupt_gzip_log_with_exit_2(tmp_path: Path) -> None:
    """`reinstate ingest` on a damaged gzip file: exit 2, one line naming the file."""
    bad = tmp_path / "logs.jsonl.gz"
    whole = bytearray(gzip.compress(NATIVE.read_bytes()))
    whole[len(whole) // 2] ^= 0xFF  # a flipped byte in the compressed stream
    bad.write_bytes(bytes(whole))
    done = subprocess.run([sys.executable, "-m", "gates", "ingest", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "logs.jsonl.gz" in done.stderr and "gzip" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("offset", [-20, -7, -3, -1, 0, 3])
def test_a_needle_across_two_read_blocks_is_found(tmp_path: Path, offset: int,
                                                  packed: bool) -> None:
    """The search that decides whether a file holds log records reads 1 MiB blocks: a
    name split over two blocks (or in a gzip log) is found, and one absent is not."""
    from evalsuite._otel_spans import mentions

    needles = (b'"observed_timestamp"', b'"body"')
    for needle, present in ((b'"body"', True), (b'"bodies"', False)):
        data = b" " * ((1 << 20) + offset) + needle + b" " * 64
        path = tmp_path / "spans.json"
        path.write_bytes(gzip.compress(data) if packed else data)
        assert mentions(path, needles) is present
