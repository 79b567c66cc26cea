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

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inotify_simple import INotify

# From <sys/inotify.h>, as inotify_simple.flags names them; kept here so a guard on a
# system without inotify never imports it.
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

_WRITTEN = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_ATTRIB
_REPLACED = _IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO
_WATCHED = _WRITTEN | _REPLACED | _IN_DELETE_SELF | _IN_MOVE_SELF
_AWAITED = _IN_CREATE | _IN_MOVED_TO | _IN_DELETE_SELF | _IN_MOVE_SELF
_LOST = _IN_Q_OVERFLOW | _IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_UNMOUNT


class ChangeWatch:
    """A kernel watch on the store's folder and the incidents folder."""

    def __init__(self, inotify: INotify, store_wd: int, store: Path, incidents_wd: int,
                 awaited: str | None = None) -> None:
        self._inotify = inotify
        self._store_wd = store_wd
        self._incidents_wd = incidents_wd
        self._awaited = awaited  # the incidents folder's name, while only its parent is
        self._store = store.name
        self._wal = self._store + "-wal"
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
        try:  # nothing queued: a quiet decision's one system call
            events = self._inotify.read(timeout=0)
        except (OSError, ValueError):  # ValueError: closed, or a torn event
            self.broken = True
            return True
        changed = False
        for event in events:
            if event.wd < 0 or event.mask & _LOST:
                self.broken = True
                return True
            changed = changed or self._counts(event.wd, event.mask, event.name)
        return changed

    def _counts(self, wd: int, mask: int, name: str) -> bool:
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
        self._inotify.close()
        self.broken = True


# A forked child shares its parent's watch: a read by one would take the other's events,
# so the child never reads it and opens its own (no cost on a decision: no pid asked).
_WATCHES: weakref.WeakSet[ChangeWatch] = weakref.WeakSet()


def _forked() -> None:
    for watch in list(_WATCHES):
        watch.broken = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def open_watch(store: Path, incidents: Path) -> ChangeWatch | None:
    """A watch on ``store``'s folder and ``incidents``, or None where the kernel cannot
    give one (the caller then stats the files itself)."""
    try:
        from inotify_simple import INotify  # Linux only: elsewhere the guard stats
    except ImportError:
        return None
    try:
        inotify = INotify(nonblocking=True)
    except (OSError, AttributeError, TypeError):  # no libc or no inotify_init1 in it
        return None
    # No incidents folder yet (no incident ever opened): its parent, for the folder's
    # creation; the folder itself is watched from the next reading on.
    awaited = None if incidents.is_dir() else incidents.name
    # Awaiting the folder, its parent (often the workspace's root, where a run log may be
    # written at every step) is asked only for entries made or moved in: its files'
    # writes would be an event to read and parse at every decision, and none can matter.
    folders = ((store.parent, _WATCHED), (incidents, _WATCHED) if awaited is None
               else (incidents.parent, _AWAITED))
    try:
        wds = [inotify.add_watch(folder, mask | _IN_ONLYDIR) for folder, mask in folders]
    except OSError:  # a folder missing, the watch limit reached
        inotify.close()
        return None
    if wds[0] == wds[1]:  # one folder holds both: its events could not be told apart
        inotify.close()
        return None
    return ChangeWatch(inotify, wds[0], store, wds[1], awaited)
