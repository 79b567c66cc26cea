"""Tamper evidence: the audit log's chain, its head, and the state it vouches for.

The log is numbered and hash-chained, so an edited, removed or reordered entry breaks the
chain at that entry. The store also keeps the log's head (number and hash of the last
entry) apart from the log, so an entry removed from the end shows too. And every mode and
verdict is written in one transaction with its entry, so a mode or a verdict that does
not match the last entry about it was changed behind the log's back.

A decision (``check``, ``restore``, the review queue's release) verifies what it reads,
so that its cost does not grow with the log: the log's numbers and links up to the store's
checkpoint, tested in the database; every entry after the checkpoint, by content; and every
entry the decision reads (the agent's mode and approval entries, its last verdict entry),
by content, which must be exactly the entries the store tallied as it wrote them (one
hidden from the decision by an edited agent or action is missing). ``reinstate audit
verify`` re-hashes every entry, and names an edited entry no decision reads too.

A chain without a secret proves order and integrity, not authorship: whoever can write
the database can rewrite the whole chain consistently. Anchoring (keeping an entry's
number and hash somewhere else, and checking it with ``--anchor``) catches that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from itertools import zip_longest
from typing import TYPE_CHECKING, NamedTuple

from gates._store import chain_sql
from gates._store.backends import (
    AuditEntry,
    SQLiteStore,
    StateStore,
    entry_hash,
    verdict_digest,
    verify_chain,
)

if TYPE_CHECKING:  # only annotations: reading a mode must not build the verdict models
    from gates._verdict.stored import DecidedVerdict, StoredVerdict
    from gates._verdict.verdict import Verdict

    LatestVerdict = Callable[[str], DecidedVerdict | None]

# What a decision reads from the log (containments and restores, ratchet approvals): every
# such entry of the agent is re-hashed at every check, wherever the checkpoint is, and must
# be exactly those the store tallied (chain_sql.Tally).
DECIDING = chain_sql.DECIDING

# Each store's checkpoint, and whether the log is linked up to it, as first tested within
# the current decision (see one_decision), keyed by the log the store reads (_log_key), with
# the store kept alive so that an id used as a key is not reused meanwhile.
_TESTED: ContextVar[dict[Hashable, tuple[StateStore, tuple[int, str] | None]] | None] = (
    ContextVar("reinstate_tested_checkpoints", default=None))
_LINKED: ContextVar[dict[Hashable, tuple[StateStore, bool]] | None] = (
    ContextVar("reinstate_linked_checkpoints", default=None))


@contextmanager
def one_decision() -> Iterator[None]:
    """Within it, each store's checkpoint is tested once
    (:meth:`StateStore.held_checkpoint`).

    A decision asks the log several questions (``check``: the chain, the containments, the
    restores), each from the checkpoint; the test of the log's links up to it passes over
    the numbers and links of every stored entry, so it is made once too
    (:meth:`StateStore.linked_to`). The answers are those of one slightly earlier test, and
    the entries after the checkpoint are still read afresh by each question.
    """
    if _TESTED.get() is not None:  # nested: the outer decision's reading stands
        yield
        return
    token, linked = _TESTED.set({}), _LINKED.set({})
    try:
        yield
    finally:
        _TESTED.reset(token)
        _LINKED.reset(linked)


def _checkpoint(store: StateStore) -> tuple[int, str] | None:
    """``store.held_checkpoint()``, tested once within one decision."""
    tested = _TESTED.get()
    if tested is None:
        return store.held_checkpoint()
    key = _log_key(store)
    if key not in tested:
        tested[key] = (store, store.held_checkpoint())
    return tested[key][1]


def _linked(store: StateStore, point: tuple[int, str]) -> bool:
    """``store.linked_to(point)``, tested once for each point within one decision."""
    tested = _LINKED.get()
    if tested is None:
        return store.linked_to(point)
    key = (_log_key(store), point)
    if key not in tested:
        tested[key] = (store, store.linked_to(point))
    return tested[key][1]


def _log_key(store: StateStore) -> Hashable:
    """Which stored log ``store`` reads: the SQLite file or the PostgreSQL URL, else the
    object itself. The gate opens the workspace's store afresh in more than one stage (the
    incidents' standing, the ratchet's approvals); as one decision they test the file's
    checkpoint once, since a checkpoint vouches for the rows, not for the object."""
    if isinstance(store, SQLiteStore):
        return ("sqlite", store.path.absolute())
    url = getattr(store, "url", None)  # a PostgresStore, without importing its driver
    if isinstance(url, str):
        return ("postgresql", url)
    return id(store)


def latest_for_decision(store: StateStore, agent: str) -> StoredVerdict | Verdict | None:
    """The agent's latest verdict: the light read when the agent's last verdict entry
    records exactly its text's digest, else the whole model (``store.latest_verdict``).

    Raises:
        StoreUnavailable: The store cannot be read, or holds a verdict that is not one.
    """
    # Imported here: reading a mode (which imports this module) builds no verdict model.
    from gates._verdict.stored import read_stored

    text = store.latest_verdict_text(agent)
    if text is None:
        return None
    read = read_stored(text)
    if read is not None:
        # The verdict's own entry follows the head it was stamped with; a later verdict
        # entry (a row removed behind the log) names another digest and falls through.
        entries = store.audit(agent, actions=("verdict",), after=read.audit_head.seq)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if entries and entries[-1].detail.get("sha256") == digest:
            return read
    return store.latest_verdict(agent)


def decision_reader(store: StateStore) -> LatestVerdict:
    """Reads each agent's latest verdict for a decision once (:func:`latest_for_decision`)."""
    return cache(lambda agent: latest_for_decision(store, agent))


