"""A small support agent every adapter test reaches in its own way (fixture for the contract).

It looks up order A-1, refunds its total, and says what happened; a refused refund is
reported to the customer instead of crashing.
"""

from __future__ import annotations

from typing import Any


def respond(session: Any) -> str:
    order = session.call_tool("lookup_order", {"order_id": "A-1"})
    try:
        session.call_tool("issue_refund", {"order_id": "A-1", "amount": order["total"]})
    except Exception as exc:
        if type(exc).__name__ not in ("ToolFailed", "ToolDenied"):
            raise
        return f"Could not refund: {exc}"
    return f"Refunded ${order['total']:.2f}"


async def respond_async(session: Any) -> str:
    return respond(session)


def crash(session: Any) -> str:
    session.call_tool("lookup_order", {"order_id": "A-1"})
    raise RuntimeError("model provider unreachable")


async def hang(session: Any) -> str:
    import asyncio

    session.call_tool("lookup_order", {"order_id": "A-1"})
    await asyncio.sleep(3600)
    return "never"


def leave(session: Any) -> str:
    import sys

    sys.exit(3)


async def leave_async(session: Any) -> str:
    import sys

    sys.exit(4)


def whoami(session: Any) -> str:
    import os

    return str(os.getpid())


def uses_the_session_api(session: Any) -> str:
    from evalsuite import ToolDenied

    session.think("checking the tools I have")
    session.add_usage(10, 5)
    names = ",".join(t.name for t in session.tools)
    try:
        session.call_tool("issue_refund", {"order_id": "A-1", "amount": 1.0})
        denied = "no"
    except ToolDenied:
        denied = "yes"
    used = session.usage()
    return f"tools={names} usage={used.input_tokens}/{used.output_tokens} denied={denied}"
