"""The state store on a PostgreSQL server, for teams whose CI runners, deploy jobs and agent
runtimes are different machines.

It keeps what :class:`~gates._store.backends.SQLiteStore` keeps (modes, verdicts, the
hash-chained audit log and its head), passes the same contract, and adds what a server can
enforce: the audit log and the verdicts are append-only in the database (triggers refuse
UPDATE, DELETE and TRUNCATE), an entry that does not follow the last one is refused, and
every mode change sends a ``NOTIFY`` in its own transaction, so a follower hears of a
containment the moment it commits.

Every write is one transaction that first locks the audit table against other writers
(readers are not blocked): numbering, compare-and-set and the head are read and written
with no other writer in between, across any number of machines.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from pydantic import ValidationError

from gates._errors import StoreUnavailable
from gates._store.backends import (
    AuditEntry,
    ModeRecord,
    _entry,
    _SQLStore,
    _verdict_detail,
    lock_timeout,
)
from gates._store.chain_sql import AUDIT_COLUMNS, GENESIS
from gates._store.shared_reads import drop, keep, shared
from gates._verdict.verdict import AuditHead, Verdict

# A decision's read connection idle longer than this is not used again: a server or a
# network in between may end an idle connection, and a decision's reads are milliseconds
# apart (one that waits longer, on a lock or a slow file, connects again).
SHARED_IDLE_S = 5.0


@dataclass
class _Kept:
    """A decision's read connection and when it was last used."""

    conn: psycopg.Connection[Any]
    used: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.conn.close()


# The channel every mode change is announced on (``reinstate mode AGENT --follow``).
MODE_CHANNEL = "reinstate_mode"
SCHEMA = "reinstate"
_VERSION = "1"
# Seconds to wait for the server to answer a connection attempt.
CONNECT_TIMEOUT_S = 10
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_TABLES = """
CREATE SCHEMA IF NOT EXISTS reinstate;
CREATE TABLE reinstate.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE reinstate.modes (
    agent TEXT PRIMARY KEY, mode TEXT NOT NULL, since TEXT NOT NULL,
    actor TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE reinstate.verdicts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, agent TEXT NOT NULL,
    created_at TEXT NOT NULL, outcome TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX verdicts_by_agent ON reinstate.verdicts (agent, id);
-- Times and details are kept as the text the chain hash was computed over, so the log
-- reads back exactly as it was written (and as a migrated SQLite log was written).
CREATE TABLE reinstate.audit (
    seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    agent TEXT, reason TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL);
CREATE INDEX audit_by_agent ON reinstate.audit (agent, seq);
CREATE INDEX audit_by_agent_action ON reinstate.audit (agent, action, seq);

CREATE FUNCTION reinstate.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reinstate.%: % refused: the table is append-only', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON reinstate.audit
    FOR EACH ROW EXECUTE FUNCTION reinstate.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON reinstate.audit
    FOR EACH STATEMENT EXECUTE FUNCTION reinstate.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON reinstate.verdicts
    FOR EACH ROW EXECUTE FUNCTION reinstate.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON reinstate.verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION reinstate.refuse_change();

-- An entry must take the next number and link to the last entry's hash.
CREATE FUNCTION reinstate.audit_follows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE last_seq BIGINT; last_hash TEXT;
BEGIN
    SELECT seq, hash INTO last_seq, last_hash FROM reinstate.audit ORDER BY seq DESC LIMIT 1;
    IF NEW.seq <> COALESCE(last_seq, 0) + 1
       OR NEW.prev_hash <> COALESCE(last_hash, repeat('0', 64)) THEN
        RAISE EXCEPTION 'reinstate.audit: entry % does not follow entry % refused',
            NEW.seq, COALESCE(last_seq, 0);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chained BEFORE INSERT ON reinstate.audit
    FOR EACH ROW EXECUTE FUNCTION reinstate.audit_follows();
"""