def recorded(store: StateStore, agent: str, actions: Collection[str]) -> list[AuditEntry]:
    """``agent``'s entries of ``actions``, oldest first, read without reading the whole log.

    Every entry after the store's checkpoint is read and parsed, so a garbled row there
    raises :class:`StoreUnavailable` as a whole read would; when the checkpoint no longer
    holds (or there is none) the agent's whole log is read. This reads; it verifies nothing
    (:func:`verify_audit` does, from the same checkpoint).
    """
    point = _checkpoint(store)
    if point is None:
        return [e for e in store.audit(agent) if e.action in actions]
    seq = point[0]
    early = [e for e in store.audit(agent, actions=actions) if e.seq <= seq]
    late = [e for e in store.audit(after=seq) if e.agent == agent and e.action in actions]
    return early + late


def verify_audit(store: StateStore, agents: Iterable[str] = (),
                 anchors: Sequence[tuple[int, str]] = (),
                 verdicts: Sequence[Verdict] = (), *, incremental: bool = False,
                 latest: LatestVerdict | None = None) -> list[str]:
    """Every sign of tampering, each naming the entry or the record concerned.

    ``agents`` are checked for a mode or verdict that has no audit entry at all;
    ``anchors`` are (number, hash) pairs recorded elsewhere that the log must still hold;
    ``verdicts`` are copies of verdicts kept elsewhere (a CI artefact, a signed
    attestation), each of which the log must still hold at the place it was stored.

    ``incremental`` (what ``check`` and ``restore`` ask for) verifies from the store's
    checkpoint when it still holds (:meth:`StateStore.held_checkpoint`) and the log's
    numbers and links up to it are whole (:meth:`StateStore.linked_to`, tested in the
    database): every entry after it by content, and every entry a decision about the agents
    reads (their mode and approval entries, their last verdict entry) by content wherever it
    is, which must be exactly the entries the store tallied with the checkpoint
    (:meth:`StateStore.tally`). Otherwise (no checkpoint, a broken log, an entry not as
    tallied), and with anchors or kept verdicts, it verifies the whole log as ``reinstate
    audit verify`` does. An entry no decision reads, edited with its hash left as it was, is
    named only by the whole log's verification.

    ``latest`` reads an agent's latest stored verdict (default ``store.latest_verdict``):
    ``check`` and ``restore`` pass the read that skips building the whole model.
    """
    point = _checkpoint(store) if incremental and not anchors and not verdicts else None
    if point is not None:
        found = _verify_from(store, point, sorted(set(agents)), latest)
        if found is not None:
            return found
    entries = store.audit()
    problems = verify_chain(entries)
    chained = not problems
    problems += _head_problems(store, entries)
    by_seq = {e.seq: e for e in entries}
    for verdict in verdicts:
        problems += verdict_anchor_problems(by_seq, verdict)
    for seq, digest in anchors:
        anchored = by_seq.get(seq)
        if anchored is None:
            problems.append(f"entry {seq}: missing, but it is anchored (hash {digest[:12]}…)")
        elif anchored.hash != digest:
            problems.append(f"entry {seq}: hash {anchored.hash[:12]}… differs from its anchor "
                            f"{digest[:12]}…: the log was rewritten")
    last_mode: dict[str, AuditEntry] = {}
    last_verdict: dict[str, AuditEntry] = {}
    for entry in entries:
        if entry.agent is not None and entry.action == "mode":
            last_mode[entry.agent] = entry
        elif entry.agent is not None and entry.action == "verdict":
            last_verdict[entry.agent] = entry
    for agent in sorted(set(agents) | set(last_mode) | set(last_verdict)):
        problems += _mode_problems(store, agent, last_mode.get(agent))
        problems += _verdict_problems(store, agent, last_verdict.get(agent),
                                      None if latest is None else (latest(agent),))
    problems += _tally_problems(store, entries, agents, chained)
    if not incremental:  # `reinstate audit verify`: the review queue against its entries
        problems += review_problems(store, entries)
        # and every verdict row, not only each agent's latest: reports compare with older
        # ones, and "verdicts match their entries" must hold of all of them.
        problems += verdict_row_problems(store, entries)
    return problems


