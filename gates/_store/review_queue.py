"""The human review queue over a workspace's state store.

The guard, the MCP gateway and any runtime put a review-routed call or output here and
wait; a person decides it from ``reinstate review`` or its web page. Every submission and
every decision is an audit entry, and deciding is compare-and-set in the store, so a
decision is made once, by one person (or by the timeout), whichever process gets there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evalsuite import InvalidInput
from gates._config import Workspace
from gates._errors import ReviewDecided, UnknownReview, UnvouchedReview
from gates._store.access import open_store, require_store, store_exists
from gates._store.audit import (
    entry_intact,
    one_decision,
    review_entries_problems,
    verify_audit,
)
from gates._store.backends import AuditEntry, StateStore
from gates._store.reviews import (
    DECISION_ACTIONS,
    REVIEW_ACTIONS,
    REVIEW_STATUSES,
    SUBMIT_ACTION,
    ReviewItem,
    ReviewKind,
    ReviewStatus,
    ReviewSubmission,
    held_digest,
    held_key,
)

# An audit action → the status it decides.
_DECIDED_BY_ACTION: dict[str, ReviewStatus] = {
    action: status for status, action in DECISION_ACTIONS.items()}  # type: ignore[misc]

# Who decides an item that nobody decided in time.
EXPIRY_ACTOR = "reinstate"


class ReviewQueue:
    """The review queue of a workspace's state store (SQLite, PostgreSQL or memory).

    Use::

        queue = gates.ReviewQueue("path/to/workspace")
        submitted = queue.submit("refund-agent", kind="call", tool="issue_refund",
                                 args={"order_id": "A-1", "amount": 900}, reason="over 500")
        queue.wait(submitted.id, timeout_s=300)
        item = queue.vouched(submitted)  # what the audit log records, never the row
        if item.released:
            run_tool(item.tool, item.final_args)

    The store's review rows say *that* an item was decided, so a waiting runtime wakes up;
    *what* was decided is read from the hash-chained audit log (:meth:`vouched`), for the
    item as the runtime submitted it: a row edited behind the log releases nothing.
    """

    def __init__(self, workspace: Workspace | Path | str | None = None, *,
                 store: StateStore | None = None) -> None:
        """The queue of ``workspace``'s state store, or of ``store`` when given.

        Args:
            workspace: The workspace (or its folder; default: found from the working
                directory or ``REINSTATE_WORKSPACE``; not looked for when ``store`` is
                given without it).
            store: A state store to use instead of the workspace's (a
                :class:`~gates.MemoryStore` in tests or an embedding process).

        Raises:
            InvalidInput: no workspace there.
        """
        if isinstance(workspace, Workspace):
            self.workspace: Workspace | None = workspace
        elif workspace is not None or store is None:
            self.workspace = Workspace.find(Path(workspace) if workspace is not None else None)
        else:
            self.workspace = None
        if store is not None:
            self.store: StateStore = store
        else:
            assert self.workspace is not None
            self.store = open_store(self.workspace)

    def submit(self, agent: str, *, kind: ReviewKind, reason: str, tool: str | None = None,
               args: dict[str, Any] | None = None, text: str | None = None,
               rule: str | None = None, run_id: str | None = None,
               source: str = "api") -> ReviewItem:
        """Hold a call (``tool``, ``args``) or an output (``text``) for a person.

        Returns:
            The item, ``pending``, with the id the store gave it.

        Raises:
            InvalidInput: a call without a tool, an output without text, no reason.
            UnknownAgent: the workspace defines no such agent.
            StoreUnavailable: the store cannot be written (or was deleted while the
                workspace shows it had history).
        """
        if self.workspace is not None:
            agent = self.workspace.require_agent(agent)
        if kind == "call" and not tool:
            raise InvalidInput(None, "review submit", "a call needs the tool it calls")
        if kind == "output" and text is None:
            raise InvalidInput(None, "review submit", "an output needs its text")
        if not reason.strip():
            raise InvalidInput(None, "review submit",
                               "a reason: why the call or output goes to a person")
        submission = ReviewSubmission(
            agent=agent, kind=kind, tool=tool if kind == "call" else None,
            args=dict(args or {}) if kind == "call" else None,
            text=text if kind == "output" else None, rule=rule, reason=reason,
            run_id=run_id, source=source)
        if self.workspace is not None and not store_exists(self.store):
            require_store(self.workspace, new_store=False)  # never a deleted store anew
        return self.store.add_review(submission)

    def get(self, review: str) -> ReviewItem:
        """The item of that id (``R-17``).

        Raises:
            UnknownReview: no item has that id.
        """
        found = self.store.review(review) if store_exists(self.store) else None
        if found is None:
            raise UnknownReview(review, self._where())
        return found

    def items(self, agent: str | None = None,
              status: ReviewStatus | None = "pending") -> list[ReviewItem]:
        """Items oldest first: ``agent``'s only when given, of ``status`` (None: all)."""
        if status is not None and status not in REVIEW_STATUSES:
            raise InvalidInput(None, "status", f"one of {', '.join(REVIEW_STATUSES)}, "
                                               f"not {status!r}")
        if not store_exists(self.store):
            return []  # nothing was ever written, so nothing was ever queued
        return self.store.reviews(agent, status)

    def approve(self, review: str, *, actor: str, reason: str) -> ReviewItem:
        """Release a pending item as it was submitted.

        Raises:
            UnknownReview: no item has that id.
            ReviewDecided: it was decided already; nothing changed.
            InvalidInput: no reason given.
        """
        return self._decide(review, "approved", actor, reason)

    def reject(self, review: str, *, actor: str, reason: str) -> ReviewItem:
        """Refuse a pending item: the call does not run, the output is not shown.

        Raises:
            UnknownReview: no item has that id.
            ReviewDecided: it was decided already; nothing changed.
            InvalidInput: no reason given.
        """
        return self._decide(review, "rejected", actor, reason)

    def edit(self, review: str, *, actor: str, reason: str,
             args: dict[str, Any] | None = None, text: str | None = None) -> ReviewItem:
        """Release a pending item with the reviewer's change: new ``args`` for a call, new
        ``text`` for an output.

        Raises:
            UnknownReview: no item has that id.
            ReviewDecided: it was decided already; nothing changed.
            InvalidInput: no reason, or a change that does not fit the item (args for an
                output, text for a call, neither).
        """
        item = self.get(review)
        if item.kind == "call" and (args is None or text is not None):
            raise InvalidInput(None, f"review {item.id}",
                               "new arguments (a JSON object) to edit a call, and no text")
        if item.kind == "output" and (text is None or args is not None):
            raise InvalidInput(None, f"review {item.id}",
                               "a new text to edit an output, and no arguments")
        return self._decide(review, "edited", actor, reason, args, text)

    def wait(self, review: str, *, timeout_s: float, poll_s: float = 0.2) -> ReviewItem:
        """Block until the item is decided, reading the store every ``poll_s`` seconds.

        At ``timeout_s`` the item is decided ``expired`` here (compare-and-set, by
        ``reinstate``): it is not released, so the caller denies. If a person decided it at
        that same moment, their decision is returned.

        Raises:
            UnknownReview: no item has that id.
            StoreUnavailable: the store cannot be read (the caller denies).
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            item = self.get(review)
            if item.status != "pending":
                return item
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(max(poll_s, 0.01), left))
        try:
            return self.store.decide_review(
                item.id, status="expired", actor=EXPIRY_ACTOR,
                reason=f"no decision within {timeout_s:g} s: not released (failing closed)")
        except ReviewDecided:
            return self.get(review)

    def vouched(self, submitted: ReviewItem) -> ReviewItem:
        """The decision the audit log records on ``submitted``, the item as this process
        submitted it (what :meth:`submit` returned, never a copy read back from the store).

        The item comes back with what it held as submitted (a call's arguments, an
        output's text) and the decision of its audit entry: status, who, when, why and,
        for an edit, the reviewer's arguments or text as the entry records them. The
        store's row is not read: it may have been written behind the log. A decision is
        vouched for only when the log verifies (from its checkpoint, as ``check`` does),
        the item's last ``review.submit`` entry is of this agent, run, tool and kind and
        records the digest of exactly what was submitted, and the one decision entry
        after it (``review.approve``, ``review.edit``, ``review.reject``,
        ``review.expire``) records that same digest, the agent's review entries being
        those the store counted as it wrote them. No decision entry yet: ``pending``.

        Raises:
            UnvouchedReview: the log does not verify, has no submit entry matching the
                item (or one written before the digest was kept), holds two decisions of
                it, or a decision for other arguments or text than were submitted.
            StoreUnavailable: the store cannot be read.
        """
        with one_decision():  # the log's links are tested once for both questions
            return self._vouched(submitted)

    def _vouched(self, submitted: ReviewItem) -> ReviewItem:
        problems = verify_audit(self.store, (submitted.agent,), incremental=True)
        if problems:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            raise UnvouchedReview(f"the audit log does not verify ({problems[0]}{more})")
        entries = [e for e in self.store.audit(submitted.agent, actions=REVIEW_ACTIONS)
                   if e.detail.get("review") == submitted.id]
        submits = [i for i, e in enumerate(entries) if e.action == SUBMIT_ACTION]
        if not submits:
            raise UnvouchedReview(f"the audit log records no submission of {submitted.id}")
        key, digest = held_key(submitted.kind), held_digest(submitted)
        submit = entries[submits[-1]]
        decisions = entries[submits[-1] + 1:]
        _require_intact(submit, *decisions)
        if key not in submit.detail:
            raise UnvouchedReview(
                f"the submission of {submitted.id} (audit entry {submit.seq}) records no "
                f"digest of what was held (written by an older reinstate): nothing vouches "
                f"for what a reviewer decided; submit it again")
        expected = {"kind": submitted.kind, "tool": submitted.tool,
                    "run_id": submitted.run_id, key: digest}
        if ({k: submit.detail.get(k) for k in expected} != expected
                or submit.agent != submitted.agent):
            raise UnvouchedReview(
                f"the submission of {submitted.id} in the audit log (entry {submit.seq}) is "
                f"not the item this runtime held (another agent, run, tool or arguments)")
        if not decisions:
            return submitted
        # What releases the item is its last submission and the decision after it: one
        # hidden (its action or agent edited, its hash left) would let an earlier
        # submission and its decision stand in, so the agent's review entries must be the
        # ones the store counted as it wrote them.
        forged = review_entries_problems(self.store, submitted.agent)
        if forged:
            raise UnvouchedReview(f"the audit log's review entries of {submitted.agent} "
                                  f"do not verify ({forged[0]})")
        if len(decisions) > 1:
            raise UnvouchedReview(
                f"the audit log records {len(decisions)} decisions of {submitted.id} "
                f"(entries {', '.join(str(e.seq) for e in decisions)}); an item is "
                f"decided once")
        entry = decisions[0]
        status = _DECIDED_BY_ACTION[entry.action]
        if status in ("approved", "edited") and entry.detail.get(key) != digest:
            raise UnvouchedReview(
                f"the {entry.action} entry of {submitted.id} (entry {entry.seq}) decided "
                f"other {'arguments' if submitted.kind == 'call' else 'text'} than were "
                f"held, or records none: nothing released")
        edited_args = entry.detail.get("edited_args") if status == "edited" else None
        edited_text = entry.detail.get("edited_text") if status == "edited" else None
        if status == "edited" and not (
                isinstance(edited_args, dict) if submitted.kind == "call"
                else isinstance(edited_text, str)):
            raise UnvouchedReview(f"the review.edit entry of {submitted.id} (entry "
                                  f"{entry.seq}) records no edit of the held "
                                  f"{submitted.kind}")
        if status == "edited" and submitted.kind == "call":
            # The entry's JSON has its keys sorted; the row's copy, when it is the same
            # object, keeps the order the reviewer wrote them in (content from the log).
            row = self.store.review(submitted.id)
            if row is not None and row.edited_args == edited_args:
                edited_args = row.edited_args
        return submitted.model_copy(update={
            "status": status, "decided_at": entry.at, "decided_by": entry.actor,
            "decision_reason": entry.reason, "edited_args": edited_args,
            "edited_text": edited_text})

    def unlike_submitted(self, items: list[ReviewItem]) -> dict[str, str]:
        """Items whose row in the store is not what their runtime submitted, by id, with why.

        What a reviewer reads (``review show``, ``review list``, the review page) comes from
        the store's row, which can be written behind the audit log. Each row is compared
        with its item's last ``review.submit`` entry: agent, kind, tool, run and the digest
        of the held arguments or text, the entry itself unchanged since it was written.
        Release never trusts the row either (:meth:`vouched`); this is so that a person is
        never shown, and never approves, a call other than the one that waits.
        """
        submits: dict[str, dict[str, AuditEntry]] = {}
        problems: dict[str, str] = {}
        for item in items:
            if item.agent not in submits:
                submits[item.agent] = {
                    str(e.detail.get("review")): e
                    for e in self.store.audit(item.agent, actions=(SUBMIT_ACTION,))}
            problem = _unlike(item, submits[item.agent].get(item.id))
            if problem is not None:
                problems[item.id] = problem
        return problems

    def _decide(self, review: str, status: ReviewStatus, actor: str, reason: str,
                args: dict[str, Any] | None = None, text: str | None = None) -> ReviewItem:
        if not reason.strip():
            raise InvalidInput(None, f"review {review}", "a reason for the decision")
        if not store_exists(self.store):
            raise UnknownReview(review, self._where())
        if status != "rejected":  # refusing is always safe; releasing needs the real item
            item = self.get(review)
            if (problem := self.unlike_submitted([item]).get(item.id)) is not None:
                raise UnvouchedReview(f"{item.id} was not {status}: {problem}; reject it, "
                                      f"and let its runtime submit it again")
        return self.store.decide_review(review, status=status, actor=actor, reason=reason,
                                        edited_args=args, edited_text=text)

    def _where(self) -> str:
        display = getattr(self.store, "display", None)
        return str(display) if display is not None else "the in-memory store"


def _unlike(item: ReviewItem, submit: AuditEntry | None) -> str | None:
    """Why ``item``'s row differs from its ``review.submit`` entry ``submit``; None if not."""
    if submit is None:
        return f"the audit log records no submission of {item.id} by {item.agent}"
    if not entry_intact(submit):
        return f"its submission's audit entry {submit.seq} was changed after it was written"
    key = held_key(item.kind)
    if key not in submit.detail:
        return (f"its submission (audit entry {submit.seq}) records no digest of what was "
                f"held (written by an older reinstate)")
    shown = {"kind": item.kind, "tool": item.tool, "run_id": item.run_id,
             key: held_digest(item)}
    differ = [name if name != key else ("arguments" if item.kind == "call" else "text")
              for name, value in shown.items() if submit.detail.get(name) != value]
    if not differ:
        return None
    return (f"the store's row shows other {', '.join(differ)} than its runtime submitted "
            f"(audit entry {submit.seq}): the row was changed behind the audit log")


def _require_intact(*entries: AuditEntry) -> None:
    for entry in entries:
        if not entry_intact(entry):
            raise UnvouchedReview(f"audit entry {entry.seq} was changed after it was "
                                  f"written")