# The review queue (made with the other tables, or by the first write that queues an item
# in a store made before it). The server enforces compare-and-set too: a decided item is
# never changed again, and no item is removed.
_REVIEWS = """
CREATE TABLE reinstate.reviews (
    num BIGINT PRIMARY KEY, agent TEXT NOT NULL, status TEXT NOT NULL,
    submitted_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX reviews_by_status ON reinstate.reviews (status, agent, num);
CREATE FUNCTION reinstate.review_decided_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'reinstate.reviews: DELETE refused: review items are kept';
    END IF;
    IF OLD.status <> 'pending' OR NEW.num <> OLD.num OR NEW.agent <> OLD.agent
       OR NEW.submitted_at <> OLD.submitted_at THEN
        RAISE EXCEPTION 'reinstate.reviews: item % was decided (%) or renumbered: refused',
            OLD.num, OLD.status;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER decided_once BEFORE UPDATE OR DELETE ON reinstate.reviews
    FOR EACH ROW EXECUTE FUNCTION reinstate.review_decided_once();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON reinstate.reviews
    FOR EACH STATEMENT EXECUTE FUNCTION reinstate.refuse_change();
"""


# An agent's entries of one action one index range away (a check reads its containments and
# approvals before the checkpoint, not its verdict entries, one a gate): made with the other
# tables, and by the next write of a store made before it.
_BY_ACTION = ("CREATE INDEX IF NOT EXISTS audit_by_agent_action ON reinstate.audit "
              "(agent, action, seq)")