def verdict_row_problems(store: StateStore, entries: Sequence[AuditEntry]) -> list[str]:
    """Every agent whose stored verdicts are not, one for one and in order, those its
    verdict entries record (``save_verdict`` writes each with its entry, in one
    transaction): a row whose outcome or text (its digest, where the entry keeps one)
    differs, a row removed, or a row written with no entry. The first one of each agent is
    named; nothing when every row matches."""
    logged: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        if entry.agent is not None and entry.action == chain_sql.VERDICT:
            logged.setdefault(entry.agent, []).append(entry)
    kept: dict[str, list[tuple[str, str]]] = {}
    for agent, outcome, digest in store.verdict_digests():
        kept.setdefault(agent, []).append((outcome, digest))
    problems = []
    for agent in sorted(set(logged) | set(kept)):
        rows = kept.get(agent, [])
        for number, (entry, row) in enumerate(
                zip_longest(logged.get(agent, []), rows), start=1):
            if entry is None:
                assert row is not None
                problems.append(f"verdicts: {agent}'s verdict {number} of {len(rows)} (a "
                                f"{row[0]} verdict) has no audit entry: it was written behind "
                                f"the audit log")
            elif row is None:
                problems.append(f"verdicts: entry {entry.seq} records a "
                                f"{entry.detail.get('outcome')} verdict of {agent} that the "
                                f"store no longer holds: it was removed behind the audit log")
            elif (row[0] != entry.detail.get("outcome")
                  or entry.detail.get("sha256") not in (None, row[1])):
                problems.append(f"verdicts: {agent}'s verdict {number} of {len(rows)} (a "
                                f"{row[0]} verdict) is not the "
                                f"{entry.detail.get('outcome')} verdict its entry (entry "
                                f"{entry.seq}) recorded: the verdicts table was changed behind "
                                f"the audit log")
            else:
                continue
            break  # the first of the agent: every later row is out of step with it
    return problems


