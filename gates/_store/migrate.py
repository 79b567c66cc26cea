"""Moving a team's state store from its SQLite file to a shared PostgreSQL server.

Everything the store holds is copied as it was written, row for row: the modes, every
verdict (the ratchet remembers its terms in them), the audit log with its hashes and the
head kept apart from it. So the chain is the same chain, and ``reinstate audit verify`` on
the new store prints the same head as on the old one, which is how anchors kept elsewhere
(CI logs, signed verdicts) go on vouching for it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gates._errors import Refused, StoreUnavailable
from gates._store.audit import verify_audit
from gates._store.backends import SQLiteStore
from gates._store.postgres import PostgresStore, put_head

Row = tuple[Any, ...]


@dataclass(frozen=True)
class History:
    """Every row a state store holds, as the store wrote it."""

    modes: list[Row]
    """agent, mode, since, actor, reason."""
    verdicts: list[Row]
    """agent, created_at, outcome, body; oldest first."""
    audit: list[Row]
    """seq, at, actor, action, agent, reason, detail, prev_hash, hash; by number."""
    head: str | None
    """The head as kept apart from the log (``SEQ:HASH``)."""
    reviews: list[Row] = field(default_factory=list)
    """num, agent, status, submitted_at, body: the review queue, by number (none in a store
    made before the queue)."""


@dataclass(frozen=True)
class Migrated:
    """What a migration copied, and the head both stores now verify to."""

    copied_audit: int
    """Audit entries copied (those the target already held are not counted)."""
    copied_verdicts: int
    """Verdicts copied."""
    modes: int
    """Agents whose mode the target now holds."""
    entries: int
    """Audit entries the target holds in all."""
    head: str | None
    """``SEQ:HASH`` of the last entry, on both stores."""
    copied_reviews: int = 0
    """Review items copied, or brought up to the source's decision."""


def read_sqlite_history(store: SQLiteStore) -> History:
    """Every row of a SQLite store, read in one transaction (a consistent copy even while
    another process writes)."""
    store.head()  # the store's own checks: it exists, is not empty, has the right version
    try:
        uri = f"{store.path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            conn.execute("BEGIN")
            modes = conn.execute("SELECT agent, mode, since, actor, reason FROM modes "
                                 "ORDER BY agent").fetchall()
            verdicts = conn.execute("SELECT agent, created_at, outcome, body FROM verdicts "
                                    "ORDER BY id").fetchall()
            audit = conn.execute("SELECT seq, at, actor, action, agent, reason, detail, "
                                 "prev_hash, hash FROM audit ORDER BY seq").fetchall()
            head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
            reviews = (conn.execute("SELECT num, agent, status, submitted_at, body FROM "
                                    "reviews ORDER BY num").fetchall()
                       if store._has_reviews(conn) else [])
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot read the state store {store.path}: {exc}") from None
    return History(modes, verdicts, audit, str(head[0]) if head else None, reviews)


def _differs(kind: str, ours: list[Row], theirs: list[Row]) -> list[str]:
    """Why ``theirs`` (the target's) is not a prefix of ``ours`` (the source's)."""
    if len(theirs) > len(ours):
        return [f"the target holds {len(theirs)} {kind}, the source {len(ours)}: it is ahead "
                f"of the source, or another store's"]
    for number, (mine, held) in enumerate(zip(ours, theirs, strict=False), start=1):
        if tuple(mine) != tuple(held):
            what = f"entry {held[0]}" if kind == "audit entries" else f"verdict {number}"
            return [f"{what} of the target differs from the source's: it holds another "
                    f"history"]
    return []


