"""The review queue's web page: pending items with their forms, and the latest decisions."""

from __future__ import annotations

import json

from gates._reports.templating import render_html
from gates._store.reviews import ReviewItem

# How many decided items the page shows under the pending ones.
DECIDED_SHOWN = 20


def held(item: ReviewItem, width: int = 120) -> str:
    """One line saying what an item holds: ``tool({args})`` or ``output: text``."""
    if item.kind == "call":
        text = f"{item.tool}({json.dumps(item.args or {}, ensure_ascii=False, default=str)})"
    else:
        text = f"output: {item.text or ''}"
    text = " ".join(text.split())
    return text if len(text) <= width else f"{text[:width - 1]}…"


def review_page_html(pending: list[ReviewItem], decided: list[ReviewItem], *, token: str,
                     actor: str, where: str, message: str = "", problem: bool = False,
                     unlike: dict[str, str] | None = None) -> str:
    """The page: ``pending`` oldest first with approve / reject / edit forms carrying
    ``token``, then the last :data:`DECIDED_SHOWN` of ``decided``, newest first. An item
    in ``unlike`` (its row is not what was submitted, and why) is flagged and can only be
    rejected."""
    latest = sorted(decided, key=lambda i: i.decided_at or i.submitted_at,
                    reverse=True)[:DECIDED_SHOWN]
    return render_html("review.html.j2", pending=pending, decided=latest, token=token,
                       actor=actor, where=where, message=message, problem=problem, what=held,
                       unlike=unlike or {})