def review_problems(store: StateStore, entries: Sequence[AuditEntry],
                    agent: str | None = None) -> list[str]:
    """Every review item (``agent``'s only, when given) whose row says other than the
    audit log: no submission entry, other arguments or text than the submission chained, a
    decision the log does not record (or records otherwise), or no row at all for a
    submission the log records (deleted). The runtime releases only what the log vouches
    for; this names the rows changed behind it, which the queue's figures would count."""
    from gates._store.reviews import (  # only here: a mode read needs no review models
        DECISION_ACTIONS,
        REVIEW_ACTIONS,
        SUBMIT_ACTION,
        held_digest,
        held_key,
    )

    logged: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        if entry.action in REVIEW_ACTIONS and isinstance(entry.detail.get("review"), str):
            logged.setdefault(entry.detail["review"], []).append(entry)
    problems = []
    items = store.reviews(agent, status=None)  # every status
    rows = {item.id for item in items}
    for review, mine in logged.items():
        submit = next((e for e in reversed(mine) if e.action == SUBMIT_ACTION), None)
        if (submit is not None and review not in rows
                and (agent is None or submit.agent == agent)):
            problems.append(f"reviews: {review} was submitted (entry {submit.seq}) but has "
                            f"no row: it was deleted behind the audit log")
    for item in items:
        mine = logged.get(item.id, [])
        submits = [i for i, e in enumerate(mine) if e.action == SUBMIT_ACTION]
        if not submits:
            problems.append(f"reviews: {item.id} has no review.submit entry: it was written "
                            f"behind the audit log")
            continue
        submit, decisions = mine[submits[-1]], mine[submits[-1] + 1:]
        key = held_key(item.kind)
        recorded = submit.detail.get(key)  # absent from entries written before it was kept
        if recorded is not None and recorded != held_digest(item):
            what = "arguments" if item.kind == "call" else "text"
            problems.append(f"reviews: {item.id} holds other {what} than its submission "
                            f"(entry {submit.seq}) recorded: the reviews table was changed "
                            f"behind the audit log")
        decided = [e.action for e in decisions]
        expected = [] if item.status == "pending" else [DECISION_ACTIONS[item.status]]
        if decided != expected:
            said = ", ".join(decided) or "no decision"
            problems.append(f"reviews: {item.id} is {item.status}, but the audit log records "
                            f"{said} after its submission (entry {submit.seq}): the reviews "
                            f"table was changed behind the audit log")
    return problems


