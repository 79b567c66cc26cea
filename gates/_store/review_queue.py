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
from gates._errors import ReviewDecided, UnknownReview
from gates._store.access import open_store, require_store, store_exists
from gates._store.backends import StateStore
from gates._store.reviews import (
    REVIEW_STATUSES,
    ReviewItem,
    ReviewKind,
    ReviewStatus,
    ReviewSubmission,
)

# Who decides an item that nobody decided in time.
EXPIRY_ACTOR = "reinstate"


class ReviewQueue:
    """The review queue of a workspace's state store (SQLite, PostgreSQL or memory).

    Use::

        queue = gates.ReviewQueue("path/to/workspace")
        item = queue.submit("refund-agent", kind="call", tool="issue_refund",
                            args={"order_id": "A-1", "amount": 900}, reason="over 500")
        item = queue.wait(item.id, timeout_s=300)
        if item.released:
            run_tool(item.tool, item.final_args)
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

    def _decide(self, review: str, status: ReviewStatus, actor: str, reason: str,
                args: dict[str, Any] | None = None, text: str | None = None) -> ReviewItem:
        if not reason.strip():
            raise InvalidInput(None, f"review {review}", "a reason for the decision")
        if not store_exists(self.store):
            raise UnknownReview(review, self._where())
        return self.store.decide_review(review, status=status, actor=actor, reason=reason,
                                        edited_args=args, edited_text=text)

    def _where(self) -> str:
        display = getattr(self.store, "display", None)
        return str(display) if display is not None else "the in-memory store"
