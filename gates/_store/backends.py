"""Runtime state: agent modes, verdicts and the audit log, behind one small interface.

Containment must take effect in seconds, so modes live in a database, not in git.
SQLite is the default; :class:`MemoryStore` serves tests and embedding; both pass the
same contract tests. Every mode change and verdict is an audit entry, numbered and
hash-chained so an edited, removed or reordered entry shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import AwareDatetime, Field, ValidationError, model_validator

from evalsuite import Record
from gates._errors import ModeChanged, ReviewDecided, StoreUnavailable, UnknownReview
from gates._store import chain_sql
from gates._store.chain_sql import (
    AUDIT_COLUMNS,
    GENESIS,
    INDEXES,
    TALLIED,
    TALLY_PREFIX,
    Tally,
    dump_checkpoint,
    parse_checkpoint,
    parse_tally,
    stored_tallies,
    tally_as_of,
    tally_key,
)
from gates._store.reviews import (
    DECISION_ACTIONS,
    SUBMIT_ACTION,
    ReviewItem,
    ReviewStatus,
    ReviewSubmission,
    decided,
    decision_detail,
    new_item,
    review_number,
    submit_detail,
)
from regressions import utc_now

# The verdict models load when a verdict is stored or read: `reinstate mode` and
# `agent_mode` read only the mode and the incidents, and skip building them.
if TYPE_CHECKING:
    from gates._verdict.verdict import Verdict


class StoredText(Protocol):
    """A verdict read from the store in any form: it gives back the text the store keeps."""

    def stored_text(self) -> str: ...


Mode = Literal["full", "review", "suspended"]
MODES: tuple[Mode, ...] = ("suspended", "review", "full")  # most restrictive first
# How long a write waits for another process's write transaction before giving up (s).
LOCK_TIMEOUT_ENV = "REINSTATE_LOCK_TIMEOUT"


def lock_timeout() -> float:
    """Seconds a write waits for another writer: ``$REINSTATE_LOCK_TIMEOUT``, else 30."""
    try:
        return max(0.0, float(os.environ.get(LOCK_TIMEOUT_ENV, "30")))
    except ValueError:
        return 30.0


class ModeRecord(Record):
    """An agent's current mode and how it got there."""

    agent: str
    """The agent."""
    mode: Mode
    """full, review (every output to a human) or suspended."""
    since: AwareDatetime
    """When the mode was set, in UTC."""
    actor: str
    """Who set it."""
    reason: str
    """Why."""


class AuditEntry(Record):
    """One numbered, hash-chained entry of the audit log."""

    seq: int
    """Position in the log, from 1, with no gaps."""
    at: AwareDatetime
    """When, in UTC."""
    actor: str
    """Who."""
    action: str
    """What: ``mode``, ``verdict``, ``contain``, ``restore``, …"""
    agent: str | None = None
    """The agent concerned."""
    reason: str = ""
    """Why."""
    detail: dict[str, Any] = Field(default_factory=dict)
    """What else there is to know."""
    prev_hash: str
    """Hash of the entry before (zeros for the first)."""
    hash: str
    """SHA-256 over this entry's fields and ``prev_hash``."""

    @model_validator(mode="after")
    def _mode_detail(self) -> AuditEntry:
        # What a mode entry says of incidents decides the mode: a containment names one
        # (text), a restore lists them (texts). Any other shape is a row reinstate never
        # writes, refused where it is read (exit 3), never a crash where the mode is decided.
        if self.action == "mode":
            named, listed = self.detail.get("incident"), self.detail.get("incidents")
            if not (named is None or isinstance(named, str)):
                raise ValueError("its detail's incident is not an incident id")
            if not (listed is None or (isinstance(listed, list)
                                       and all(isinstance(i, str) for i in listed))):
                raise ValueError("its detail's incidents are not a list of incident ids")
        return self