def _tally_problems(store: StateStore, entries: list[AuditEntry], agents: Iterable[str],
                    chained: bool) -> list[str]:
    """How the whole log differs from what the store recorded with its checkpoint
    (:meth:`StateStore.tallies`): the checkpoint's entry not holding the hash recorded with
    it (the log rewritten after it), tallies kept without a checkpoint (it was removed or
    edited), an agent whose entries a decision reads, up to the checkpoint, not being those
    tallied (an entry hidden from its decisions by an edited agent or action, added,
    removed or rewritten, even with the chain made whole again after it); and, in a log
    whose chain is whole (``chained``), entries after the checkpoint
    (:func:`_behind_problems`). Nothing for a store that keeps no tallies."""
    point, tallies = store.tallies()
    if point is None:
        if not tallies:
            return []  # a store made before tallies (or one that keeps none)
        return [f"meta: the store keeps the tallies of {len(tallies)} agent(s) but no "
                f"checkpoint with them: it was removed or edited (or an older reinstate "
                f"wrote it); the entries decisions read cannot be vouched for"]
    seq, digest = point
    problems = []
    held = {e.seq: e.hash for e in entries}.get(seq)
    if held is None:
        problems.append(f"entry {seq}: missing, but the store's checkpoint is at it (hash "
                        f"{digest[:12]}…)")
    elif held != digest:
        problems.append(f"entry {seq}: hash {held[:12]}… is not the one the store recorded "
                        f"with its checkpoint ({digest[:12]}…): the log was rewritten after "
                        f"it was written")
    counted = {e.agent for e in entries if e.agent is not None and e.seq <= seq
               and e.action in chain_sql.TALLIED}
    for agent in sorted(counted | set(tallies) | set(agents)):
        tally = tallies.get(agent, chain_sql.Tally())
        if tally is None:
            problems.append(f"meta: the tally of {agent} is not as the store writes it: it "
                            f"was edited")
            continue
        found = chain_sql.tally_of([(e.seq, e.action, e.hash) for e in entries
                                    if e.agent == agent and e.seq <= seq])
        if found.deciding[0] != tally.deciding[0]:
            problems.append(
                f"entry {seq}: the log holds {found.deciding[0]} mode and approval entries "
                f"of {agent} up to it, but the store counted {tally.deciding[0]} as it wrote "
                f"them: one was hidden from {agent}'s decisions (its agent or action "
                f"edited), added or removed")
        elif found.deciding != tally.deciding:
            problems.append(
                f"entry {seq}: the mode and approval entries of {agent} up to it are not "
                f"those the store counted as it wrote them: one was rewritten or moved, and "
                f"the chain made whole again after it")
        if found.verdict != tally.verdict:
            said = f"entry {found.verdict[0]}" if found.verdict else "none"
            kept = f"entry {tally.verdict[0]}" if tally.verdict else "none"
            how = ("was rewritten, and the chain made whole again after it" if said == kept
                   else f"is {said}, but the store counted {kept} as it wrote them: verdict "
                        f"entries were hidden, added or removed")
            problems.append(f"entry {seq}: the last verdict entry of {agent} up to it {how}")
        if found.reviews[0] != tally.reviews[0]:
            problems.append(
                f"entry {seq}: the log holds {found.reviews[0]} review entries of {agent} "
                f"up to it, but the store counted {tally.reviews[0]} as it wrote them: one "
                f"was hidden (its agent or action edited), added or removed")
        elif found.reviews != tally.reviews:
            problems.append(
                f"entry {seq}: the review entries of {agent} up to it are not those the "
                f"store counted as it wrote them: one was rewritten or moved")
    if chained and held == digest:
        problems += _behind_problems(entries, seq)
    return problems


def _behind_problems(entries: list[AuditEntry], checkpoint: int) -> list[str]:
    """Entries after the checkpoint of a store that keeps tallies, every one verifying: the
    store moves its checkpoint over each entry it writes, in the same transaction, so these
    were written behind it (a restore appended by hand, hashed as the store hashes)."""
    behind = [e.seq for e in entries if e.seq > checkpoint]
    if not behind:
        return []
    more = f" (and {len(behind) - 1} after it)" if len(behind) > 1 else ""
    return [f"entry {behind[0]}: written behind the store{more}: its checkpoint (entry "
            f"{checkpoint}) was not moved over it, as every write of the store moves it"]


def _head_problems(store: StateStore, entries: list[AuditEntry]) -> list[str]:
    head = store.head()
    last = entries[-1] if entries else None
    if head is None:
        if last is None:
            return []
        # Every write keeps the head with its entry: a log without one had it removed.
        return [f"entry {last.seq}: the log has {len(entries)} entries but no recorded head: "
                f"the head was removed, so entries may have been removed from the end"]
    if last is not None and (last.seq, last.hash) == head:
        return []
    seq, digest = head
    if last is None or last.seq < seq:
        ends = f"ends at entry {last.seq}" if last is not None else "is empty"
        return [f"entry {seq}: missing: the log {ends} but its head is entry {seq} "
                f"(hash {digest[:12]}…): entries were removed from the end"]
    return [f"entry {last.seq}: is not the recorded head (entry {seq}, hash {digest[:12]}…): "
            f"entries were added or changed behind the store"]


