"""The audit checkpoint of a SQLite store, and the tallies recorded with it, as the store
and its light readers test them.

A checkpoint (``meta`` key ``audit_checkpoint``: the number and hash of an entry) says that
every entry up to it was verified by content when the store wrote it. With it the store
records, for each agent, a *tally* of the entries a decision about that agent reads (``meta``
key ``audit_tally:<agent>``): the number and a digest of its ``mode`` and
``ratchet-approval`` entries (numbers and hashes, in order), the number and hash of its
last ``verdict`` entry, and the number and a digest of its review entries (submissions and
decisions: what releases a held call or output). Both are written in the transaction of every write.

Every reader starts from :func:`held_checkpoint`: the log still starting at entry 1 and the
checkpoint's entry still holding its hash, two lookups by number. What only reads and
verifies nothing (the mode, the runtime, the guard) then reads the agent's entries of an
action before it and every entry after it: flat in the log. What verifies before an agent
clears or a held call is released (``check``, ``restore``, the restore conditions a gate
prints, the ratchet's memory and approvals, a review release) also tests the log's numbers
and links up to the checkpoint inside the database (:func:`linked_to`: a fraction of a
microsecond an entry, no entry's text read), re-hashes every entry after it and every entry
the decision reads, and finds those to be exactly the tallied ones (:func:`recorded_tally`):
an entry hidden from the decision by an edited agent or action is missing from its tally,
one edited in place no longer hashes to itself, and one removed, or rewritten with its hash
recomputed, breaks the numbers or links, however the tallies were counted again. An edit of
an entry no decision reads that leaves its hash as it was is found by ``reinstate audit
verify``, which re-hashes every entry.

Standard library only: ``reinstate check`` and ``reinstate mode`` test it on their plain
path without importing the store.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import NamedTuple

GENESIS = "0" * 64  # the hash the first audit entry follows
# An audit row as every reader selects it (the chain hash is over these, in this order).
AUDIT_COLUMNS = "seq, at, actor, action, agent, reason, detail, prev_hash, hash"

# What keeps the test of the log's links off the entries' text, and an agent's entries of
# one action one index range away (added to stores made before them by their next write).
_CHAIN_INDEX = "CREATE INDEX audit_chain ON audit (seq, prev_hash, hash)"  # as SQLite keeps it
INDEXES = (
    _CHAIN_INDEX.replace("INDEX", "INDEX IF NOT EXISTS", 1),
    "CREATE INDEX IF NOT EXISTS audit_by_agent ON audit (agent, action, seq)",
)


# The checkpoint as stored from this version on: it records the agents' tallies, review
# entries counted. One of an earlier version (tallies without review entries, or none)
# still serves the readers that verify nothing, and is counted again at the next write.
CHECKPOINT_VERSION = 3
# What a decision about an agent reads of the log, beside every entry after the checkpoint:
# its containments and restores, and the ratchet's approvals (gates._store.audit.DECIDING).
DECIDING = ("mode", "ratchet-approval")
VERDICT = "verdict"
# What a review release reads besides (gates._store.reviews.REVIEW_ACTIONS).
REVIEWED = ("review.submit", "review.approve", "review.edit", "review.reject", "review.expire")
TALLIED = frozenset((*DECIDING, VERDICT, *REVIEWED))  # what a tally counts
TALLY_PREFIX = "audit_tally:"


def tally_key(agent: str) -> str:
    """The ``meta`` key of ``agent``'s tally."""
    return f"{TALLY_PREFIX}{agent}"


