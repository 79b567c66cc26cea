"""Changes to the files an agent's mode is read from, told by the kernel (Linux inotify).

A guard must see a containment made by another process at its very next call. Stat'ing the
SQLite store, its WAL, the incidents folder and each open incident's file before every
decision is several system calls a decision, and most of what the guard adds to one; a
kernel watch on the two folders answers "did anything change?" with one ``read`` that
finds nothing, and it also reports an incident file edited in place, which no folder stamp
shows.

What counts as a change:

- in the store's folder, the store file itself written, replaced, moved, deleted or its
  permissions changed, and the WAL written (every commit in WAL mode appends to it) or
  replaced. The WAL made empty or removed by a connection opening or closing is not a
  change (the guard's own readings do that);
- in the incidents folder, any file written, created, deleted, moved or its permissions
  changed;
- anything the watch cannot vouch for: an overflowed event queue, a watched folder
  removed or moved, an event that cannot be parsed.

The SQLite store only works on a local file system (WAL needs shared memory between its
processes), so every writer of the store is on this machine and its kernel sees every
write. An incidents folder on a network file system may be edited from elsewhere, which
inotify does not report: the guard still stats every incident file every
``controls_recheck_s``. Where inotify is not there (not Linux, no ``libc``, the watch limit
reached, a folder missing), :func:`open_watch` answers None and the guard stats the files
before every decision instead.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import weakref
from pathlib import Path

# From <sys/inotify.h>.
_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_FROM = 0x00000040
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_UNMOUNT = 0x00002000
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

_WRITTEN = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_ATTRIB
_REPLACED = _IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO
_WATCHED = _WRITTEN | _REPLACED | _IN_DELETE_SELF | _IN_MOVE_SELF
_LOST = _IN_Q_OVERFLOW | _IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_UNMOUNT
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class ChangeWatch:
    """A kernel watch on the store's folder and the incidents folder."""

    def __init__(self, fd: int, store_wd: int, store: Path, incidents_wd: int,
                 awaited: bytes | None = None) -> None:
        self._fd = fd
        self._store_wd = store_wd
        self._incidents_wd = incidents_wd
        self._awaited = awaited  # the incidents folder's name, while only its parent is
        self._store = os.fsencode(store.name)
        self._wal = self._store + b"-wal"
        self.broken = False
        """Set when the watch can no longer vouch for anything (a folder removed or
        moved, the queue overflowed, this is a forked child): the guard reads the mode
        and opens a watch anew."""
        _WATCHES.add(self)

    def changed(self) -> bool:
        """Whether anything the mode is read from changed since the last call (every
        queued event is consumed). True, and :attr:`broken`, when it cannot tell."""
        if self.broken:
            return True
        chunks: list[bytes] = []
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break  # nothing (more) happened: a quiet decision's one system call
            except OSError:
                self.broken = True
                return True
            if not data:
                break
            chunks.append(data)
        changed = False
        for data in chunks:
            for wd, mask, name in _events(data):
                if wd < 0 or mask & _LOST:
                    self.broken = True
                    return True
                changed = changed or self._counts(wd, mask, name)
        return changed

    def _counts(self, wd: int, mask: int, name: bytes) -> bool:
        if wd == self._incidents_wd:
            if self._awaited is None:
                return True
            if name != self._awaited:
                return False
            self.broken = True  # the folder appeared: watch it instead of its parent
            return True
        if wd != self._store_wd:
            return False
        if name == self._store:
            return bool(mask & (_WRITTEN | _REPLACED))
        if name == self._wal:
            # Opening and closing connections make and remove an empty WAL; a commit
            # writes to it, and a WAL moved into place is not SQLite's doing.
            return bool(mask & (_IN_MODIFY | _IN_MOVED_TO | _IN_MOVED_FROM))
        return False

    def close(self) -> None:
        """Stop watching."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        self.broken = True


# A forked child shares its parent's watch: a read by one would take the other's events,
# so the child never reads it and opens its own (no cost on a decision: no pid asked).
_WATCHES: weakref.WeakSet[ChangeWatch] = weakref.WeakSet()


def _forked() -> None:
    for watch in list(_WATCHES):
        watch.broken = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _events(data: bytes) -> list[tuple[int, int, bytes]]:
    """The (watch, mask, name) of each event in one read; a torn event reads as lost."""
    found: list[tuple[int, int, bytes]] = []
    at = 0
    while at < len(data):
        if at + _HEADER.size > len(data):
            return [(-1, _IN_Q_OVERFLOW, b"")]
        wd, mask, _cookie, length = _HEADER.unpack_from(data, at)
        name = data[at + _HEADER.size:at + _HEADER.size + length].rstrip(b"\0")
        found.append((wd, mask, name))
        at += _HEADER.size + length
    return found


_LIBC: list[ctypes.CDLL | None] = []  # loaded once, on the first guard


def _libc() -> ctypes.CDLL | None:
    if not _LIBC:
        try:  # the process's own symbols, libc's among them: no search for the library
            _LIBC.append(ctypes.CDLL(None, use_errno=True)
                         if sys.platform.startswith("linux") else None)
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def open_watch(store: Path, incidents: Path) -> ChangeWatch | None:
    """A watch on ``store``'s folder and ``incidents``, or None where the kernel cannot
    give one (the caller then stats the files itself)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "inotify_init1"):
        return None
    fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        return None
    # No incidents folder yet (no incident ever opened): its parent, for the folder's
    # creation; the folder itself is watched from the next reading on.
    awaited = None if incidents.is_dir() else os.fsencode(incidents.name)
    folders = (store.parent, incidents if awaited is None else incidents.parent)
    wds = [libc.inotify_add_watch(fd, os.fsencode(folder), _WATCHED | _IN_ONLYDIR)
           for folder in folders]
    if min(wds) < 0 or wds[0] == wds[1]:  # a folder missing, the limit reached, one folder
        os.close(fd)
        return None
    return ChangeWatch(fd, wds[0], store, wds[1], awaited)
