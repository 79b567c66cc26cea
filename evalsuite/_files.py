"""Opening a user's file for reading: only a regular file, and never a wait.

Every reader of a workspace file (case files, controls, incidents, the configuration, the
agent's sources the fingerprint hashes, run logs, keys and verdict files) opens it here. A
named pipe, a socket, a device or a folder named like a file is refused as
:class:`NotARegularFile` (exit 2), one line naming the file and what it is: a blocking read
of a pipe nobody writes would hang ``check`` and ``gate`` for ever. The file is opened
without blocking (``O_NONBLOCK``: opening a pipe never waits for a writer) and judged by
``fstat`` on the very descriptor that is then read, so nothing can be swapped in between a
check and the open. This module imports neither pydantic nor YAML (the light ``check`` and
``mode`` use it).
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from evalsuite._errors import InvalidInput

# O_NONBLOCK: an open of a FIFO returns at once, and no read of the refused file happens.
# (Reads of a regular file never block, so it changes nothing for the files read.)
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_BLOCK = 1 << 16
LINE_BUFFER = 1 << 16
"""The read buffer of a reader of long lines (OTLP/JSON export lines are kB each)."""


class NotARegularFile(InvalidInput):
    """A path that names a named pipe, a socket, a device or a folder where a file was
    expected (exit 2)."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(path, "", f"not a regular file: expected a file, got {kind}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _open(path: Path | str) -> tuple[int, os.stat_result]:
    """A descriptor of ``path`` open for reading and its ``fstat``, when it is a regular
    file. ``OSError`` as :func:`os.open` raises it (``FileNotFoundError``…) otherwise."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a device with nothing behind it)
            raise NotARegularFile(path, "a socket or a device") from None
        raise
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode):
            raise NotARegularFile(path, _kind(held.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd, held


def open_regular(path: Path | str, buffer_size: int | None = None) -> io.BufferedReader:
    """``path`` open for reading bytes (as ``open(path, "rb")``), only if it is a regular
    file: a stream's readers (run logs) use it. A reader of long lines gives a
    ``buffer_size`` of many of them (:data:`LINE_BUFFER`): the default (the file system's
    block, often 4 kB) makes reading lines of several kB several times as costly.

    Raises:
        NotARegularFile: A named pipe, socket, device or folder (exit 2).
        OSError: As ``open`` raises it (a missing or unreadable file).
    """
    fd, _ = _open(path)
    try:
        if buffer_size is None:
            return os.fdopen(fd, "rb")
        return io.BufferedReader(io.FileIO(fd, "rb"), buffer_size)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path | str, limit: int | None = None) -> bytes:
    """A regular file's bytes (as ``Path.read_bytes``); with ``limit``, at most one byte
    more than it, so the caller can tell a file too large. Reads on the descriptor itself:
    the fingerprint reads every case file of a workspace this way.

    Raises:
        NotARegularFile: A named pipe, socket, device or folder (exit 2).
        OSError: As ``open`` raises it (a missing or unreadable file).
    """
    fd, held = _open(path)
    try:
        cap = None if limit is None else limit + 1
        ask = held.st_size + 1  # one more than it holds: the read that finds the end
        parts: list[bytes] = []
        total = 0
        while True:
            if cap is not None:
                ask = min(ask, cap - total)
            if ask <= 0:
                break
            chunk = os.read(fd, ask)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            # All it asked for: grown since the fstat, read on. Less: the end, which one
            # byte more confirms (never a 64 KiB buffer for each small case file).
            ask = _BLOCK if len(chunk) == ask else 1
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def require_regular(path: Path) -> Path:
    """``path``, when it names a regular file (for a check before work starts, such as
    every log of a command named before any is read); the read itself still goes through
    :func:`open_regular`.

    Raises:
        InvalidInput: A missing file, or one that is not a regular file (exit 2).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InvalidInput(path, "", "file not found") from None
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the file ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise NotARegularFile(path, _kind(mode))
    return path
