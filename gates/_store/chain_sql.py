"""The audit checkpoint of a SQLite store, as the store and its light readers test it.

A checkpoint (``meta`` key ``audit_checkpoint``: the number and hash of an entry, and a
digest of the stored rows up to it) says that every entry up to it was verified by content
when the store wrote it. Two tests, for two kinds of reader:

- :func:`verified_checkpoint`, for what verifies the log before an agent clears
  (``check``, ``restore`` and the restore conditions a gate prints): every row up to the
  checkpoint unchanged since it was verified, one pass over their bytes (numbering, links
  and the digest; nothing parsed or re-hashed). Any hand edit of any row drops the
  checkpoint, and the whole log is verified.
- :func:`linked_checkpoint`, for what only reads entries (the mode, the runtime, the
  guard, a gate's containments and approvals), which verifies nothing and uses the
  checkpoint only to read the agent's entries of an action before it and every entry
  after it: the log's structure up to it whole
  (numbered from 1 without a gap, every entry linked to the one before, the checkpoint's
  entry still holding its hash), tested by SQLite over an index of the numbers and hashes,
  so its cost does not grow with the text of the history.

Standard library only: ``reinstate check`` and ``reinstate mode`` test it on their plain
path without importing the store.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

GENESIS = "0" * 64  # the hash the first audit entry follows
# An audit row as every reader selects it (the chain hash is over these, in this order).
AUDIT_COLUMNS = "seq, at, actor, action, agent, reason, detail, prev_hash, hash"

# What keeps the structural test off the entries' text, and an agent's entries of one
# action one index range away (added to stores made before them by their next write).
_CHAIN_INDEX = "CREATE INDEX audit_chain ON audit (seq, prev_hash, hash)"  # as SQLite keeps it
INDEXES = (
    _CHAIN_INDEX.replace("INDEX", "INDEX IF NOT EXISTS", 1),
    "CREATE INDEX IF NOT EXISTS audit_by_agent ON audit (agent, action, seq)",
)


def stored_checkpoint(conn: sqlite3.Connection) -> tuple[int, str, str] | None:
    """Number, hash and rows digest of the checkpoint as stored; None when there is none
    or it does not parse (an edited checkpoint vouches for nothing: the whole log is
    read)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'audit_checkpoint'").fetchone()
    try:
        point = json.loads(row[0]) if row is not None else None
        if point is None:
            return None
        seq, digest, rows = point["seq"], point["hash"], point["rows"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if not (type(seq) is int and seq >= 1 and isinstance(digest, str)
            and isinstance(rows, str)):
        return None
    return seq, digest, rows


def fold(digest: str, row: tuple[Any, ...]) -> str:
    """The checkpoint's digest of stored rows, extended by one row as it is stored."""
    return hashlib.sha256(f"{digest}{row!r}".encode()).hexdigest()


def verified_checkpoint(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The stored checkpoint, when every row up to it is unchanged since it was verified;
    else None."""
    point = stored_checkpoint(conn)
    if point is None:
        return None
    seq, digest, rows = point
    folded, prev, count = GENESIS, GENESIS, 0
    for row in conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq <= ? ORDER BY seq",
                            (seq,)):
        count += 1
        if row[0] != count or row[7] != prev:
            return None
        prev = row[8]
        folded = fold(folded, row)
    if count != seq or prev != digest or folded != rows:
        return None
    return seq, digest


def linked_checkpoint(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The stored checkpoint, when the log's structure up to it is whole; else None."""
    point = stored_checkpoint(conn)
    if point is None:
        return None
    seq, digest, _ = point
    low = conn.execute("SELECT min(seq) FROM audit").fetchone()[0]
    ends = {row[0]: row for row in conn.execute(
        "SELECT seq, prev_hash, hash FROM audit WHERE seq IN (1, ?)", (seq,))}
    if low != 1 or seq not in ends or ends[1][1] != GENESIS or ends[seq][2] != digest:
        return None
    # Every entry from 2 to the checkpoint follows one numbered just before it, holding the
    # hash it names: with entry 1 and the checkpoint's present, numbers (the table's integer
    # key) run from 1 to the checkpoint without a gap, with no count of them. Named, or
    # SQLite looks the earlier entry up in the table, reading every entry's text; only when
    # it is the index the store made (another of that name may not serve).
    made = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND "
                        "name = 'audit_chain'").fetchone()
    indexed = "INDEXED BY audit_chain" if made is not None and made[0] == _CHAIN_INDEX else ""
    broken = conn.execute(
        f"SELECT 1 FROM audit AS later {indexed} LEFT JOIN audit AS earlier {indexed} "
        "ON earlier.seq = later.seq - 1 WHERE later.seq BETWEEN 2 AND ? "
        "AND later.prev_hash IS NOT earlier.hash LIMIT 1", (seq,)).fetchone()
    return None if broken is not None else (seq, digest)