def masked(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages and output."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://…"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def expand(url: str, where: str) -> str:
    """``url`` with each ``${NAME}`` replaced by that environment variable, percent-encoded
    (a password may hold ``@`` or ``/``). ``where`` names the setting in messages.

    Raises:
        StoreUnavailable: a variable is not set (the store cannot be used here).
    """
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            raise StoreUnavailable(f"{where}: expected the environment variable {name} to be "
                                   f"set (the state store URL uses ${{{name}}})")
        return quote(found, safe="")
    return _VARIABLE.sub(value, url)


class PostgresStore(_SQLStore):
    """The state store on a PostgreSQL server: ``[state] url = "postgresql://…"``.

    ``url`` may hold ``${NAME}`` placeholders, filled from the environment when the store
    is used (so a password stays out of ``reinstate.toml``); libpq's own variables
    (``PGPASSWORD``, ``PGSSLMODE``, …) apply too. Messages never show the password.
    Reads never create the tables; the first write does.
    """

    _P = "%s"
    _T = "reinstate."

    def __init__(self, url: str, where: str = "[state] url") -> None:
        self.url = url
        self.where = where

    @property
    def display(self) -> str:
        """The URL as messages show it: placeholders kept, any password masked."""
        return masked(self.url)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(expand(self.url, self.where), autocommit=True,
                               connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="reinstate")

    def _problem(self, verb: str, exc: psycopg.Error) -> StoreUnavailable:
        text = " ".join(str(exc).split()) or type(exc).__name__
        password = urlsplit(expand(self.url, self.where)).password if "@" in self.url else None
        if password:
            text = text.replace(password, "***")
        return StoreUnavailable(f"cannot {verb} the state store {self.display}: {text[:300]}")

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection to read with: the one the current decision shares
        (:mod:`gates._store.shared_reads`), else one of its own, closed after."""
        key = ("postgresql", self.url)
        try:
            kept = self._kept(key)
            if kept is None:
                conn = self._connect()
                try:
                    self._readable(conn)
                except BaseException:
                    conn.close()
                    raise
                kept = _Kept(conn)
                if not keep(key, kept):
                    with conn:
                        yield conn
                    return
            try:
                yield kept.conn
            finally:
                kept.used = time.monotonic()
        except psycopg.Error as exc:
            self._kept(key)  # one the error broke is dropped: the next read connects again
            raise self._problem("read", exc) from None

    @staticmethod
    def _kept(key: tuple[str, str]) -> _Kept | None:
        """The decision's connection to this store, while it is open and was used lately;
        else None (and one that broke or idled is closed)."""
        kept = shared(key)
        if kept is None:
            return None
        assert isinstance(kept, _Kept)
        if (kept.conn.closed or kept.conn.broken
                or time.monotonic() - kept.used > SHARED_IDLE_S):
            drop(key)
            return None
        return kept

    def _readable(self, conn: psycopg.Connection[Any]) -> None:
        if not self._exists(conn):
            raise StoreUnavailable(f"no state store at {self.display} (the database has no "
                                   f"{SCHEMA} tables): run `reinstate init`, or `reinstate "
                                   f"store migrate` to bring a store's history there")
        self._check_version(conn)

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._connect() as conn:
                if not self._exists(conn):
                    self._create(conn)
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{int(lock_timeout() * 1000)}ms")))
                    # One writer at a time; plain reads (ACCESS SHARE) are not blocked.
                    conn.execute("LOCK TABLE reinstate.audit IN SHARE ROW EXCLUSIVE MODE")
                    self._check_version(conn)
                    yield conn
        except psycopg.Error as exc:
            raise self._problem("write", exc) from None

    @staticmethod
    def _exists(conn: psycopg.Connection[Any]) -> bool:
        # The catalog read as a query, with the statement's own snapshot: to_regclass looks
        # in the session's catalog cache, which can still miss tables another process made
        # and committed while this one waited for the creation lock.
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'reinstate' AND c.relname = 'meta')"
        ).fetchone()
        return bool(row and row[0])

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        """Make every table in one transaction, once even when processes race to it."""
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('reinstate.create'))")
                if self._exists(conn):
                    return
                conn.execute(_TABLES)
                conn.execute(_REVIEWS)
                conn.execute("INSERT INTO reinstate.meta VALUES ('schema_version', %s)",
                             (_VERSION,))
        except (psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject,
                psycopg.errors.UniqueViolation):
            if not self._exists(conn):  # another process made them first: use those
                raise

    @staticmethod
    def _has_reviews(conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'reinstate' AND c.relname = "
            "'reviews')").fetchone()
        return bool(row and row[0])

    @staticmethod
    def _add_reviews(conn: psycopg.Connection[Any]) -> None:
        # Inside a write: the audit lock it holds makes this the only writer adding it.
        conn.execute(_REVIEWS)

    def _check_version(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            "SELECT value FROM reinstate.meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != _VERSION:
            raise StoreUnavailable(
                f"state store {self.display} has schema version {row[0] if row else 'none'}, "
                f"expected {_VERSION}")

    def exists(self) -> bool:
        """Whether the database holds a state store (its tables were made). Within a
        decision, the connection that found one is the one its reads share."""
        key = ("postgresql", self.url)
        if self._kept(key) is not None:
            return True  # kept only once it was found to hold one
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise self._problem("read", exc) from None
        kept = False
        try:
            found = self._exists(conn)
            if found:
                self._check_version(conn)
                kept = keep(key, _Kept(conn))
        except StoreUnavailable:
            pass  # another version: it exists, and its reads say what is wrong with it
        except psycopg.Error as exc:
            raise self._problem("read", exc) from None
        finally:
            if not kept:
                conn.close()
        return found

    def create(self) -> None:
        """Create the store's tables if they do not exist yet."""
        with self._writing():
            pass

    def _mode(self, conn: psycopg.Connection[Any], agent: str) -> ModeRecord | None:
        row = conn.execute("SELECT agent, mode, since, actor, reason FROM reinstate.modes "
                           "WHERE agent = %s", (agent,)).fetchone()
        if row is None:
            return None
        try:
            return ModeRecord(agent=row[0], mode=row[1], since=row[2], actor=row[3],
                              reason=row[4])
        except ValidationError as exc:
            raise self._garbled(f"the modes row of {agent}", exc) from None

    def _set_mode(self, conn: psycopg.Connection[Any], record: ModeRecord,
                  detail: dict[str, Any] | None) -> AuditEntry:
        conn.execute(
            "INSERT INTO reinstate.modes VALUES (%s, %s, %s, %s, %s) ON CONFLICT (agent) DO "
            "UPDATE SET mode = excluded.mode, since = excluded.since, actor = excluded.actor, "
            "reason = excluded.reason",
            (record.agent, record.mode, record.since.isoformat(), record.actor, record.reason))
        entry = self._append(conn, actor=record.actor, action="mode", agent=record.agent,
                             reason=record.reason,
                             detail={"mode": record.mode, **(detail or {})})
        # Delivered to every listener when (and only if) this transaction commits.
        conn.execute("SELECT pg_notify(%s, %s)", (MODE_CHANNEL, json.dumps(
            {"agent": record.agent, "mode": record.mode, "seq": entry.seq})))
        return entry

    def save_verdict(self, verdict: Verdict, actor: str) -> AuditEntry:
        """Store the verdict, stamped with the log's head, and log it, in one transaction."""
        with self._writing() as conn:
            seq, prev = self._last(conn)
            verdict.audit_head = AuditHead(seq=seq, hash=prev)
            body = verdict.model_dump_json()
            conn.execute(
                "INSERT INTO reinstate.verdicts (agent, created_at, outcome, body) "
                "VALUES (%s, %s, %s, %s)",
                (verdict.agent, verdict.created_at.isoformat(), verdict.outcome, body))
            return self._append(conn, actor=actor, action="verdict", agent=verdict.agent,
                                reason=f"gate {verdict.outcome}",
                                detail=_verdict_detail(verdict, body))

    def latest_verdict(self, agent: str) -> Verdict | None:
        """The agent's most recent verdict."""
        with self._reading() as conn:
            row = conn.execute("SELECT body FROM reinstate.verdicts WHERE agent = %s "
                               "ORDER BY id DESC LIMIT 1", (agent,)).fetchone()
        return None if row is None else self._verdict(row[0], agent)

    def latest_verdict_text(self, agent: str, back: int = 0) -> str | None:
        """The agent's most recent verdict (``back`` before it) as the store keeps it."""
        with self._reading() as conn:
            row = conn.execute("SELECT body FROM reinstate.verdicts WHERE agent = %s "
                               "ORDER BY id DESC LIMIT 1 OFFSET %s", (agent, back)).fetchone()
        return None if row is None else str(row[0])

    def latest_verdict_sha256(self, agent: str) -> str | None:
        """SHA-256 of the agent's most recent stored verdict text, computed by the server:
        the verdict (megabytes at thousands of cases) never crosses the connection."""
        with self._reading() as conn:
            row = conn.execute("SELECT encode(sha256(convert_to(body, 'UTF8')), 'hex') "
                               "FROM reinstate.verdicts WHERE agent = %s "
                               "ORDER BY id DESC LIMIT 1", (agent,)).fetchone()
        return None if row is None else str(row[0])

    def verdict_digests(self) -> list[tuple[str, str, str]]:
        """Agent, outcome and SHA-256 of the text of every stored verdict, oldest first,
        computed by the server: no verdict crosses the connection."""
        with self._reading() as conn:
            rows = conn.execute("SELECT agent, outcome, encode(sha256(convert_to(body, "
                                "'UTF8')), 'hex') FROM reinstate.verdicts ORDER BY id"
                                ).fetchall()
        return [(str(agent), str(outcome), str(digest)) for agent, outcome, digest in rows]

    def last_passing_verdict(self, agent: str,
                             before: datetime | None = None) -> Verdict | None:
        """The agent's most recent passing verdict, created before ``before`` when given."""
        with self._reading() as conn:
            rows = conn.execute("SELECT body FROM reinstate.verdicts WHERE agent = %s AND "
                                "outcome = 'pass' ORDER BY id DESC", (agent,)).fetchall()
        for (body,) in rows:
            verdict = self._verdict(body, agent)
            if before is None or verdict.created_at < before:
                return verdict
        return None

    def _append(self, conn: psycopg.Connection[Any], *, actor: str, action: str,
                agent: str | None, reason: str, detail: dict[str, Any]) -> AuditEntry:
        seq, prev = self._last(conn)
        entry = _entry(seq + 1, prev, actor, action, agent, reason, detail)
        conn.execute(
            "INSERT INTO reinstate.audit VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (entry.seq, entry.at.isoformat(), entry.actor, entry.action, entry.agent,
             entry.reason, json.dumps(entry.detail, sort_keys=True, default=str),
             entry.prev_hash, entry.hash))
        put_head(conn, entry.seq, entry.hash)
        self._advance_checkpoint(conn)
        return entry

    def _advance_checkpoint(self, conn: Any) -> None:
        """The shared advance, once a store made before the index of each agent's entries
        by action has it."""
        found = conn.execute("SELECT to_regclass('reinstate.audit_by_agent_action')").fetchone()
        if found is None or found[0] is None:
            conn.execute(_BY_ACTION)
        super()._advance_checkpoint(conn)

    @staticmethod
    def _last(conn: psycopg.Connection[Any]) -> tuple[int, str]:
        last = conn.execute(
            "SELECT seq, hash FROM reinstate.audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def audit(self, agent: str | None = None, *, actions: Collection[str] | None = None,
              after: int = 0) -> list[AuditEntry]:
        """The audit log, oldest first, filtered in SQL."""
        where = ["seq > %s"]
        values: list[object] = [after]
        if agent is not None:
            where.append("agent = %s")
            values.append(agent)
        if actions is not None:
            where.append("action = ANY(%s)")
            values.append(list(actions))
        query = (f"SELECT {AUDIT_COLUMNS} FROM reinstate.audit "
                 f"WHERE {' AND '.join(where)} ORDER BY seq")
        with self._reading() as conn:
            rows = conn.execute(query, values).fetchall()
        return [self._audit_entry(r) for r in rows]

    def head(self) -> tuple[int, str] | None:
        """Number and hash of the last entry, from the store's metadata."""
        with self._reading() as conn:
            return self._stored_head(conn)

    def _stored_head(self, conn: psycopg.Connection[Any]) -> tuple[int, str] | None:
        row = conn.execute(
            "SELECT value FROM reinstate.meta WHERE key = 'audit_head'").fetchone()
        return None if row is None else self._head(row[0])

    def held_checkpoint(self) -> tuple[int, str] | None:
        """The log's head, when the log still starts at entry 1 and the head's entry still
        holds its hash: three lookups by number, no entry's text sent. The server refuses
        an entry that does not follow the last, and any change or removal, unless a
        superuser switches that off; this is what a reader starts from. A decision
        (``check``) verifies from it only while it is the checkpoint its writes keep (every
        write verifies what it adds by content and counts it into its agent's tally, as on
        SQLite) and the log's numbers and links up to it are whole (:meth:`linked_to`):
        else the whole log."""
        with self._reading() as conn:
            head = self._stored_head(conn)
            if head is None or head[0] < 1:
                return None
            seq, digest = head
            held = conn.execute(
                "SELECT (SELECT min(seq) FROM reinstate.audit) = 1"
                " AND (SELECT prev_hash FROM reinstate.audit WHERE seq = 1) = %(genesis)s"
                " AND (SELECT hash FROM reinstate.audit WHERE seq = %(seq)s) = %(digest)s",
                {"seq": seq, "genesis": GENESIS, "digest": digest}).fetchone()
        return (seq, digest) if held is not None and held[0] is True else None

    def linked_to(self, point: tuple[int, str]) -> bool:
        """Whether the log is numbered and linked from entry 1 to ``point``, that entry
        holding its hash: tested by the server, no entry's text sent."""
        seq, digest = point
        with self._reading() as conn:
            whole = conn.execute(
                "SELECT (SELECT count(*) FROM reinstate.audit WHERE seq <= %(seq)s) = %(seq)s"
                " AND (SELECT min(seq) FROM reinstate.audit) = 1"
                " AND (SELECT prev_hash FROM reinstate.audit WHERE seq = 1) = %(genesis)s"
                " AND (SELECT hash FROM reinstate.audit WHERE seq = %(seq)s) = %(digest)s"
                " AND NOT EXISTS (SELECT 1 FROM reinstate.audit AS later"
                " JOIN reinstate.audit AS earlier ON earlier.seq = later.seq - 1"
                " WHERE later.seq BETWEEN 2 AND %(seq)s"
                " AND later.prev_hash IS DISTINCT FROM earlier.hash)",
                {"seq": seq, "genesis": GENESIS, "digest": digest}).fetchone()
        return whole is not None and whole[0] is True

    @contextmanager
    def listening(self) -> Iterator[Iterator[dict[str, Any]]]:
        """Mode changes as they commit: ``{"agent", "mode", "seq"}`` each, from a connection
        that listens from the moment this is entered (read the current mode after that, and
        no change falls between the two).

        Raises:
            StoreUnavailable: the server cannot be reached, or the connection is lost.
        """
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise self._problem("read", exc) from None
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(MODE_CHANNEL)))
            yield self._changes(conn)
        except psycopg.Error as exc:
            raise self._problem("follow", exc) from None
        finally:
            conn.close()

    def _changes(self, conn: psycopg.Connection[Any]) -> Iterator[dict[str, Any]]:
        try:
            for note in conn.notifies():
                try:
                    change = json.loads(note.payload)
                except ValueError:
                    continue  # not one of ours: someone else NOTIFYs on the channel
                if isinstance(change, dict):
                    yield change
        except psycopg.Error as exc:
            raise self._problem("follow", exc) from None
        # notifies() ends only when the connection is closed.
        raise StoreUnavailable(f"cannot follow the state store {self.display}: the "
                               f"connection was closed")


def put_head(conn: psycopg.Connection[Any], seq: int, digest: str) -> None:
    """The head, kept apart from the log in the same transaction: a removed last entry
    leaves the log shorter than its head."""
    conn.execute("INSERT INTO reinstate.meta VALUES ('audit_head', %s) ON CONFLICT (key) DO "
                 "UPDATE SET value = excluded.value", (f"{seq}:{digest}",))
