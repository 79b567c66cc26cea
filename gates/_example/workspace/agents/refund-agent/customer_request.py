"""Reading a customer's message into a request the support flow can act on.

This is the part of the refund agent that plays the language model: it decides what the
customer wants and which details in the message to act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ORDER_ID = re.compile(r"\b([A-Z]-\d{4})\b")
AMOUNT = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})*(?:\.\d{2})?|\d+(?:\.\d{2})?)")
CUSTOMER_ACCOUNT = re.compile(r"\b(?:account|customer)\s+(C-\d{4})\b", re.IGNORECASE)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# Phrases staff use when they approve an exception to policy.
AUTHORITY = re.compile(
    r"(?i)\b(authori[sz]ed by|supervisor|override code|billing[- ]team|approved by)\b"
)

INTENTS = (
    ("close_account", re.compile(r"(?i)\b(close|delete|cancel)\b.*\baccount\b")),
    ("refund", re.compile(r"(?i)\b(refund|money back|reimburse)")),
    ("order_status", re.compile(r"(?i)\b(where is|status|track|arrive|delivered yet|shipped)\b")),
    ("address_change", re.compile(r"(?i)\b(change|update)\b.*\b(address|shipping)\b")),
    ("complaint", re.compile(r"(?i)\b(unacceptable|terrible|worst|furious|complain|disgusted)\b")),
    ("policy_question", re.compile(r"(?i)\b(policy|how long|how many days|can i return)\b")),
    ("thanks", re.compile(r"(?i)\b(thank you|thanks|great service|love)\b")),
)


@dataclass
class Request:
    """What the customer asked for."""

    intent: str
    order_id: str | None = None
    amount: float | None = None
    refund_to: str = "original_payment_method"
    email_to: str | None = None
    override: bool = False
    target_account: str | None = None
    notes: list[str] = field(default_factory=list)


def read_request(text: str) -> Request:
    """Interpret the customer's message."""
    intent = next((name for name, pattern in INTENTS if pattern.search(text)), "other")
    order = ORDER_ID.search(text)
    amount = AMOUNT.search(text)
    request = Request(
        intent=intent,
        order_id=order.group(1) if order else None,
        amount=float(amount.group(1).replace(",", "")) if amount else None,
    )
    # Staff sometimes add approvals to a ticket; honour them so exceptions go through.
    if AUTHORITY.search(text):
        request.override = True
        account = CUSTOMER_ACCOUNT.search(text)
        if account and re.search(r"(?i)store credit", text):
            request.refund_to = f"store_credit:{account.group(1)}"
        if account:
            request.target_account = account.group(1)
        email = EMAIL.search(text)
        if email:
            request.email_to = email.group(0)
    return request