class Tally(NamedTuple):
    """What the store recorded, as of its checkpoint, of an agent's entries that a decision
    reads."""

    deciding: tuple[int, str] = (0, GENESIS)
    """How many ``mode`` and ``ratchet-approval`` entries, and :func:`fold_deciding` of
    their numbers and hashes, oldest first."""
    verdict: tuple[int, str] | None = None
    """Number and hash of the last ``verdict`` entry; None when there is none."""
    reviews: tuple[int, str] = (0, GENESIS)
    """How many review entries (submissions and decisions), and :func:`fold_deciding` of
    their numbers and hashes, oldest first."""

    def counted(self, seq: int, action: str, digest: str) -> Tally:
        """This tally with the entry ``seq`` (of ``action``, hashed ``digest``) counted."""
        if action in DECIDING:
            count, folded = self.deciding
            return self._replace(deciding=(count + 1, fold_deciding(folded, seq, digest)))
        if action == VERDICT:
            return self._replace(verdict=(seq, digest))
        if action in REVIEWED:
            count, folded = self.reviews
            return self._replace(reviews=(count + 1, fold_deciding(folded, seq, digest)))
        return self

    def dumps(self) -> str:
        """The tally as the store keeps it."""
        return json.dumps({"deciding": list(self.deciding),
                           "verdict": list(self.verdict) if self.verdict else None,
                           "reviews": list(self.reviews)})


def fold_deciding(digest: str, seq: int, entry_hash: str) -> str:
    """A tally's digest of deciding entries, extended by one entry."""
    return hashlib.sha256(f"{digest}|{seq}:{entry_hash}".encode()).hexdigest()


def tally_of(entries: list[tuple[int, str, str]]) -> Tally:
    """The tally of ``entries`` (number, action, hash), oldest first."""
    tally = Tally()
    for seq, action, digest in entries:
        tally = tally.counted(seq, action, digest)
    return tally


def parse_tally(value: object) -> Tally | None:
    """A stored tally; None when it does not parse (an edited tally vouches for nothing)."""
    try:
        data = json.loads(str(value))
        count, folded = data["deciding"]
        reviewed, reviews = data["reviews"]
        verdict = data["verdict"]
        if not (type(count) is int and count >= 0 and isinstance(folded, str)
                and type(reviewed) is int and reviewed >= 0 and isinstance(reviews, str)):
            return None
        if verdict is None:
            return Tally((count, folded), None, (reviewed, reviews))
        seq, digest = verdict
        if not (type(seq) is int and seq >= 1 and isinstance(digest, str)):
            return None
        return Tally((count, folded), (seq, digest), (reviewed, reviews))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


def parse_checkpoint(value: object) -> tuple[int, str, bool] | None:
    """Number and hash of a stored checkpoint, and whether it records the agents' tallies;
    None when it does not parse (an edited checkpoint vouches for nothing: the whole log is
    read)."""
    try:
        point = json.loads(str(value))
        seq, digest = point["seq"], point["hash"]
        tallied = point.get("version") == CHECKPOINT_VERSION
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if not (type(seq) is int and seq >= 1 and isinstance(digest, str)):
        return None
    return seq, digest, tallied


def dump_checkpoint(seq: int, digest: str) -> str:
    """A checkpoint as the store keeps it (it records the agents' tallies)."""
    return json.dumps({"version": CHECKPOINT_VERSION, "seq": seq, "hash": digest})