def migrate_store(source: SQLiteStore, target: PostgresStore) -> Migrated:
    """Copy ``source``'s whole history into ``target`` in one transaction, then verify it.

    The target must be empty, or hold the same chain the source starts with (a migration
    run again after the source grew copies what is new).

    Raises:
        Refused: the source's log does not verify, or the target holds another history.
        StoreUnavailable: a store cannot be read or written.
    """
    problems = verify_audit(source, [])
    if problems:
        raise Refused(f"Can't migrate {source.path}: its audit log does not verify "
                      f"(run `reinstate audit verify`)", problems)
    history = read_sqlite_history(source)
    with target._writing() as conn:
        held_audit = conn.execute("SELECT seq, at, actor, action, agent, reason, detail, "
                                  "prev_hash, hash FROM reinstate.audit ORDER BY seq").fetchall()
        held_verdicts = conn.execute("SELECT agent, created_at, outcome, body FROM "
                                     "reinstate.verdicts ORDER BY id").fetchall()
        problems = (_differs("audit entries", history.audit, held_audit)
                    + _differs("verdicts", history.verdicts, held_verdicts))
        if problems:
            raise Refused(f"Can't migrate into {target.display}: it is not empty and does not "
                          f"hold the beginning of this store's history", problems)
        new_audit = history.audit[len(held_audit):]
        new_verdicts = history.verdicts[len(held_verdicts):]
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO reinstate.audit VALUES "
                               "(%s, %s, %s, %s, %s, %s, %s, %s, %s)", new_audit)
            cursor.executemany("INSERT INTO reinstate.verdicts (agent, created_at, outcome, "
                               "body) VALUES (%s, %s, %s, %s)", new_verdicts)
            cursor.executemany(
                "INSERT INTO reinstate.modes VALUES (%s, %s, %s, %s, %s) ON CONFLICT (agent) "
                "DO UPDATE SET mode = excluded.mode, since = excluded.since, "
                "actor = excluded.actor, reason = excluded.reason", history.modes)
        if history.head is not None:
            seq, _, digest = history.head.partition(":")
            put_head(conn, int(seq), digest)
        # The target's checkpoint and tallies, over the copied entries verified by content
        # (as its own writes keep them): its decisions then verify from there.
        target._advance_checkpoint(conn)
        reviews = _copy_reviews(target, conn, history.reviews)
    problems = verify_audit(target, [])
    entries = target.audit()
    head = f"{entries[-1].seq}:{entries[-1].hash}" if entries else None
    if head != history.head:
        problems.append(f"the target's head is {head}, the source's {history.head}")
    if problems:
        raise Refused(f"The copy in {target.display} does not verify", problems)
    return Migrated(copied_audit=len(new_audit), copied_verdicts=len(new_verdicts),
                    modes=len(history.modes), entries=len(entries), head=head,
                    copied_reviews=reviews)


def _copy_reviews(target: PostgresStore, conn: Any, rows: list[Row]) -> int:
    """Put the source's review items in the target (inside the migration's transaction):
    new ones added, ones the target holds pending brought up to the source's decision.

    Raises:
        Refused: the target decided an item otherwise (it holds another history).
    """
    if not rows:
        return 0
    if not target._has_reviews(conn):
        target._add_reviews(conn)
    held = {row[0]: tuple(row) for row in conn.execute(
        "SELECT num, agent, status, submitted_at, body FROM reinstate.reviews").fetchall()}
    copied = 0
    for row in rows:
        mine = held.get(row[0])
        if mine == tuple(row):
            continue
        if mine is None:
            conn.execute("INSERT INTO reinstate.reviews VALUES (%s, %s, %s, %s, %s)", row)
        elif mine[2] == "pending" and mine[1] == row[1] and mine[3] == row[3]:
            conn.execute("UPDATE reinstate.reviews SET status = %s, body = %s WHERE num = %s",
                         (row[2], row[4], row[0]))
        else:
            raise Refused(f"Can't migrate into {target.display}: its review queue holds "
                          f"another history", [f"review item R-{row[0]} of the target is "
                                               f"{mine[2]}, the source's {row[2]}"])
        copied += 1
    return copied


def sqlite_source(text: str) -> SQLiteStore:
    """``sqlite:PATH`` (or a bare path) as a store to read.

    Raises:
        StoreUnavailable: there is no file at PATH.
    """
    path = Path(text.removeprefix("sqlite:").removeprefix("//"))
    if not path.is_file():
        raise StoreUnavailable(f"--from: no SQLite state store at {path}")
    return SQLiteStore(path)