def _mode_problems(store: StateStore, agent: str, entry: AuditEntry | None) -> list[str]:
    record = store.mode(agent)
    if entry is None:
        if record is None:
            return []
        return [f"modes: {agent} is {record.mode}, but no audit entry ever set a mode for it: "
                f"the modes table was written behind the audit log"]
    expected = entry.detail.get("mode")
    if record is not None and record.mode == expected:
        return []
    now = record.mode if record is not None else "unset"
    return [f"modes: {agent} is {now}, but the last mode entry (entry {entry.seq}) set "
            f"{expected}: the modes table was changed behind the audit log"]


def _verdict_problems(store: StateStore, agent: str, entry: AuditEntry | None,
                      latest: tuple[DecidedVerdict | None] | None = None) -> list[str]:
    verdict = store.latest_verdict(agent) if latest is None else latest[0]
    if entry is None:
        if verdict is None:
            return []
        return [f"verdicts: {agent} has a {verdict.outcome} verdict of "
                f"{verdict.created_at.isoformat()}, but no audit entry records any verdict: it "
                f"was written behind the audit log"]
    stamp = {k: v for k, v in verdict.fingerprint.model_dump().items()
             if k != "files"} if verdict is not None else None
    digest = entry.detail.get("sha256")  # absent from entries written before it was kept
    if (verdict is not None and verdict.outcome == entry.detail.get("outcome")
            and stamp == entry.detail.get("fingerprint")
            and digest in (None, verdict_digest(verdict))):
        return _verdict_place_problems(agent, entry, verdict)
    what = (f"a {verdict.outcome} verdict of {verdict.created_at.isoformat()}"
            if verdict is not None else "no verdict")
    return [f"verdicts: the latest of {agent} is {what}, but the last verdict entry "
            f"(entry {entry.seq}) recorded another ({entry.detail.get('outcome')}): the "
            f"verdicts table was changed behind the audit log"]


def _verdict_place_problems(agent: str, entry: AuditEntry,
                            verdict: DecidedVerdict) -> list[str]:
    """Whether the latest verdict's entry is where the store wrote it: right after the head
    the verdict was stamped with (``save_verdict`` stamps and appends in one transaction).

    The head is inside the verdict, so inside its signature: an older verdict (signed, its
    envelope still on file) appended again by a store writer, with a new entry chained to
    the head, matches its entry's digest but not its place, and never becomes the latest.
    """
    head = verdict.audit_head
    if head is None or (entry.seq == head.seq + 1 and entry.prev_hash == head.hash):
        return []  # in place, or stored before heads were kept
    return [f"verdicts: the latest of {agent} (a {verdict.outcome} verdict of "
            f"{verdict.created_at.isoformat()}) was stored after entry {head.seq}, but its "
            f"entry is entry {entry.seq}: an older verdict was stored again behind the store"]


def verdict_anchor_problems(by_seq: dict[int, AuditEntry], verdict: Verdict) -> list[str]:
    """Whether the log still holds ``verdict`` where it was stored: the head it was stamped
    with, then the verdict's own entry with the verdict's digest."""
    head = verdict.audit_head
    stamp = f"the {verdict.outcome} verdict of {verdict.agent} of {verdict.created_at.isoformat()}"
    if head is None:
        return [f"{stamp} carries no audit head (written before heads were kept): it "
                f"cannot anchor the log"]
    before = by_seq.get(head.seq)
    if head.seq > 0 and (before is None or before.hash != head.hash):
        return [f"entry {head.seq}: {'missing' if before is None else 'rewritten'}, but "
                f"{stamp} was stored after it (hash {head.hash[:12]}…)"]
    own = by_seq.get(head.seq + 1)
    if (own is None or own.action != "verdict" or own.prev_hash != head.hash
            or own.detail.get("sha256") != verdict_digest(verdict)):
        return [f"entry {head.seq + 1}: {'missing' if own is None else 'not this verdict'}, "
                f"but {stamp} was stored there: entries were removed or rewritten"]
    return []


