"""A reinstate CLI process with one fault armed, for the fault-injection suite.

    python _child.py FAULT -- ARGS… [-- ARGS…]

runs ``reinstate ARGS`` (each group in turn, in this one process) with FAULT armed, and
prints each command's exit code on the last line of stdout (``exit codes: 0 1``); it
exits with the last one. Faults that stop the process somewhere write one byte to the
descriptor in ``$FAULT_SIGNAL_FD`` when reached and then wait forever, so the test kills
the process at exactly that point with SIGKILL: no sleeping, no guessing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import sys
import threading
from collections.abc import Callable
from typing import Any


def _reached() -> None:
    os.write(int(os.environ["FAULT_SIGNAL_FD"]), b"!")
    threading.Event().wait()  # until SIGKILL


def _wrap(owner: Any, name: str, *, before: bool) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            _reached()
        result = original(*args, **kwargs)
        if not before:
            _reached()
        return result

    setattr(owner, name, wrapper)


def _disk_full(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _sqlite_full() -> None:
    """Every database is as full as it is now: the next page it needs fails (SQLITE_FULL)."""
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(int(pages), 1)}")
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]


def _pg_connection_lost() -> None:
    """The PostgreSQL server drops the connection of every audit write after its rows are
    written and before they are committed."""
    import psycopg

    from gates._store.postgres import PostgresStore, expand

    original = PostgresStore._append

    def append(self: PostgresStore, conn: Any, **kwargs: Any) -> Any:
        entry = original(self, conn, **kwargs)
        with psycopg.connect(expand(self.url, self.where), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        return entry

    PostgresStore._append = append  # type: ignore[method-assign]


def _start_gun() -> None:
    """Say ready, then wait for the test to release every process at once."""
    os.write(int(os.environ["FAULT_SIGNAL_FD"]), b"!")
    with open(os.environ["START_GUN"], "rb") as gun:  # noqa: PTH123 - a raw descriptor
        fcntl.flock(gun, fcntl.LOCK_SH)


def arm(fault: str) -> None:
    """Arm ``fault`` in this process."""
    if fault == "none":
        return
    if fault == "start-gun":
        _start_gun()
    elif fault == "kill-after-case-written":  # capture: the case is on disk, not yet recorded
        import regressions._capture as capture
        _wrap(capture, "create_exclusive", before=False)
    elif fault == "kill-in-verdict-transaction":  # gate: rows inserted, not committed
        from gates._store.backends import SQLiteStore
        _wrap(SQLiteStore, "_append", before=False)
    elif fault == "kill-after-mode-restored":  # restore: mode full, incidents not yet marked
        from regressions import IncidentBook
        _wrap(IncidentBook, "change", before=True)
    elif fault == "kill-before-rename":  # an atomic write: temp file complete, not renamed
        import pathlib
        _wrap(pathlib.Path, "replace", before=True)
    elif fault == "disk-full":  # every file written and synced fails as on a full disk
        os.fsync = _disk_full
    elif fault == "sqlite-full":
        _sqlite_full()
    elif fault == "pg-connection-lost":
        _pg_connection_lost()
    else:
        raise SystemExit(f"unknown fault {fault!r}")


def main(argv: list[str]) -> int:
    """Arm the fault, run each command, report the exit codes."""
    fault, rest = argv[0], argv[1:]
    commands: list[list[str]] = []
    for word in rest:
        if word == "--":
            commands.append([])
        else:
            commands[-1].append(word)
    arm(fault)
    from gates._cli import main as reinstate  # after the fault is armed

    codes = [reinstate(command) for command in commands]
    sys.stderr.flush()
    print("exit codes:", *codes, flush=True)
    return codes[-1]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
