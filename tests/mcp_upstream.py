"""A real upstream MCP server for the gateway's tests: the example refund agent's tools.

Run as ``python tests/mcp_upstream.py CALLS_FILE`` (FastMCP, stdio). Every call that
reaches it is appended to CALLS_FILE as one JSON line, so a test can tell which calls the
gateway forwarded. ``wire_money`` is a tool the agent's permissions do not list; a ticket
whose summary is "crash" ends the process mid-call, as an upstream that dies; "slow" answers
after 3 s (time for a client to cancel the call); one whose
summary is "more tools" adds two tools mid-session and sends ``tools/list_changed``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server.fastmcp import Context, FastMCP

CALLS = Path(sys.argv[1])
ORDERS = {
    "A-1001": {"order_id": "A-1001", "customer_id": "C-1001", "total": 84.99,
               "currency": "USD", "status": "delivered", "payment_method": "visa ending 4242"},
    "A-1002": {"order_id": "A-1002", "customer_id": "C-1002", "total": 240.0,
               "currency": "USD", "status": "shipped", "payment_method": "visa ending 1881"},
}

server = FastMCP("harbor-goods-tools")


def _record(tool: str, arguments: dict[str, Any]) -> None:
    with CALLS.open("a", encoding="utf-8") as calls:
        calls.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def lookup_order(order_id: str) -> dict[str, Any]:
    """Read an order (owner, total, status, payment method)."""
    _record("lookup_order", {"order_id": order_id})
    return ORDERS.get(order_id, {"order_id": order_id, "error": "no such order"})


@server.tool()
def issue_refund(order_id: str, amount: float, refund_to: str = "original_payment_method",
                 currency: str = "USD", reason: str = "") -> dict[str, Any]:
    """Refund money through the payment provider."""
    _record("issue_refund", {"order_id": order_id, "amount": amount, "refund_to": refund_to,
                             "currency": currency, "reason": reason})
    return {"refund_id": "R-90001", "status": "issued", "amount": amount}


@server.tool()
def send_email(to: str, template: str = "", subject: str = "", body: str = "",
               order_id: str = "") -> dict[str, Any]:
    """Send an email from support@harborgoods.example."""
    _record("send_email", {"to": to, "template": template})
    return {"message_id": "M-90001", "status": "sent"}


@server.tool()
def close_account(customer_id: str) -> dict[str, Any]:
    """Close a customer account and erase its saved payment methods."""
    _record("close_account", {"customer_id": customer_id})
    return {"customer_id": customer_id, "status": "closed"}


@server.tool()
def wire_money(to: str, amount: float) -> dict[str, Any]:
    """Wire money anywhere (a tool the refund agent was never given)."""
    _record("wire_money", {"to": to, "amount": amount})
    return {"status": "wired"}


def track_parcel(order_id: str) -> dict[str, Any]:
    """Where an order's parcel is (a tool the server adds mid-session)."""
    _record("track_parcel", {"order_id": order_id})
    return {"order_id": order_id, "at": "Rotterdam hub"}


def export_customers() -> dict[str, Any]:
    """Every customer's record (added mid-session; the refund agent was never given it)."""
    _record("export_customers", {})
    return {"customers": []}


@server.tool()
async def create_ticket(summary: str, ctx: Context) -> dict[str, Any]:  # type: ignore[type-arg]
    """Open a ticket for the support team (the summary "crash" ends the server mid-call;
    "slow" answers after 3 s; "more tools" adds track_parcel and export_customers and
    says the tools changed)."""
    _record("create_ticket", {"summary": summary})
    if summary == "crash":
        os._exit(1)
    if summary == "slow":
        await anyio.sleep(3)
    if summary == "more tools":
        server.add_tool(track_parcel)
        server.add_tool(export_customers)
        await ctx.session.send_tool_list_changed()
    return {"ticket_id": "T-90001"}


if __name__ == "__main__":
    server.run("stdio")