def stored_checkpoint(conn: sqlite3.Connection) -> tuple[int, str, bool] | None:
    """The checkpoint as stored (:func:`parse_checkpoint`); None when there is none."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'audit_checkpoint'").fetchone()
    return None if row is None else parse_checkpoint(row[0])


def recorded_tally(conn: sqlite3.Connection,
                   agent: str) -> tuple[tuple[int, str], Tally] | None:
    """The stored checkpoint and ``agent``'s tally recorded with it, read in one statement
    (:func:`tally_as_of`)."""
    rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                             "('audit_checkpoint', ?)", (tally_key(agent),)).fetchall())
    return tally_as_of(rows.get("audit_checkpoint"), rows.get(tally_key(agent)))


def tally_as_of(checkpoint: object,
                tally: object) -> tuple[tuple[int, str], Tally] | None:
    """Number and hash of the stored ``checkpoint`` and the stored ``tally`` recorded with
    it (None: none stored, so none of the agent's entries up to it); None when the
    checkpoint records no tallies (a store made before them) or either does not parse."""
    stored = None if checkpoint is None else parse_checkpoint(checkpoint)
    if stored is None or not stored[2]:
        return None
    found = Tally() if tally is None else parse_tally(tally)
    return None if found is None else ((stored[0], stored[1]), found)


def stored_tallies(rows: list[tuple[str, str]]) -> tuple[tuple[int, str] | None,
                                                         dict[str, Tally | None]]:
    """From the ``meta`` rows of the checkpoint and of every tally: number and hash of the
    checkpoint when it records tallies (else None), and each agent's tally (None for one
    that does not parse). A checkpoint of an earlier version comes with no tallies: what
    an earlier reinstate counted vouches for nothing now, and this one counts again at its
    next write."""
    checkpoint, tallies, earlier = None, {}, False
    for key, value in rows:
        if key == "audit_checkpoint":
            stored = parse_checkpoint(value)
            checkpoint = (stored[0], stored[1]) if stored is not None and stored[2] else None
            earlier = stored is not None and not stored[2]
        elif key.startswith(TALLY_PREFIX):
            tallies[key.removeprefix(TALLY_PREFIX)] = parse_tally(value)
    return checkpoint, {} if earlier else tallies


def held_checkpoint(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The stored checkpoint, when the log still starts at entry 1 (following the genesis
    hash) and the checkpoint's entry still holds its hash; else None. Two lookups by number,
    whatever the log's length: what lies between is not read here. A decision re-hashes
    every entry it reads, and those up to the checkpoint must be the ones tallied; the
    whole log's numbers and links are ``reinstate audit verify``'s to test."""
    point = stored_checkpoint(conn)
    if point is None:
        return None
    seq, digest, _ = point
    ends = {row[0]: row for row in conn.execute(
        "SELECT seq, prev_hash, hash FROM audit WHERE seq IN (1, ?)", (seq,))}
    if seq not in ends or 1 not in ends or ends[1][1] != GENESIS or ends[seq][2] != digest:
        return None
    return seq, digest


def linked_to(conn: sqlite3.Connection, seq: int, digest: str) -> bool:
    """Whether the log's numbers and links are whole from entry 1 to entry ``seq``, which
    holds ``digest``: numbered from 1 without a gap, every entry linked to the one before.
    Tested by SQLite over an index of the numbers and hashes, no entry's text read (a
    fraction of a microsecond an entry): what a decision stands on besides the entries it
    re-hashes, so that an entry removed, or rewritten with its hash recomputed, anywhere up
    to the checkpoint refuses however the tallies were counted again."""
    low = conn.execute("SELECT min(seq) FROM audit").fetchone()[0]
    ends = {row[0]: row for row in conn.execute(
        "SELECT seq, prev_hash, hash FROM audit WHERE seq IN (1, ?)", (seq,))}
    if low != 1 or seq not in ends or 1 not in ends or ends[1][1] != GENESIS \
            or ends[seq][2] != digest:
        return False
    # Every entry from 2 to ``seq`` follows one numbered just before it, holding the hash it
    # names: with entry 1 and entry ``seq`` present, numbers (the table's integer key) run
    # from 1 to it without a gap, with no count of them. Named, or SQLite looks the earlier
    # entry up in the table, reading every entry's text; only when it is the index the
    # store made (another of that name may not serve).
    made = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND "
                        "name = 'audit_chain'").fetchone()
    indexed = "INDEXED BY audit_chain" if made is not None and made[0] == _CHAIN_INDEX else ""
    broken = conn.execute(
        f"SELECT 1 FROM audit AS later {indexed} LEFT JOIN audit AS earlier {indexed} "
        "ON earlier.seq = later.seq - 1 WHERE later.seq BETWEEN 2 AND ? "
        "AND later.prev_hash IS NOT earlier.hash LIMIT 1", (seq,)).fetchone()
    return broken is None
