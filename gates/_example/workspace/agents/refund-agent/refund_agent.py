"""The refund agent of an online shop's customer support: orders, refunds, accounts.

An agent is a function ``respond(session) -> str``. In production the session's tools
reach the order system, the payment provider and the mailer; under reinstate's evals
they are answered from each case's fixtures.
"""

from __future__ import annotations

from typing import Any

from customer_request import Request, read_request

SIGNATURE = "— Harbor Goods support"


def respond(session: Any) -> str:
    """Answer the customer's latest message."""
    text = next(m["content"] for m in reversed(session.messages) if m["role"] == "user")
    customer = session.context.get("customer_id")
    request = read_request(text)
    session.think(f"intent={request.intent} order={request.order_id} amount={request.amount} "
                  f"override={request.override}")
    handler = HANDLERS.get(request.intent, _other)
    answer = handler(session, request, customer)
    return " ".join([*request.notes, answer, SIGNATURE])


def _tool_refused(exc: Exception) -> bool:
    """A tool error or a denial by the permission layer: the agent answers, it does not crash."""
    return type(exc).__name__ in ("ToolFailed", "ToolDenied")


def _lookup(session: Any, order_id: str) -> dict[str, Any] | None:
    try:
        order: dict[str, Any] = session.call_tool("lookup_order", {"order_id": order_id})
    except Exception as exc:
        if not _tool_refused(exc):
            raise
        return None
    return order


def _refund(session: Any, request: Request, customer: str | None) -> str:
    if request.order_id is None:
        return "I can help with a refund. Which order is it about? (It starts with A-.)"
    order = _lookup(session, request.order_id)
    if order is None:
        return f"I couldn't find order {request.order_id}. Could you check the number?"
    if order["customer_id"] != customer and not request.override:
        return f"Order {request.order_id} isn't on your account, so I can't refund it."
    if not order["refundable"]:
        return (f"Order {request.order_id} is outside our 30-day refund window, so I can't "
                f"refund it, but I can open a ticket if the item is faulty.")
    total = float(order["total"])
    amount = request.amount if request.amount is not None else total
    if amount > total and not request.override:
        return (f"I can refund at most the order total of ${total:,.2f} for "
                f"{request.order_id}. Reply 'yes' and I'll refund ${total:,.2f} to your "
                f"original payment method.")
    try:
        refund = session.call_tool("issue_refund", {
            "order_id": request.order_id, "amount": round(amount, 2),
            "currency": order["currency"], "refund_to": request.refund_to,
            "reason": "customer request",
        })
    except Exception as exc:
        if not _tool_refused(exc):
            raise
        return ("I couldn't issue that refund myself, so I've passed it to a colleague who "
                "will get back to you within one business day.")
    recipient = request.email_to or order["email"]
    if request.email_to:
        email = {"to": recipient, "subject": "Refund issued",
                 "body": f"Refund {refund['refund_id']} of ${amount:,.2f} issued to "
                         f"{request.refund_to}."}
    else:
        email = {"to": recipient, "template": "refund_confirmation",
                 "order_id": request.order_id}
    try:
        session.call_tool("send_email", email)
    except Exception as exc:  # the refund stands even when the confirmation cannot go out
        if not _tool_refused(exc):
            raise
    where = ("your original payment method" if request.refund_to == "original_payment_method"
             else request.refund_to.replace("store_credit:", "store credit on account "))
    approved = "As authorized by the billing supervisor, " if request.override else ""
    return (f"{approved}I've issued a refund of ${amount:,.2f} to {where} for "
            f"{request.order_id} (refund {refund['refund_id']}). It takes 5-10 business days.")


def _order_status(session: Any, request: Request, customer: str | None) -> str:
    if request.order_id is None:
        return "Which order would you like me to check? (It starts with A-.)"
    order = _lookup(session, request.order_id)
    if order is None:
        return f"I couldn't find order {request.order_id}. Could you check the number?"
    if order["customer_id"] != customer:
        return f"Order {request.order_id} isn't on your account, so I can't share its status."
    status = order["status"]
    if status == "shipped":
        return (f"Order {request.order_id} has shipped; tracking number "
                f"{order.get('tracking', 'pending')}.")
    if status == "delivered":
        return f"Order {request.order_id} was delivered on {order.get('delivered_on', 'record')}."
    return f"Order {request.order_id} is {status}; we'll email you when it ships."


def _close_account(session: Any, request: Request, customer: str | None) -> str:
    target = request.target_account if request.override and request.target_account else customer
    if target != customer:
        return "I can only close the account you're signed in with."
    session.call_tool("close_account", {"customer_id": target, "reason": "customer request"})
    return ("I've requested the closure of your account. A colleague confirms it within one "
            "business day, and you'll get an email when it's done.")


def _ticket(session: Any, category: str, summary: str, customer: str | None) -> str:
    ticket = session.call_tool("create_ticket", {
        "customer_id": customer, "category": category, "summary": summary[:200],
    })
    return f"I've opened ticket {ticket['ticket_id']} and a colleague will get back to you."


def _complaint(session: Any, request: Request, customer: str | None) -> str:
    text = next(m["content"] for m in reversed(session.messages) if m["role"] == "user")
    return "I'm sorry about this. " + _ticket(session, "complaint", text, customer)


def _address_change(session: Any, request: Request, customer: str | None) -> str:
    text = next(m["content"] for m in reversed(session.messages) if m["role"] == "user")
    return ("Address changes need a quick check by our team. "
            + _ticket(session, "address_change", text, customer))


def _policy(session: Any, request: Request, customer: str | None) -> str:
    return ("You can return most items within 30 days of delivery for a full refund to your "
            "original payment method.")


def _thanks(session: Any, request: Request, customer: str | None) -> str:
    return "Thank you, that's kind of you to say! Is there anything else I can help with?"


def _other(session: Any, request: Request, customer: str | None) -> str:
    return ("I can help with orders, refunds, returns and your account. What do you need?")


HANDLERS = {
    "refund": _refund,
    "order_status": _order_status,
    "close_account": _close_account,
    "complaint": _complaint,
    "address_change": _address_change,
    "policy_question": _policy,
    "thanks": _thanks,
}
