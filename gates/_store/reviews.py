"""The human review queue's records: what was held for a person, and what they decided.

A review-routed tool call or output (from the runtime guard, the MCP gateway, or any
runtime through :class:`~gates._store.review_queue.ReviewQueue`) is a :class:`ReviewItem`
in the state store, ``pending`` until a person approves, rejects or edits it, or the
waiting side gives up and marks it ``expired``. Deciding is compare-and-set: only a
pending item can be decided, so two reviewers (or a reviewer and a timeout) never both win.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, SerializerFunctionWrapHandler, model_serializer

from evalsuite import Record

ReviewKind = Literal["call", "output"]
ReviewStatus = Literal["pending", "approved", "rejected", "edited", "expired"]
REVIEW_STATUSES: tuple[ReviewStatus, ...] = ("pending", "approved", "rejected", "edited",
                                             "expired")
# A decided status → the audit action that records it.
DECISION_ACTIONS: dict[str, str] = {"approved": "review.approve", "rejected": "review.reject",
                                    "edited": "review.edit", "expired": "review.expire"}
SUBMIT_ACTION = "review.submit"
REVIEW_ACTIONS = (SUBMIT_ACTION, *DECISION_ACTIONS.values())
# Review ids are this prefix and the store's number for the item.
ID_PREFIX = "R-"


class ReviewSubmission(Record):
    """What a runtime holds for a person: the call or output and why it was routed."""

    agent: str
    """The agent whose call or output it is."""
    kind: ReviewKind
    """``call`` (a tool call, held before the tool runs) or ``output`` (an answer, held
    before the user sees it)."""
    tool: str | None = None
    """For a call, the tool."""
    args: dict[str, Any] | None = None
    """For a call, its arguments (as submitted: a reviewer's edit is kept beside them)."""
    text: str | None = None
    """For an output, its text (as submitted: a reviewer's edit is kept beside it)."""
    rule: str | None = None
    """The rule that routed it to review (``review.rules[0]``, ``mode.review``, …)."""
    reason: str
    """Why it was routed, as the deciding rule says it."""
    run_id: str | None = None
    """The live run it belongs to, when known."""
    source: str = "api"
    """Who submitted it: ``guard``, ``gateway``, ``api``, …"""


class ReviewItem(ReviewSubmission):
    """One item of the human review queue, as the state store keeps it: the submission,
    numbered, and what became of it."""

    id: str
    """The store's id for it (``R-17``), unique per store."""
    status: ReviewStatus
    """``pending`` until decided: ``approved``, ``rejected``, ``edited`` (released with
    the reviewer's change) or ``expired`` (nobody decided in time: not released)."""
    submitted_at: AwareDatetime
    """When it was submitted, in UTC."""
    decided_at: AwareDatetime | None = None
    """When it was decided, in UTC."""
    decided_by: str | None = None
    """Who decided it (``reinstate`` for an expiry)."""
    decision_reason: str | None = None
    """Why, in the decider's words."""
    edited_args: dict[str, Any] | None = None
    """For an edited call, the arguments the reviewer released instead."""
    edited_text: str | None = None
    """For an edited output, the text the reviewer released instead."""

    @model_serializer(mode="wrap")
    def _id_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The item as a mapping led by its id, as it was before the submission's fields
        were inherited (they come first in a subclass), so a reader of ``review list
        --json`` or of a stored row sees which item it is before what it holds."""
        data: dict[str, Any] = handler(self)
        return {"id": data.pop("id"), **data} if "id" in data else data

    @property
    def released(self) -> bool:
        """Whether the call may run (the output may be shown): approved or edited only."""
        return self.status in ("approved", "edited")

    @property
    def final_args(self) -> dict[str, Any] | None:
        """The arguments to run the call with: the reviewer's when edited, else the
        submitted ones."""
        if self.status == "edited" and self.edited_args is not None:
            return self.edited_args
        return self.args

    @property
    def final_text(self) -> str | None:
        """The text to show: the reviewer's when edited, else the submitted one."""
        if self.status == "edited" and self.edited_text is not None:
            return self.edited_text
        return self.text


def review_id(number: int) -> str:
    """The id of the store's ``number``-th review item."""
    return f"{ID_PREFIX}{number}"


def review_number(review: str) -> int | None:
    """The store's number of an id such as ``R-17`` (``17`` alone is accepted too); None
    for text that names no item."""
    digits = review.strip().upper().removeprefix(ID_PREFIX)
    return int(digits) if digits.isdigit() and len(digits) < 19 else None


def new_item(number: int, submission: ReviewSubmission, at: datetime) -> ReviewItem:
    """A pending item from a submission, numbered by the store."""
    return ReviewItem(id=review_id(number), **submission.model_dump(), status="pending",
                      submitted_at=at)


def decided(item: ReviewItem, *, status: ReviewStatus, actor: str, reason: str, at: datetime,
            edited_args: dict[str, Any] | None = None,
            edited_text: str | None = None) -> ReviewItem:
    """``item`` as decided (the store checked it is still pending)."""
    return item.model_copy(update={
        "status": status, "decided_at": at, "decided_by": actor, "decision_reason": reason,
        "edited_args": edited_args, "edited_text": edited_text})


def held_key(kind: str) -> str:
    """The audit detail's key for the digest of what was held: ``args_sha256`` for a
    call, ``text_sha256`` for an output."""
    return "args_sha256" if kind == "call" else "text_sha256"


def held_digest(item: ReviewSubmission) -> str:
    """SHA-256 (hex) of what was held for a person: a call's arguments or an output's text,
    as canonical JSON (sorted keys, no spaces)."""
    value = item.args if item.kind == "call" else item.text
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def submit_detail(item: ReviewItem) -> dict[str, Any]:
    """The audit entry's detail for a submission: what it is, where it came from, and the
    digest of the arguments or text held (they stay in the queue; the entry names the item
    and chains what it holds, so a row changed behind the log is seen at release)."""
    return {"review": item.id, "kind": item.kind, "tool": item.tool, "rule": item.rule,
            "source": item.source, "run_id": item.run_id,
            held_key(item.kind): held_digest(item)}


def decision_detail(item: ReviewItem) -> dict[str, Any]:
    """The audit entry's detail for a decision: the item, its new status, the digest of
    the arguments or text the reviewer decided on and, for an edit, what the reviewer
    released instead."""
    detail: dict[str, Any] = {"review": item.id, "status": item.status, "kind": item.kind,
                              "tool": item.tool, held_key(item.kind): held_digest(item)}
    if item.edited_args is not None:
        detail["edited_args"] = item.edited_args
    if item.edited_text is not None:
        detail["edited_text"] = item.edited_text
    return detail
