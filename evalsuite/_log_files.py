"""A run log's text, however it was stored: as written, compressed (gzip, zstd), or as the
OpenTelemetry Collector's file exporter writes length-prefixed messages.

Every reader of a run log opens it here (:func:`open_log`, :func:`read_log_bytes`), so
every bundled format reads every storage. What a file is comes from its first bytes, never
its name: a rotated log keeps whatever name logrotate gave it. Damage (a file cut off, a
corrupt stream, bytes after the last frame that are no frame) is an error naming the file
when the read reaches it, never a read that stops early and passes.

The Collector's file exporter writes each export as a 4-byte big-endian length and the
message when its ``format`` is ``proto`` or, before its ``exporter.file.nativeCompression``
feature gate, when ``compression: zstd`` is set (each message then a zstd frame). Such a
file reads as one line a message, numbered so; a message that is protobuf, not JSON, is
refused naming it (reinstate reads the exporter's ``format: json``). Its first byte tells
it from a text log: a length under 16 MiB starts with NUL, which no text log does.
"""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path
from typing import Any

from evalsuite._errors import InvalidInput
from evalsuite._files import LINE_BUFFER, open_regular, read_regular

__all__ = ["LINE_BUFFER", "log_stem", "log_storage", "open_log", "read_log_bytes"]
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_FRAMED = "length-prefixed"


def _storage(head: bytes) -> str | None:
    """How a file's first eight bytes show it is stored: ``gzip``, ``zstd``, the
    Collector's length-prefixed messages, or as written (``None``)."""
    if head[:2] == _GZIP:
        return "gzip"
    if head[:4] == _ZSTD:
        return "zstd"
    # A length under 16 MiB, then a JSON message, a zstd frame or a protobuf field 1.
    if head[:1] == b"\0" and (head[4:5] in (b"{", b"\n") or head[4:8] == _ZSTD):
        return _FRAMED
    return None


def open_log(path: Path | str, buffer_size: int | None = None) -> io.BufferedReader:
    """A run log open for reading its records: as :func:`open_regular`, and a compressed
    file (a rotated log) or the Collector's length-prefixed messages read as the text they
    hold, whatever its name.
    """
    handle = open_regular(path, buffer_size)
    try:
        storage = _storage(handle.peek(8)[:8])
        if storage is None:
            return handle
        raw: io.RawIOBase = (_Framed(Path(path), handle) if storage == _FRAMED
                             else _Decompressed(Path(path), handle, storage))
        return io.BufferedReader(raw, buffer_size or io.DEFAULT_BUFFER_SIZE)
    except BaseException:
        handle.close()
        raise


def log_stem(path: Path) -> str:
    """A log's name without its suffix, nor ``.gz`` or ``.zst`` before it: a run a reader
    names after its file (``x-2``) keeps its id when the log is compressed."""
    return (path.with_suffix("") if path.suffix in (".gz", ".zst") else path).stem


def log_storage(path: Path | str) -> str | None:
    """How the file is stored, by its first bytes (not its name): ``gzip``, ``zstd``,
    ``length-prefixed`` (the Collector's messages), or ``None`` (as written)."""
    with open_regular(path) as handle:
        return _storage(handle.read(8))


def read_log_bytes(path: Path | str) -> bytes:
    """A run log's bytes (as :func:`read_regular`), a compressed file's decompressed."""
    data = read_regular(path)
    storage = _storage(data[:8])
    if storage is None:
        return data
    if storage == _FRAMED:
        with open_log(path) as handle:
            return handle.read()
    module, errors = _decompressor(Path(path), storage)
    try:
        return module.decompress(data)  # type: ignore[no-any-return]
    except errors as exc:
        raise _damaged(Path(path), storage, exc) from None


def _decompressor(path: Path, codec: str) -> tuple[Any, tuple[type[BaseException], ...]]:
    """The module that reads ``codec`` (imported only for a compressed log: the light
    commands never import it) and the errors it raises on damage."""
    import zlib

    if codec == "gzip":
        import gzip

        return gzip, (EOFError, OSError, zlib.error)  # BadGzipFile is an OSError
    try:  # Python 3.14 reads zstd itself; before it, the backport of the same module
        module = importlib.import_module("compression.zstd")
    except ImportError:
        try:
            module = importlib.import_module("backports.zstd")
        except ImportError:
            raise InvalidInput(path, "", "a zstd-compressed log: reading it needs Python 3.14 "
                                         "or the backports.zstd package (reinstate's zstd "
                                         "extra)") from None
    return module, (EOFError, OSError, module.ZstdError)


def _damaged(path: Path, storage: str, exc: BaseException | str) -> InvalidInput:
    return InvalidInput(path, "", f"not a whole {storage} file ({exc or type(exc).__name__}): "
                                  "cut off or corrupt")


class _Decompressed(io.RawIOBase):
    """A compressed log's text as a raw stream, its damage an error naming the file."""

    def __init__(self, path: Path, handle: io.BufferedReader, codec: str) -> None:
        super().__init__()
        module, self._errors = _decompressor(path, codec)
        self._path = path
        self._codec = codec
        self._handle = handle
        self._text = (module.GzipFile(fileobj=handle, mode="rb") if codec == "gzip"
                      else module.ZstdFile(handle, mode="rb"))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._text.readinto(buffer)  # type: ignore[no-any-return]
        except self._errors as exc:
            raise _damaged(self._path, self._codec, exc) from None

    def close(self) -> None:
        if not self.closed:
            self._text.close()
            self._handle.close()
        super().close()


class _Framed(io.RawIOBase):
    """The Collector's length-prefixed messages as lines of text, one a message (a zstd
    frame decompressed), each message read when the one before it is used up."""

    def __init__(self, path: Path, handle: io.BufferedReader) -> None:
        super().__init__()
        self._path = path
        self._handle = handle
        self._size = os.fstat(handle.fileno()).st_size
        self._read = 0  # bytes of the file read so far
        self._messages = 0
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            self._pending = memoryview(self._next())
        taken = min(len(buffer), len(self._pending))
        buffer[:taken] = self._pending[:taken]
        self._pending = self._pending[taken:]
        return taken

    def _next(self) -> bytes:
        """The next message as a line (``b""`` at the end of the file)."""
        header = self._handle.read(4)
        if not header:
            return b""
        length = int.from_bytes(header, "big")
        # Never more than the file holds: a length is read before its message is.
        if len(header) < 4 or length > self._size - self._read - 4:
            raise _damaged(self._path, _FRAMED, f"message {self._messages + 1} is cut off")
        message = self._handle.read(length)
        self._read += 4 + length
        self._messages += 1
        if message[:4] == _ZSTD:
            module, errors = _decompressor(self._path, "zstd")
            try:
                message = module.decompress(message)
            except errors as exc:
                raise _damaged(self._path, "zstd", exc) from None
        if message.lstrip()[:1] not in (b"{", b"["):
            raise InvalidInput(self._path, "", "a message that is not JSON (the Collector's "
                                               "format: proto?): reinstate reads its format: "
                                               "json", line=self._messages)
        return message.rstrip(b"\r\n") + b"\n"

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()