def entry_hash(seq: int, at: datetime, actor: str, action: str, agent: str | None,
               reason: str, detail: dict[str, Any], prev_hash: str) -> str:
    """The chain hash of an audit entry."""
    body = json.dumps(
        [seq, at.isoformat(), actor, action, agent, reason, detail, prev_hash],
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _entry(seq: int, prev: str, actor: str, action: str, agent: str | None, reason: str,
           detail: dict[str, Any]) -> AuditEntry:
    at = utc_now()
    digest = entry_hash(seq, at, actor, action, agent, reason, detail, prev)
    return AuditEntry(seq=seq, at=at, actor=actor, action=action, agent=agent, reason=reason,
                      detail=detail, prev_hash=prev, hash=digest)


class StateStore(Protocol):
    """What reinstate needs from a state store."""

    def mode(self, agent: str) -> ModeRecord | None:
        """The agent's recorded mode, or None if it was never set (full operation)."""
        ...

    def set_mode(self, record: ModeRecord, detail: dict[str, Any] | None = None) -> AuditEntry:
        """Set the mode and append the audit entry, in one transaction."""
        ...

    def tighten_mode(self, record: ModeRecord,
                     detail: dict[str, Any] | None = None) -> tuple[AuditEntry, Mode]:
        """Set ``record.mode`` unless the current mode is stricter (then keep that), and
        append the audit entry: read and written in one transaction, so two containments
        racing end in the stricter mode. Returns the entry and the mode now in force."""
        ...

    def replace_mode(self, record: ModeRecord, expected: ModeRecord | None,
                     detail: dict[str, Any] | None = None) -> AuditEntry:
        """Set the mode only while the current record is still ``expected`` (compare and
        set, in one transaction); otherwise raise :class:`ModeChanged`. Restore uses it, so
        a containment made while it checked is never overwritten with ``full``."""
        ...

    def save_verdict(self, verdict: Verdict, actor: str) -> AuditEntry:
        """Store a verdict and append the audit entry, in one transaction.

        The store stamps ``verdict.audit_head`` with the log's last entry before the
        verdict's own, so the verdict anchors the log wherever a copy of it is kept.
        """
        ...

    def latest_verdict(self, agent: str) -> Verdict | None:
        """The agent's most recent verdict."""
        ...

    def latest_verdict_text(self, agent: str, back: int = 0) -> str | None:
        """The agent's most recent verdict as the store keeps it (its JSON text), without
        building the verdict model: ``check`` reads a few fields of it. With ``back``, the
        verdict that many before the most recent (None past the first)."""
        ...

    def latest_verdict_sha256(self, agent: str) -> str | None:
        """SHA-256 (hex) of the agent's most recent verdict's text as stored, else None.

        For a verdict this version stored it is :func:`verdict_digest` of
        :meth:`latest_verdict`, without reading megabytes of JSON back into a model.
        """
        ...

    def last_passing_verdict(self, agent: str,
                             before: datetime | None = None) -> Verdict | None:
        """The agent's most recent passing verdict, created before ``before`` when given."""
        ...

    def verdict_digests(self) -> list[tuple[str, str, str]]:
        """Agent, outcome and SHA-256 (hex) of the text of every stored verdict, oldest
        first: what ``audit verify`` compares with the verdict entries written beside them,
        without building a verdict model."""
        ...

    def append(self, *, actor: str, action: str, agent: str | None, reason: str,
               detail: dict[str, Any] | None = None) -> AuditEntry:
        """Append an audit entry for something recorded elsewhere (an incident file)."""
        ...

    def audit(self, agent: str | None = None, *, actions: Collection[str] | None = None,
              after: int = 0) -> list[AuditEntry]:
        """The audit log, oldest first, optionally only one agent's entries, only entries
        of ``actions`` and only entries numbered above ``after`` (filtered by the store,
        so a reader of a few entries does not read the whole log)."""
        ...

    def head(self) -> tuple[int, str] | None:
        """Number and hash of the last entry, as recorded apart from the log itself (so an
        entry removed from the end shows); None when the store never recorded one."""
        ...

    def held_checkpoint(self) -> tuple[int, str] | None:
        """Number and hash of the checkpoint entry (every entry up to it verified by
        content as the store wrote) when the log still starts at entry 1 and that entry
        still holds its hash, without reading what lies between: where a reader may start
        reading every entry, having read the agent's own of an action before it. A store
        may always answer None (a reader then reads, or verifies, the whole log)."""
        ...

    def linked_to(self, point: tuple[int, str]) -> bool:
        """Whether the log's numbers and links are whole from entry 1 to the entry
        ``point`` names (number, hash), that entry holding its hash: tested where the log
        is kept, no entry's text read. A store may always answer False (a decision then
        verifies the whole log)."""
        ...

    def tally(self, agent: str) -> tuple[tuple[int, str], Tally] | None:
        """Number and hash of the checkpoint, and what the store recorded with it of
        ``agent``'s entries a decision reads (:class:`~gates._store.chain_sql.Tally`), read
        together: ``check`` finds those it reads to be exactly these, each hashing to
        itself. None when the checkpoint records no tallies; a store may always answer
        None (a decision then verifies the whole log)."""
        ...

    def tallies(self) -> tuple[tuple[int, str] | None, dict[str, Tally | None]]:
        """Number and hash of the checkpoint when it records tallies (else None), and every
        agent's tally as stored (None for one that does not parse), read together: what
        ``reinstate audit verify`` compares with the whole log."""
        ...

    def add_review(self, submission: ReviewSubmission) -> ReviewItem:
        """Put a call or output in the review queue, pending, numbered by the store, with
        its ``review.submit`` audit entry, in one transaction."""
        ...

    def review(self, review: str) -> ReviewItem | None:
        """The review item of that id (``R-17``), or None."""
        ...

    def reviews(self, agent: str | None = None,
                status: ReviewStatus | None = "pending") -> list[ReviewItem]:
        """Review items oldest first, only ``agent``'s and only of ``status`` when given
        (None: every status)."""
        ...

    def decide_review(self, review: str, *, status: ReviewStatus, actor: str, reason: str,
                      edited_args: dict[str, Any] | None = None,
                      edited_text: str | None = None) -> ReviewItem:
        """Decide a pending item (compare and set) and append the decision's audit entry
        (``review.approve``, ``review.reject``, ``review.edit``, ``review.expire``), in one
        transaction.

        Raises:
            UnknownReview: no item has that id.
            ReviewDecided: the item is not pending any more; nothing was written.
        """
        ...


class MemoryStore:
    """A state store in memory, for tests and for embedding in another process."""

    def __init__(self) -> None:
        self._modes: dict[str, ModeRecord] = {}
        self._verdicts: list[Verdict] = []
        self._log: list[AuditEntry] = []
        self._reviews: dict[int, ReviewItem] = {}
        # A runtime waits on an item in one thread while a reviewer decides it in another.
        self._reviews_lock = threading.Lock()

    def mode(self, agent: str) -> ModeRecord | None:
        """The agent's recorded mode."""
        return self._modes.get(agent)

    def add_review(self, submission: ReviewSubmission) -> ReviewItem:
        """Queue the item and log it."""
        with self._reviews_lock:
            item = new_item(len(self._reviews) + 1, submission, utc_now())
            self._reviews[len(self._reviews) + 1] = item
            self.append(actor=item.source, action=SUBMIT_ACTION, agent=item.agent,
                        reason=item.reason, detail=submit_detail(item))
        return item

    def review(self, review: str) -> ReviewItem | None:
        """The item of that id."""
        number = review_number(review)
        with self._reviews_lock:
            return None if number is None else self._reviews.get(number)

    def reviews(self, agent: str | None = None,
                status: ReviewStatus | None = "pending") -> list[ReviewItem]:
        """Items oldest first, filtered."""
        with self._reviews_lock:
            return [i for _, i in sorted(self._reviews.items())
                    if (agent is None or i.agent == agent)
                    and (status is None or i.status == status)]

    def decide_review(self, review: str, *, status: ReviewStatus, actor: str, reason: str,
                      edited_args: dict[str, Any] | None = None,
                      edited_text: str | None = None) -> ReviewItem:
        """Decide a pending item and log it."""
        number = review_number(review)
        with self._reviews_lock:
            item = None if number is None else self._reviews.get(number)
            if item is None or number is None:
                raise UnknownReview(review, "the in-memory store")
            done = _decide(item, status=status, actor=actor, reason=reason,
                           edited_args=edited_args, edited_text=edited_text)
            self._reviews[number] = done
            self.append(actor=actor, action=DECISION_ACTIONS[status], agent=done.agent,
                        reason=reason, detail=decision_detail(done))
        return done

    def set_mode(self, record: ModeRecord, detail: dict[str, Any] | None = None) -> AuditEntry:
        """Set the mode and log it."""
        self._modes[record.agent] = record
        return self.append(actor=record.actor, action="mode", agent=record.agent,
                           reason=record.reason, detail={"mode": record.mode, **(detail or {})})

    def tighten_mode(self, record: ModeRecord,
                     detail: dict[str, Any] | None = None) -> tuple[AuditEntry, Mode]:
        """Set the mode unless the current one is stricter."""
        mode = _stricter(self._modes.get(record.agent), record.mode)
        return self.set_mode(record.model_copy(update={"mode": mode}), detail), mode

    def replace_mode(self, record: ModeRecord, expected: ModeRecord | None,
                     detail: dict[str, Any] | None = None) -> AuditEntry:
        """Set the mode while the current record is still ``expected``."""
        _expect(record.agent, self._modes.get(record.agent), expected)
        return self.set_mode(record, detail)

    def save_verdict(self, verdict: Verdict, actor: str) -> AuditEntry:
        """Keep the verdict and log it."""
        from gates._verdict.verdict import AuditHead

        last = self._log[-1] if self._log else None
        verdict.audit_head = AuditHead(seq=last.seq if last else 0,
                                       hash=last.hash if last else GENESIS)
        self._verdicts.append(verdict.model_copy(deep=True))
        return self.append(actor=actor, action="verdict", agent=verdict.agent,
                           reason=f"gate {verdict.outcome}", detail=_verdict_detail(verdict))

    def latest_verdict(self, agent: str) -> Verdict | None:
        """The agent's most recent verdict."""
        found = next((v for v in reversed(self._verdicts) if v.agent == agent), None)
        return None if found is None else found.model_copy(deep=True)

    def latest_verdict_text(self, agent: str, back: int = 0) -> str | None:
        """The agent's most recent verdict (``back`` before it) as JSON text."""
        mine = [v for v in reversed(self._verdicts) if v.agent == agent]
        return mine[back].stored_text() if back < len(mine) else None

    def latest_verdict_sha256(self, agent: str) -> str | None:
        """SHA-256 of the agent's most recent verdict as kept."""
        found = next((v for v in reversed(self._verdicts) if v.agent == agent), None)
        return None if found is None else verdict_digest(found)

    def last_passing_verdict(self, agent: str,
                             before: datetime | None = None) -> Verdict | None:
        """The agent's most recent passing verdict, created before ``before`` when given."""
        return next((v for v in reversed(self._verdicts)
                     if v.agent == agent and v.outcome == "pass"
                     and (before is None or v.created_at < before)), None)

    def verdict_digests(self) -> list[tuple[str, str, str]]:
        """Agent, outcome and digest of every verdict kept, oldest first."""
        return [(v.agent, v.outcome, verdict_digest(v)) for v in self._verdicts]

    def append(self, *, actor: str, action: str, agent: str | None, reason: str,
               detail: dict[str, Any] | None = None) -> AuditEntry:
        """Append an audit entry."""
        prev = self._log[-1].hash if self._log else GENESIS
        entry = _entry(len(self._log) + 1, prev, actor, action, agent, reason, detail or {})
        self._log.append(entry)
        return entry

    def audit(self, agent: str | None = None, *, actions: Collection[str] | None = None,
              after: int = 0) -> list[AuditEntry]:
        """The audit log, filtered."""
        return [e for e in self._log if (agent is None or e.agent == agent)
                and (actions is None or e.action in actions) and e.seq > after]

    def head(self) -> tuple[int, str] | None:
        """Number and hash of the last entry."""
        return (self._log[-1].seq, self._log[-1].hash) if self._log else None

    def held_checkpoint(self) -> tuple[int, str] | None:
        """None: entries in memory are read whole each time (there are few)."""
        return None

    def linked_to(self, point: tuple[int, str]) -> bool:
        """False: entries in memory are verified whole each time."""
        return False

    def tally(self, agent: str) -> tuple[tuple[int, str], Tally] | None:
        """None: entries in memory are verified whole each time."""
        return None

    def tallies(self) -> tuple[tuple[int, str] | None, dict[str, Tally | None]]:
        """None and none: entries in memory are verified whole each time."""
        return None, {}


def _verdict_detail(verdict: Verdict, body: str | None = None) -> dict[str, Any]:
    """The audit entry's detail for a verdict; ``body`` is its JSON as just stored, which
    spares serialising a verdict of thousands of cases a second time for its digest."""
    read = verdict._read_as_v1
    digest = (hashlib.sha256(body.encode()).hexdigest()
              if body is not None and (read is None or read[0] != body)
              else verdict_digest(verdict))
    return {
        "outcome": verdict.outcome,
        "fingerprint": {
            k: v for k, v in verdict.fingerprint.model_dump().items() if k != "files"
        },
        # The stored body's digest, so a verdict rewritten behind the log shows.
        "sha256": digest,
    }


def _stricter(current: ModeRecord | None, wanted: Mode) -> Mode:
    """``wanted``, unless the current mode is more restrictive."""
    if current is not None and MODES.index(current.mode) < MODES.index(wanted):
        return current.mode
    return wanted


def _expect(agent: str, current: ModeRecord | None, expected: ModeRecord | None) -> None:
    if current != expected:
        now = f"{current.mode} (set by {current.actor}: {current.reason})" if current else "unset"
        raise ModeChanged(agent, now)


def _decide(item: ReviewItem, *, status: ReviewStatus, actor: str, reason: str,
            edited_args: dict[str, Any] | None, edited_text: str | None) -> ReviewItem:
    """``item`` decided, if it is still pending (the compare of compare-and-set)."""
    if item.status != "pending":
        raise ReviewDecided(item.id, item.status, item.decided_by, item.decision_reason)
    if status == "pending":
        raise ValueError("a decision cannot leave an item pending")
    return decided(item, status=status, actor=actor, reason=reason, at=utc_now(),
                   edited_args=edited_args, edited_text=edited_text)


def verdict_digest(verdict: Verdict | StoredText) -> str:
    """SHA-256 of a verdict as the store keeps it (a version 1 verdict read unchanged: as
    version 1 kept it, so its audit entry and its signature still match)."""
    return hashlib.sha256(verdict.stored_text().encode()).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modes (
    agent TEXT PRIMARY KEY, mode TEXT NOT NULL, since TEXT NOT NULL,
    actor TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, created_at TEXT NOT NULL,
    outcome TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS verdicts_by_agent ON verdicts (agent, id);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    agent TEXT, reason TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL);
"""
# The review queue: added to stores made before it, by the first write that queues an item
# (an additive table: the schema version, which older readers check, stays as it was).
_REVIEWS = (
    "CREATE TABLE IF NOT EXISTS reviews (num INTEGER PRIMARY KEY, agent TEXT NOT NULL, "
    "status TEXT NOT NULL, submitted_at TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS reviews_by_status ON reviews (status, agent, num)",
)
_VERSION = "1"
_AUDIT_COLUMNS = f"SELECT {AUDIT_COLUMNS} FROM audit"


class _SQLStore:
    """What the SQLite and the PostgreSQL store share: every operation one transaction on
    the subclass's connection, every row read back checked. Only their SQL differs, so a
    subclass gives ``display``, ``_reading``/``_writing`` (a connection in a transaction)
    and ``_mode``/``_set_mode``/``_append`` (the statements).

    The review queue's SQL is shared outright: only the placeholder (``_P``), the tables'
    schema (``_T``) and how a store without the reviews table gets one
    (``_has_reviews``/``_add_reviews``) differ."""

    _P = "?"
    _T = ""

    @property
    def display(self) -> str:
        """Where the store is, as messages show it."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether the store was ever written (reads never create it)."""
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _writing(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _mode(self, conn: Any, agent: str) -> ModeRecord | None:
        raise NotImplementedError

    def _set_mode(self, conn: Any, record: ModeRecord,
                  detail: dict[str, Any] | None) -> AuditEntry:
        raise NotImplementedError

    def _append(self, conn: Any, *, actor: str, action: str, agent: str | None,
                reason: str, detail: dict[str, Any]) -> AuditEntry:
        raise NotImplementedError

    def mode(self, agent: str) -> ModeRecord | None:
        """The agent's recorded mode."""
        with self._reading() as conn:
            return self._mode(conn, agent)

    def _has_reviews(self, conn: Any) -> bool:
        raise NotImplementedError

    def _add_reviews(self, conn: Any) -> None:
        raise NotImplementedError

    def add_review(self, submission: ReviewSubmission) -> ReviewItem:
        """Queue the item and log it, in one transaction (writers take turns, so the
        number read is the one written)."""
        p, t = self._P, self._T
        with self._writing() as conn:
            if not self._has_reviews(conn):
                self._add_reviews(conn)
            # Numbered past every item ever queued: a row deleted behind the store does not
            # give its id out again (the high-water mark is kept beside the rows).
            row = conn.execute(f"SELECT COALESCE(MAX(num), 0) FROM {t}reviews").fetchone()
            issued = conn.execute(f"SELECT value FROM {t}meta WHERE key = 'reviews_issued'"
                                  ).fetchone()
            mark = issued[0] if issued else ""
            # Only a count as written here: a value edited into other text ("²" is a digit
            # to isdigit, not to int) or past SQLite's integers is no mark, as a deleted one.
            number = max(int(row[0]), int(mark) if isinstance(mark, str) and mark.isascii()
                         and mark.isdigit() and len(mark) <= 18 else 0) + 1
            item = new_item(number, submission, utc_now())
            conn.execute(f"INSERT INTO {t}reviews (num, agent, status, submitted_at, body) "
                         f"VALUES ({p}, {p}, {p}, {p}, {p})",
                         (number, item.agent, item.status,
                          item.submitted_at.isoformat(), item.model_dump_json()))
            self._set_meta(conn, "reviews_issued", str(number))
            self._append(conn, actor=item.source, action=SUBMIT_ACTION, agent=item.agent,
                         reason=item.reason, detail=submit_detail(item))
        return item

    def review(self, review: str) -> ReviewItem | None:
        """The item of that id."""
        number = review_number(review)
        if number is None:
            return None
        with self._reading() as conn:
            if not self._has_reviews(conn):
                return None
            row = conn.execute(f"SELECT num, body FROM {self._T}reviews WHERE num = {self._P}",
                               (number,)).fetchone()
        return None if row is None else self._review(row)

    def reviews(self, agent: str | None = None,
                status: ReviewStatus | None = "pending") -> list[ReviewItem]:
        """Items oldest first, filtered in SQL."""
        where, values = ["1 = 1"], []
        if agent is not None:
            where.append(f"agent = {self._P}")
            values.append(agent)
        if status is not None:
            where.append(f"status = {self._P}")
            values.append(status)
        with self._reading() as conn:
            if not self._has_reviews(conn):
                return []  # a store made before the queue: nothing was ever queued
            rows = conn.execute(f"SELECT num, body FROM {self._T}reviews WHERE "
                                f"{' AND '.join(where)} ORDER BY num", values).fetchall()
        return [self._review(row) for row in rows]

    def decide_review(self, review: str, *, status: ReviewStatus, actor: str, reason: str,
                      edited_args: dict[str, Any] | None = None,
                      edited_text: str | None = None) -> ReviewItem:
        """Decide a pending item and log it, in one transaction: the row is updated only
        while it is still pending, so of two deciders exactly one wins."""
        p, t = self._P, self._T
        number = review_number(review)
        with self._writing() as conn:
            row = None
            if number is not None and self._has_reviews(conn):
                row = conn.execute(f"SELECT num, body FROM {t}reviews WHERE num = {p}",
                                   (number,)).fetchone()
            if row is None:
                raise UnknownReview(review, self.display)
            done = _decide(self._review(row), status=status, actor=actor, reason=reason,
                           edited_args=edited_args, edited_text=edited_text)
            changed = conn.execute(
                f"UPDATE {t}reviews SET status = {p}, body = {p} WHERE num = {p} AND "
                f"status = 'pending'", (done.status, done.model_dump_json(), number))
            if changed.rowcount != 1:  # decided in between: never two decisions of one item
                raise ReviewDecided(done.id, "decided", None, None)
            self._append(conn, actor=actor, action=DECISION_ACTIONS[status], agent=done.agent,
                         reason=reason, detail=decision_detail(done))
        return done

    def _review(self, row: tuple[Any, ...]) -> ReviewItem:
        try:
            item = ReviewItem.model_validate_json(row[1])
        except ValueError as exc:  # not JSON, or not an item (pydantic)
            raise self._garbled(f"review item {row[0]}", exc) from None
        if review_number(item.id) != row[0]:
            raise self._garbled(f"review item {row[0]}",
                                ValueError(f"its body names {item.id}"))
        return item

    def _garbled(self, what: str, exc: Exception) -> StoreUnavailable:
        """A row the store never writes: someone edited the database by hand."""
        reason = (exc.errors()[0]["msg"] if isinstance(exc, ValidationError) and exc.errors()
                  else str(exc))
        return StoreUnavailable(f"state store {self.display}: {what} is not as reinstate "
                                f"writes it ({reason[:200]}): the database was edited; "
                                f"restore it from a backup")

    def set_mode(self, record: ModeRecord, detail: dict[str, Any] | None = None) -> AuditEntry:
        """Set the mode and log it, in one transaction."""
        with self._writing() as conn:
            return self._set_mode(conn, record, detail)

    def tighten_mode(self, record: ModeRecord,
                     detail: dict[str, Any] | None = None) -> tuple[AuditEntry, Mode]:
        """Set the mode unless the current one is stricter, in one transaction."""
        with self._writing() as conn:
            mode = _stricter(self._mode(conn, record.agent), record.mode)
            entry = self._set_mode(conn, record.model_copy(update={"mode": mode}), detail)
            return entry, mode

    def replace_mode(self, record: ModeRecord, expected: ModeRecord | None,
                     detail: dict[str, Any] | None = None) -> AuditEntry:
        """Set the mode while the current record is still ``expected``, in one transaction."""
        with self._writing() as conn:
            _expect(record.agent, self._mode(conn, record.agent), expected)
            return self._set_mode(conn, record, detail)

    def _verdict(self, body: str, agent: str) -> Verdict:
        from gates._verdict.verdict import read_verdict

        try:
            return read_verdict(body)  # a version 1 verdict is upgraded as it is read
        except (ValueError, RecursionError) as exc:  # not JSON, or not a verdict (pydantic)
            raise self._garbled(f"a stored verdict of {agent}", exc) from None

    def append(self, *, actor: str, action: str, agent: str | None, reason: str,
               detail: dict[str, Any] | None = None) -> AuditEntry:
        """Append an audit entry."""
        with self._writing() as conn:
            return self._append(conn, actor=actor, action=action, agent=agent, reason=reason,
                                detail=detail or {})

    def _advance_checkpoint(self, conn: Any) -> None:
        """Verify by content every entry after the checkpoint (usually only the one just
        written), count each into its agent's tally and move the checkpoint to the last,
        in the write's transaction. A checkpoint that records no tallies (a store made
        before them), or a tally that does not parse, is set again from the log's first
        entry. Entries that do not verify (written or changed behind the store) leave the
        checkpoint and the tallies where they are, so every reader verifies them again; a
        write never fails for it (a containment must always be recorded)."""
        p, t = self._P, self._T
        row = conn.execute(f"SELECT value FROM {t}meta WHERE key = 'audit_checkpoint'"
                           ).fetchone()
        stored = None if row is None else parse_checkpoint(row[0])
        entries: list[AuditEntry] | None = None
        held: dict[str, Tally | None] = {}
        if stored is not None and stored[2]:
            entries = self._verified_after(conn, (stored[0], stored[1]))
            if entries is None:
                return
            held = self._tallies(conn, _tallied_agents(entries))
        if entries is None or None in held.values():
            entries = self._verified_after(conn, (0, GENESIS))  # counted again, from 1
            if entries is None:
                return
            conn.execute(f"DELETE FROM {t}meta WHERE substr(key, 1, {len(TALLY_PREFIX)}) "
                         f"= {p}", (TALLY_PREFIX,))
            held = {}
        tallies = {agent: held.get(agent) or Tally() for agent in _tallied_agents(entries)}
        for entry in entries:
            if entry.agent in tallies:
                tallies[entry.agent] = tallies[entry.agent].counted(entry.seq, entry.action,
                                                                    entry.hash)
        for agent, tally in tallies.items():
            self._set_meta(conn, tally_key(agent), tally.dumps())
        self._set_meta(conn, "audit_checkpoint",
                       dump_checkpoint(entries[-1].seq, entries[-1].hash))

    def _set_meta(self, conn: Any, key: str, value: str) -> None:
        """Write one of the store's metadata values, in the caller's transaction."""
        conn.execute(f"INSERT INTO {self._T}meta VALUES ({self._P}, {self._P}) ON CONFLICT "
                     f"(key) DO UPDATE SET value = excluded.value", (key, value))

    def _verified_after(self, conn: Any, point: tuple[int, str]) -> list[AuditEntry] | None:
        """The entries after ``point``, when there are some and every one verifies by
        content and follows the one before; else None."""
        raw = conn.execute(f"SELECT {AUDIT_COLUMNS} FROM {self._T}audit WHERE seq > "
                           f"{self._P} ORDER BY seq", (point[0],)).fetchall()
        try:
            entries = [self._audit_entry(r) for r in raw]
        except StoreUnavailable:
            return None
        if not entries or verify_chain(entries, after=point):
            return None
        return entries

    def _tallies(self, conn: Any, agents: list[str]) -> dict[str, Tally | None]:
        """The stored tallies of ``agents`` (one never stored: an empty tally; one that does
        not parse: None)."""
        if not agents:
            return {}
        rows = dict(conn.execute(
            f"SELECT key, value FROM {self._T}meta WHERE key IN "
            f"({', '.join([self._P] * len(agents))})",
            [tally_key(a) for a in agents]).fetchall())
        return {a: Tally() if tally_key(a) not in rows else parse_tally(rows[tally_key(a)])
                for a in agents}

    def tally(self, agent: str) -> tuple[tuple[int, str], Tally] | None:
        """The checkpoint and ``agent``'s tally, read in one statement
        (:func:`~gates._store.chain_sql.tally_as_of`)."""
        with self._reading() as conn:
            rows = dict(conn.execute(
                f"SELECT key, value FROM {self._T}meta WHERE key IN ('audit_checkpoint', "
                f"{self._P})", (tally_key(agent),)).fetchall())
        return tally_as_of(rows.get("audit_checkpoint"), rows.get(tally_key(agent)))

    def tallies(self) -> tuple[tuple[int, str] | None, dict[str, Tally | None]]:
        """The checkpoint and every tally, read in one statement."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT key, value FROM {self._T}meta WHERE key = 'audit_checkpoint' OR "
                f"substr(key, 1, {len(TALLY_PREFIX)}) = {self._P}", (TALLY_PREFIX,)).fetchall()
        return stored_tallies([(str(k), str(v)) for k, v in rows])

    def _audit_entry(self, row: tuple[Any, ...]) -> AuditEntry:
        try:
            return AuditEntry(seq=row[0], at=row[1], actor=row[2], action=row[3], agent=row[4],
                              reason=row[5], detail=json.loads(row[6]), prev_hash=row[7],
                              hash=row[8])
        except (ValueError, TypeError, RecursionError) as exc:  # JSON and pydantic errors
            raise self._garbled(f"audit entry {row[0]}", exc) from None

    @staticmethod
    def _head(value: object) -> tuple[int, str]:
        """The stored head ``seq:hash``; one that does not parse as a number is -1, so it
        never matches the log."""
        seq, _, digest = str(value).partition(":")
        return (int(seq), digest) if seq.isdigit() and len(seq) < 19 else (-1, str(value))


class SQLiteStore(_SQLStore):
    """The default state store: one SQLite file, every write one transaction.

    Reads never create the file; the first write does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def display(self) -> str:
        """The file's path."""
        return str(self.path)

    def exists(self) -> bool:
        """Whether the file was made (by a first write)."""
        return self.path.exists()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            raise StoreUnavailable(f"no state store at {self.path}")
        self._refuse_empty()
        try:
            with closing(sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                         timeout=lock_timeout())) as conn:
                self._check_version(conn)
                yield conn
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read the state store {self.path}: {exc}") from None

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        try:
            if not self.path.exists():
                self._create()
            else:
                self._refuse_empty()
            with closing(sqlite3.connect(self.path, timeout=lock_timeout(),
                                         isolation_level=None)) as conn:
                self._check_version(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    # SQLite rolls back by itself on some errors (a full disk): a second
                    # ROLLBACK would fail and hide what went wrong.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot write the state store {self.path}: {exc}") from None

    def _refuse_empty(self) -> None:
        """Never a fresh start: a store reinstate made is never empty, so an empty one was
        truncated, and starting it again would lose its history (containments, verdicts)."""
        if self.path.stat().st_size == 0:
            raise StoreUnavailable(
                f"the state store {self.path} is empty (0 bytes): it was truncated and its "
                f"history is gone; restore it from a backup (delete it only to start a new "
                f"store on purpose)")

    def _create(self) -> None:
        """Make the store whole beside it, then link it into place: no process ever sees
        a half-made store at the path (an empty file there means a truncated store)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        fresh.unlink(missing_ok=True)
        try:
            with closing(sqlite3.connect(fresh, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                for statement in (*_REVIEWS, *INDEXES):
                    conn.execute(statement)
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (_VERSION,))
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(fresh, self.path)
        finally:
            fresh.unlink(missing_ok=True)

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != _VERSION:
            raise StoreUnavailable(
                f"state store {self.path} has schema version {row[0] if row else 'none'}, "
                f"expected {_VERSION}"
            )

    def create(self) -> None:
        """Create the store if it does not exist yet."""
        with self._writing():
            pass

    def _has_reviews(self, conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'reviews'").fetchone() is not None

    def _add_reviews(self, conn: sqlite3.Connection) -> None:
        # One statement at a time: executescript would commit the open transaction.
        for statement in _REVIEWS:
            conn.execute(statement)

    def _mode(self, conn: sqlite3.Connection, agent: str) -> ModeRecord | None:
        row = conn.execute(
            "SELECT agent, mode, since, actor, reason FROM modes WHERE agent = ?", (agent,)
        ).fetchone()
        if row is None:
            return None
        try:
            return ModeRecord(agent=row[0], mode=row[1], since=row[2], actor=row[3],
                              reason=row[4])
        except ValidationError as exc:
            raise self._garbled(f"the modes row of {agent}", exc) from None

    def _set_mode(self, conn: sqlite3.Connection, record: ModeRecord,
                  detail: dict[str, Any] | None) -> AuditEntry:
        conn.execute(
            "INSERT INTO modes VALUES (?, ?, ?, ?, ?) ON CONFLICT(agent) DO UPDATE SET "
            "mode = excluded.mode, since = excluded.since, actor = excluded.actor, "
            "reason = excluded.reason",
            (record.agent, record.mode, record.since.isoformat(), record.actor, record.reason),
        )
        return self._append(conn, actor=record.actor, action="mode", agent=record.agent,
                            reason=record.reason, detail={"mode": record.mode, **(detail or {})})

    def save_verdict(self, verdict: Verdict, actor: str) -> AuditEntry:
        """Store the verdict, stamped with the log's head, and log it, in one transaction."""
        from gates._verdict.verdict import AuditHead

        with self._writing() as conn:
            seq, prev = self._last(conn)
            verdict.audit_head = AuditHead(seq=seq, hash=prev)
            body = verdict.model_dump_json()
            # A verdict of thousands of cases is megabytes of overflow pages: a small page
            # cache spills them to the log as they are written instead of holding 2 MB of
            # them beside the text and SQLite's copy of it (this connection only).
            conn.execute("PRAGMA cache_size = -256")
            conn.execute(
                "INSERT INTO verdicts (agent, created_at, outcome, body) VALUES (?, ?, ?, ?)",
                (verdict.agent, verdict.created_at.isoformat(), verdict.outcome, body),
            )
            return self._append(conn, actor=actor, action="verdict", agent=verdict.agent,
                                reason=f"gate {verdict.outcome}",
                                detail=_verdict_detail(verdict, body))

    def latest_verdict(self, agent: str) -> Verdict | None:
        """The agent's most recent verdict."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT body FROM verdicts WHERE agent = ? ORDER BY id DESC LIMIT 1", (agent,)
            ).fetchone()
        return None if row is None else self._verdict(row[0], agent)

    def latest_verdict_text(self, agent: str, back: int = 0) -> str | None:
        """The agent's most recent verdict (``back`` before it) as the store keeps it."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT body FROM verdicts WHERE agent = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                (agent, back),
            ).fetchone()
        return None if row is None else str(row[0])

    def latest_verdict_sha256(self, agent: str) -> str | None:
        """SHA-256 of the agent's most recent stored verdict text (SQLite has no SHA-256
        of its own: the text is hashed here, never parsed).

        The text's UTF-8 bytes (the store's encoding) are read through SQLite's blob
        handle a slice at a time, with a small page cache: the gate asks this at its end,
        and megabytes of text read whole beside its verdict were its peak.
        """
        with self._reading() as conn:
            row = conn.execute(
                "SELECT id FROM verdicts WHERE agent = ? ORDER BY id DESC LIMIT 1", (agent,)
            ).fetchone()
            if row is None:
                return None
            conn.execute("PRAGMA cache_size = -256")
            digest = hashlib.sha256()
            with conn.blobopen("verdicts", "body", row[0], readonly=True) as blob:
                while chunk := blob.read(1 << 16):
                    digest.update(chunk)
            return digest.hexdigest()

    def verdict_digests(self) -> list[tuple[str, str, str]]:
        """Agent, outcome and SHA-256 of the text of every stored verdict, oldest first.

        Each text is read through SQLite's blob handle a slice at a time (as
        :meth:`latest_verdict_sha256` reads one), never parsed: a long history of verdicts
        of thousands of cases is never held at once.
        """
        with self._reading() as conn:
            rows = conn.execute("SELECT id, agent, outcome FROM verdicts ORDER BY id").fetchall()
            conn.execute("PRAGMA cache_size = -256")
            found = []
            for number, agent, outcome in rows:
                digest = hashlib.sha256()
                with conn.blobopen("verdicts", "body", number, readonly=True) as blob:
                    while chunk := blob.read(1 << 16):
                        digest.update(chunk)
                found.append((str(agent), str(outcome), digest.hexdigest()))
            return found

    def last_passing_verdict(self, agent: str,
                             before: datetime | None = None) -> Verdict | None:
        """The agent's most recent passing verdict, created before ``before`` when given."""
        with self._reading() as conn:
            # Newest first, compared as datetimes in Python: stored texts may carry any offset.
            rows = conn.execute(
                "SELECT body FROM verdicts WHERE agent = ? AND outcome = 'pass' ORDER BY id DESC",
                (agent,),
            )
            for (body,) in rows:
                verdict = self._verdict(body, agent)
                if before is None or verdict.created_at < before:
                    return verdict
        return None

    def _append(self, conn: sqlite3.Connection, *, actor: str, action: str, agent: str | None,
                reason: str, detail: dict[str, Any]) -> AuditEntry:
        seq, prev = self._last(conn)
        entry = _entry(seq + 1, prev, actor, action, agent, reason, detail)
        conn.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, entry.at.isoformat(), entry.actor, entry.action, entry.agent,
             entry.reason, json.dumps(entry.detail, sort_keys=True, default=str),
             entry.prev_hash, entry.hash),
        )
        # The head, kept apart from the log in the same transaction: a removed last entry
        # leaves the log shorter than its head.
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit_head', ?)",
                     (f"{entry.seq}:{entry.hash}",))
        self._advance_checkpoint(conn)
        return entry

    def _advance_checkpoint(self, conn: Any) -> None:
        """The shared advance, once stores made before the indexes have them."""
        for statement in INDEXES:  # stores made before the indexes get them here, once
            conn.execute(statement)
        super()._advance_checkpoint(conn)

    def held_checkpoint(self) -> tuple[int, str] | None:
        """The checkpoint, if the log still starts at entry 1 and its entry still holds
        its hash (:func:`chain_sql.held_checkpoint`)."""
        with self._reading() as conn:
            return chain_sql.held_checkpoint(conn)

    def linked_to(self, point: tuple[int, str]) -> bool:
        """Whether the log is numbered and linked from entry 1 to ``point``, tested over an
        index without reading any entry's text (:func:`chain_sql.linked_to`)."""
        with self._reading() as conn:
            return chain_sql.linked_to(conn, *point)

    @staticmethod
    def _last(conn: sqlite3.Connection) -> tuple[int, str]:
        """Number and hash of the log's last entry; 0 and zeros for an empty log."""
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def audit(self, agent: str | None = None, *, actions: Collection[str] | None = None,
              after: int = 0) -> list[AuditEntry]:
        """The audit log, oldest first, filtered in SQL."""
        where: list[str] = ["seq > ?"]
        values: list[object] = [after]
        if agent is not None:
            where.append("agent = ?")
            values.append(agent)
        if actions is not None:
            chosen = sorted(actions)
            where.append(f"action IN ({', '.join('?' * len(chosen))})")
            values += chosen
        with self._reading() as conn:
            rows = conn.execute(f"{_AUDIT_COLUMNS} WHERE {' AND '.join(where)} ORDER BY seq",
                                values).fetchall()
        return [self._audit_entry(r) for r in rows]

    def head(self) -> tuple[int, str] | None:
        """Number and hash of the last entry, from the store's metadata."""
        with self._reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        return None if row is None else self._head(row[0])


def _tallied_agents(entries: list[AuditEntry]) -> list[str]:
    """The agents whose tallies ``entries`` change."""
    return sorted({e.agent for e in entries
                   if e.agent is not None and e.action in TALLIED})


def verify_chain(entries: list[AuditEntry], *,
                 after: tuple[int, str] = (0, GENESIS)) -> list[str]:
    """Problems with an audit log: gaps in numbering, broken links, edited entries.

    ``after`` is the number and hash of the entry the first of ``entries`` follows (a
    checkpoint); by default the log's start.
    """
    problems = []
    start, prev = after
    for expected_seq, entry in enumerate(entries, start=start + 1):
        if entry.seq != expected_seq:
            problems.append(f"entry {entry.seq}: expected number {expected_seq} (removed or "
                            f"reordered)")
        if entry.prev_hash != prev:
            problems.append(f"entry {entry.seq}: does not follow the entry before it")
        digest = entry_hash(entry.seq, entry.at, entry.actor, entry.action, entry.agent,
                            entry.reason, entry.detail, entry.prev_hash)
        if digest != entry.hash:
            problems.append(f"entry {entry.seq}: content was changed after it was written")
        prev = entry.hash
    return problems