def _verify_from(store: StateStore, point: tuple[int, str], agents: list[str],
                 read: LatestVerdict | None = None) -> list[str] | None:
    """:func:`verify_audit` from a checkpoint that holds; None when the log's numbers and
    links up to it are not whole, or an entry a decision reads is not as the store tallied
    it (the caller verifies the whole log, which names what changed)."""
    if not _linked(store, point):
        return None  # an entry removed or rewritten up to it: the whole log names it
    seq, digest = point
    after = store.audit(after=seq)
    problems = verify_chain(after, after=point)
    chained = not problems
    head = store.head()
    last = (after[-1].seq, after[-1].hash) if after else (seq, digest)
    if head != last:
        problems += _head_problems(store, store.audit())  # names how, from the whole log
    agents = sorted(set(agents) | {e.agent for e in after if e.agent is not None})
    checkpoint = None
    for agent in agents:
        recorded = store.tally(agent)
        # The tally is of the checkpoint as it is now: the one tested, or one a write
        # moved onto an entry verified above since (a gate's own verdict, before the
        # restore conditions it prints).
        if recorded is None or (recorded[0] != point and recorded[0] not in
                                {(e.seq, e.hash) for e in after}):
            return None
        (counted, _), tally = recorded
        checkpoint = counted
        deciding = store.audit(agent, actions=DECIDING)
        latest = store.latest_verdict(agent) if read is None else read(agent)
        verdict = _last_verdict_entry(store, agent, latest)
        # A decision reads these wherever they are: each must still hash to itself, and
        # those up to the checkpoint be the ones tallied (none hidden by an edited agent
        # or action, none added).
        if not _as_tallied(tally, counted, deciding, verdict):
            return None
        modes = [e for e in deciding if e.action == "mode"]
        problems += _mode_problems(store, agent, modes[-1] if modes else None)
        problems += _verdict_problems(store, agent, verdict, (latest,))
    if chained and checkpoint is not None:
        problems += _behind_problems(after, checkpoint)
    return problems


def _counted_as(entries: list[AuditEntry], seq: int, tally: chain_sql.Tally,
                part: str) -> tuple[int | None, bool]:
    """Of ``entries`` up to the checkpoint ``seq``: the first whose content changed after it
    was written (None: none), and whether they are exactly those ``tally`` counted in its
    ``part`` (``deciding`` or ``reviews``; not compared when one changed)."""
    early = [e for e in entries if e.seq <= seq]
    changed = next((e.seq for e in early if not entry_intact(e)), None)
    if changed is not None:
        return changed, False
    found = chain_sql.tally_of([(e.seq, e.action, e.hash) for e in early])
    return None, getattr(found, part) == getattr(tally, part)


def _as_tallied(tally: chain_sql.Tally, seq: int, deciding: list[AuditEntry],
                verdict: AuditEntry | None) -> bool:
    """Whether an agent's deciding entries up to the checkpoint ``seq`` and its last verdict
    entry are those of ``tally``, each hashing to itself."""
    changed, counted = _counted_as(deciding, seq, tally, "deciding")
    if changed is not None or not counted:
        return False
    if verdict is None:  # the agent has no verdict entry at all
        return tally.verdict is None
    if verdict.seq > seq:  # after the checkpoint: verified with every entry there
        return True
    return (verdict.seq, verdict.hash) == tally.verdict and entry_intact(verdict)


class _Tallied(NamedTuple):
    """An agent's tally as of the store's checkpoint, and the entries written after it."""

    point: tuple[int, str]
    tally: chain_sql.Tally
    after: list[AuditEntry]
    problems: list[str]
    """Why the checkpoint's entry or the entries after it do not verify."""


def _tallied(store: StateStore, agent: str) -> _Tallied | None:
    """``agent``'s tally with its own checkpoint (not one read apart from it: a write
    between two reads moves the checkpoint, and an entry once written does not change),
    the entries after that checkpoint and why they do not verify; None when the store keeps
    no tally (one in memory, or one an earlier reinstate counted), or the log's numbers and
    links up to that checkpoint are not whole (the caller verifies the whole log)."""
    recorded = store.tally(agent)
    if recorded is None or not _linked(store, recorded[0]):
        return None
    (seq, digest), tally = recorded
    held = store.audit(after=seq - 1)
    if not held or (held[0].seq, held[0].hash) != (seq, digest):
        return _Tallied((seq, digest), tally, [], [
            f"entry {seq}: not the one the store's checkpoint records (hash {digest[:12]}…): "
            f"the log was rewritten"])
    return _Tallied((seq, digest), tally, held[1:],
                    verify_chain(held[1:], after=(seq, digest)))


