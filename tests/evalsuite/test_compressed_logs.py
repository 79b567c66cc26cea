"""Run logs compressed with gzip or zstd (rotated logs, the Collector's file exporter with
``compression: zstd``) are read as the text they hold.

Every bundled format is read from a compressed file, named ``.gz``/``.zst`` or not, into
exactly the runs its uncompressed file gives, on the paths that stream (JSON Lines, OTLP
export lines) and on those that read one JSON document whole (tau-bench, R-Judge). A
compressed file cut off or corrupt is an error naming the file, never a read that stops
early and passes.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from backports.zstd import CompressionParameter
from backports.zstd import compress as zstd_compress

from evalsuite import InvalidInput, detect_format, log_storage, merge_parts, read_logs
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


CODECS = ["gzip", "zstd"]
SUFFIX = {"gzip": ".gz", "zstd": ".zst"}


def _compressed(data: bytes, codec: str) -> bytes:
    """``data`` as ``gzip`` or the zstd CLI and the Collector write it: with each frame's
    checksum. A line a frame (as the Collector's exporter writes with rotation on) when
    there are several lines: frames one after another are one stream."""
    if codec == "gzip":
        return gzip.compress(data)
    checked = {CompressionParameter.checksum_flag: 1}
    lines = data.splitlines(keepends=True)
    return b"".join(zstd_compress(line, options=checked) for line in lines or [data])


def _packed(source: Path, to: Path, codec: str) -> Path:
    to.write_bytes(_compressed(source.read_bytes(), codec))
    return to


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", list(LOGS))
@pytest.mark.parametrize("named", [True, False])
def test_a_compressed_log_reads_as_its_text(codec: str, name: str, named: bool,
                                            tmp_path: Path) -> None:
    """Detected as the format it holds and read into the same runs, named .gz/.zst or not."""
    source = LOGS[name]
    packed = _packed(source, tmp_path / (source.name + (SUFFIX[codec] if named else "")), codec)
    assert log_storage(packed) == codec and log_storage(source) is None
    assert detect_format(packed) == detect_format(source)
    expected = _runs(source)
    assert expected and _runs(packed) == expected


@pytest.mark.parametrize("codec", CODECS)
def test_ingest_counts_a_compressed_log_as_its_text(codec: str, tmp_path: Path) -> None:
    """The ingest summary of a compressed log is that of the log (names aside)."""
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(NATIVE.read_bytes())
    packed = _packed(NATIVE, tmp_path / ("packed.jsonl" + SUFFIX[codec]), codec)
    one, other = ingest([plain]).files[0], ingest([packed]).files[0]

    def counted(summary: FileSummary) -> tuple[object, ...]:
        return (summary.format, summary.runs, summary.steps, summary.tool_calls,
                summary.kinds, summary.empty, summary.answered, summary.unread.total)

    assert one.runs > 0 and counted(one) == counted(other)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", ["jsonl", "otel", "openai-document"])
@pytest.mark.parametrize("keep", [2 / 3, 4])
def test_a_compressed_log_cut_off_is_an_error_naming_it(codec: str, name: str, keep: float,
                                                        tmp_path: Path) -> None:
    """Cut mid-stream (or just after the magic bytes), the file is refused: the runs before
    the cut are not a pass. A zstd stream cut between frames is whole, so the cut is made
    in a frame's middle."""
    whole = _compressed(LOGS[name].read_bytes() * 20, codec)
    at = int(len(whole) * keep) if keep < 1 else int(keep)
    if codec == "zstd" and keep < 1:  # the middle of the frame the cut falls in
        frame = whole.rfind(b"\x28\xb5\x2f\xfd", 0, at)
        at = frame + (whole.find(b"\x28\xb5\x2f\xfd", frame + 4) - frame) // 2
    cut = tmp_path / ("cut.jsonl" + SUFFIX[codec])
    cut.write_bytes(whole[:at])
    with pytest.raises(InvalidInput) as caught:
        merge_parts(read_logs([cut]))
    assert caught.value.path == cut and f"not a whole {codec} file" in caught.value.expected


@pytest.mark.parametrize("codec", CODECS)
def test_the_cli_refuses_a_corrupt_compressed_log_with_exit_2(codec: str,
                                                              tmp_path: Path) -> None:
    """`reinstate ingest` on a damaged compressed file: exit 2, one line naming the file."""
    bad = tmp_path / ("logs.jsonl" + SUFFIX[codec])
    whole = bytearray(_compressed(NATIVE.read_bytes(), codec))
    whole[len(whole) // 2] ^= 0xFF  # a flipped byte in the compressed stream
    bad.write_bytes(bytes(whole))
    done = subprocess.run([sys.executable, "-m", "gates", "ingest", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert bad.name in done.stderr and codec in done.stderr
    assert "Traceback" not in done.stderr


def test_a_zstd_log_with_garbage_after_its_frames_is_refused(tmp_path: Path) -> None:
    """Bytes after the last frame that are no frame are damage, not an end of the log."""
    bad = tmp_path / "logs.jsonl.zst"
    bad.write_bytes(_compressed(NATIVE.read_bytes(), "zstd") + b"{\"run_id\": 1}\n")
    with pytest.raises(InvalidInput) as caught:
        merge_parts(read_logs([bad]))
    assert caught.value.path == bad and "not a whole zstd file" in caught.value.expected


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("offset", [-20, -7, -3, -1, 0, 3])
def test_a_needle_across_two_read_blocks_is_found(tmp_path: Path, offset: int,
                                                  packed: bool) -> None:
    """The search that decides whether a file holds log records reads 1 MiB blocks: a
    name split over two blocks (or in a compressed log) is found, and one absent is not."""
    from evalsuite._otel_spans import mentions

    needles = (b'"observed_timestamp"', b'"body"')
    for needle, present in ((b'"body"', True), (b'"bodies"', False)):
        data = b" " * ((1 << 20) + offset) + needle + b" " * 64
        path = tmp_path / "spans.json"
        path.write_bytes(gzip.compress(data) if packed else data)
        assert mentions(path, needles) is present


def _framed(messages: list[bytes], *, zstd: bool) -> bytes:
    """Messages as the Collector's file exporter writes them with ``format: proto``, or
    ``compression: zstd`` without its native-compression gate: each a 4-byte big-endian
    length, then the message (a zstd frame of it when compressed)."""
    framed = b""
    for message in messages:
        body = zstd_compress(message, options={CompressionParameter.checksum_flag: 1}) \
            if zstd else message
        framed += len(body).to_bytes(4, "big") + body
    return framed


@pytest.mark.parametrize("zstd", [True, False])
def test_the_collectors_length_prefixed_messages_read_as_its_json_lines(
        zstd: bool, tmp_path: Path) -> None:
    """Each export message is one line of the OTLP/JSON log: the same runs as the log."""
    source = LOGS["otel"]
    framed = tmp_path / "traces.json"
    framed.write_bytes(_framed(source.read_bytes().splitlines(), zstd=zstd))
    assert log_storage(framed) == "length-prefixed"
    assert detect_format(framed) == "otel"
    expected = _runs(source)
    assert expected and _runs(framed) == expected


def test_a_protobuf_message_is_refused_naming_it(tmp_path: Path) -> None:
    """``format: proto`` writes protobuf, which reinstate does not read: the file is refused
    at the message, never read as nothing."""
    from google.protobuf.json_format import Parse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    lines = LOGS["otel"].read_bytes().splitlines()
    proto = Parse(lines[0], ExportTraceServiceRequest()).SerializeToString()
    for zstd in (False, True):
        framed = tmp_path / f"traces-{zstd}.json"
        framed.write_bytes(_framed([lines[0], proto], zstd=zstd))
        with pytest.raises(InvalidInput) as caught:
            merge_parts(read_logs([framed]))
        assert caught.value.path == framed and caught.value.line == 2
        assert "format: proto" in caught.value.expected


def test_a_length_prefixed_file_cut_off_or_bad_is_refused(tmp_path: Path) -> None:
    """A message shorter than its length says (a file cut off mid-write) is damage; so is
    a message of broken JSON, named by its number as a line."""
    lines = LOGS["otel"].read_bytes().splitlines()
    whole = _framed(lines[:2], zstd=False)
    cut = tmp_path / "cut.json"
    cut.write_bytes(whole[:-10])
    with pytest.raises(InvalidInput) as caught:
        merge_parts(read_logs([cut]))
    assert caught.value.path == cut and "not a whole length-prefixed file" in \
        caught.value.expected
    broken = tmp_path / "broken.json"
    broken.write_bytes(_framed([lines[0], lines[1][:-40]], zstd=False))
    with pytest.raises(InvalidInput) as caught:
        merge_parts(read_logs([broken]))
    assert caught.value.path == broken and caught.value.line == 2


def test_without_a_zstd_reader_a_zstd_log_is_an_error_saying_what_to_install(
        tmp_path: Path) -> None:
    """Before Python 3.14 and without the backport, a zstd log is refused naming the file
    and the package (exit 2), never read as nothing."""
    packed = _packed(NATIVE, tmp_path / "logs.jsonl.zst", "zstd")
    hide = ("import sys; sys.modules['backports.zstd'] = None; "
            "sys.modules['compression.zstd'] = None; "
            "from gates.cli import main; sys.argv = ['reinstate', 'ingest', sys.argv[1]]; "
            "main()")
    done = subprocess.run([sys.executable, "-c", hide, str(packed)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "logs.jsonl.zst" in done.stderr and "backports.zstd" in done.stderr
    assert "Traceback" not in done.stderr