def review_entries_problems(store: StateStore, agent: str) -> list[str]:
    """Why ``agent``'s review entries (submissions and decisions) cannot be trusted to
    release what they decide: up to the checkpoint the store tallied them with, each must
    still hash to itself and together be exactly those tallied (none hidden by an edited
    agent or action, none added, removed or rewritten); after it, each must follow the
    checkpoint's entry by content. Nothing when they verify. A store that keeps no tallies,
    or whose log is not linked up to the checkpoint, has its whole log verified.
    """
    found = _tallied(store, agent)
    if found is None:
        return verify_audit(store, [agent])
    (seq, _), tally, _, problems = found
    changed, counted = _counted_as(store.audit(agent, actions=chain_sql.REVIEWED), seq, tally,
                                   "reviews")
    if changed is not None:
        problems.append(f"entry {changed}: content was changed after it was written")
    elif not counted:
        problems.append(f"entry {seq}: the review entries of {agent} up to it are not "
                        f"those the store counted as it wrote them: one was added, hidden, "
                        f"removed or rewritten")
    return problems


def last_verdict_problems(store: StateStore, agent: str,
                          entry: AuditEntry | None) -> list[str]:
    """Why ``entry`` (None: none) is not ``agent``'s last verdict entry as the store wrote
    it: up to the checkpoint it must be the one tallied and still hash to itself, after it
    the last of the agent's there, each following the checkpoint by content. What reads a
    stored verdict's terms as the log vouches for them (the ratchet's memory) asks this, so
    that a verdict entry written in place of an entry no decision reads, or a verdict row
    removed, is refused. A store that keeps no tallies, or whose log is not linked up to
    its checkpoint, has its whole log verified and the entry found the last of the agent's.
    """
    found = _tallied(store, agent)
    if found is None:
        problems = verify_audit(store, [agent])
        mine = store.audit(agent, actions=(chain_sql.VERDICT,))
        last = (mine[-1].seq, mine[-1].hash) if mine else None
    else:
        problems = found.problems
        later = [e for e in found.after if e.agent == agent and e.action == chain_sql.VERDICT]
        last = (later[-1].seq, later[-1].hash) if later else found.tally.verdict
        if entry is not None and entry.seq <= found.point[0] and not entry_intact(entry):
            problems.append(f"entry {entry.seq}: content was changed after it was written")
    read = None if entry is None else (entry.seq, entry.hash)
    if read != last:
        said = f"entry {read[0]}" if read else "none"
        kept = f"entry {last[0]}" if last else "none"
        problems.append(f"the last verdict entry of {agent} read is {said}, but the store "
                        f"wrote {kept}: one was written in its place, or removed")
    return problems


def entry_intact(entry: AuditEntry) -> bool:
    """Whether the entry still hashes to the hash it was written with."""
    return entry.hash == entry_hash(entry.seq, entry.at, entry.actor, entry.action,
                                    entry.agent, entry.reason, entry.detail, entry.prev_hash)


def _last_verdict_entry(store: StateStore, agent: str,
                        latest: DecidedVerdict | None) -> AuditEntry | None:
    """The agent's last verdict entry: looked for after the head the latest stored verdict
    was stamped with (its own entry follows it), else in all of the agent's verdict entries."""
    if latest is not None and latest.audit_head is not None:
        found = store.audit(agent, actions=("verdict",), after=latest.audit_head.seq)
        if found:
            return found[-1]
    found = store.audit(agent, actions=("verdict",))
    return found[-1] if found else None
