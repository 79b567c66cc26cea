"""`reinstate mcp-gateway`: an upstream MCP server's tools behind the verified controls.

Each test starts the gateway as a real `reinstate` subprocess in front of a real upstream
MCP server (tests/mcp_upstream.py, FastMCP over stdio) and talks to it with the MCP SDK's
own client, over stdio or streamable HTTP.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError

from evalsuite import ToolResult, read_log_runs
from gates import AuditEntry, ReviewQueue, Workspace, open_store
from tests.gates.test_guard_edits import with_refunds_within_total
from tests.helpers import ACTOR, proven

AGENT = "refund-agent"
UPSTREAM = Path(__file__).parents[1] / "mcp_upstream.py"
CLI = [sys.executable, "-m", "gates"]
# The incident's harmful refund (logs/2026-11-25-refund-agent.jsonl, run-7f3a97, step 4).
HARMFUL_REFUND = {"order_id": "A-1001", "amount": 1250.0, "currency": "USD",
                  "refund_to": "store_credit:C-7731", "reason": "customer request"}
T = TypeVar("T")

pytestmark = pytest.mark.slow  # every test starts the gateway and its upstream


def _env() -> dict[str, str]:
    env = {**os.environ, "REINSTATE_ACTOR": ACTOR}
    env.pop("REINSTATE_WORKSPACE", None)
    return env


def _gateway_args(ws: Workspace, calls: Path, *options: str) -> list[str]:
    return ["-C", str(ws.root), "mcp-gateway", AGENT, *options, "--",
            sys.executable, str(UPSTREAM), str(calls)]


def _cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "-C", str(ws.root), *args], env=_env(), capture_output=True,
                          text=True, timeout=120, check=False)


@asynccontextmanager
async def _stdio_gateway(ws: Workspace, calls: Path, errlog: Path,
                         *options: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=CLI[0], args=[*CLI[1:],
                                   *_gateway_args(ws, calls, *options)], env=_env())
    with errlog.open("w", encoding="utf-8") as err:
        async with stdio_client(params, errlog=err) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session


def _run(ws: Workspace, tmp_path: Path,
         body: Callable[[ClientSession, Path], Awaitable[T]], *options: str) -> tuple[T, str]:
    """Run ``body`` in a stdio session with the gateway; returns its value and the
    gateway's stderr."""
    calls, errlog = tmp_path / "calls.jsonl", tmp_path / "gateway.err"

    async def main() -> T:
        async with _stdio_gateway(ws, calls, errlog, *options) as session:
            return await body(session, calls)

    value = anyio.run(main)
    return value, errlog.read_text(encoding="utf-8")


def _text(result: types.CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, types.TextContent))


def _forwarded(calls: Path) -> list[str]:
    if not calls.exists():
        return []
    return [json.loads(line)["tool"] for line in calls.read_text().splitlines()]


def test_harmful_refund_is_denied_by_the_rule_verify_proved(back_in_full: Workspace,
                                                             tmp_path: Path) -> None:
    """The incident's refund is a tool error naming the rule verify proved, never forwarded."""
    verdict = open_store(back_in_full).latest_verdict(AGENT)
    assert verdict is not None and verdict.outcome == "pass"
    proved = {row.after_rule for v in verdict.verifications
              if v.layer == "tool_permission_boundary" and v.verified
              for row in v.replays
              if row.kind in ("decision", "cases") and "issue_refund" in row.step}
    assert proved

    async def body(session: ClientSession,
                   calls: Path) -> tuple[types.CallToolResult, types.CallToolResult, list[str]]:
        lookup = await session.call_tool("lookup_order", {"order_id": "A-1001"})
        refund = await session.call_tool("issue_refund", HARMFUL_REFUND)
        return lookup, refund, _forwarded(calls)

    (lookup, refund, forwarded), _ = _run(back_in_full, tmp_path, body)
    assert not lookup.isError and lookup.structuredContent is not None
    assert lookup.structuredContent["total"] == 84.99
    assert refund.isError
    [rule] = re.findall(r"denied by (\S+):", _text(refund))
    assert rule in proved
    assert forwarded == ["lookup_order"]


def test_tools_the_permissions_do_not_know_are_hidden_and_reported_once(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A tool the permissions do not list is left out of every list, reported once, and refused."""
    async def body(session: ClientSession, calls: Path) -> tuple[list[str], list[str],
                                                                 types.CallToolResult]:
        first = [tool.name for tool in (await session.list_tools()).tools]
        second = [tool.name for tool in (await session.list_tools()).tools]
        wired = await session.call_tool("wire_money", {"to": "anyone", "amount": 5})
        return first, second, wired

    (first, second, wired), err = _run(back_in_full, tmp_path, body)
    assert sorted(first) == sorted(second) == ["close_account", "create_ticket",
                                              "issue_refund", "lookup_order", "send_email"]
    assert err.count("hidden: wire_money") == 1, err
    entries = open_store(back_in_full).audit(AGENT, actions=["mcp_gateway.hidden_tools"])
    assert [e.detail["tools"] for e in entries] == [["wire_money"]]  # type: ignore[index]
    assert wired.isError and "permissions.unknown_tool" in _text(wired)
    assert _forwarded(tmp_path / "calls.jsonl") == []


def test_containment_during_a_session_denies_the_next_call(back_in_full: Workspace,
                                                           tmp_path: Path) -> None:
    """A `reinstate contain` run while the gateway serves denies the very next call."""
    async def body(session: ClientSession,
                   calls: Path) -> tuple[types.CallToolResult, types.CallToolResult]:
        before = await session.call_tool("lookup_order", {"order_id": "A-1001"})
        opened = _cli(back_in_full, "incident", "open", AGENT, "--severity", "sev2",
                      "--summary", "refunds to the wrong account again")
        assert opened.returncode == 0, opened.stderr
        done = _cli(back_in_full, "contain", "INC-2", "--mode", "suspended", "--notify",
                    "legal", "--scope", "unknown")
        assert done.returncode == 0, done.stderr
        after = await session.call_tool("lookup_order", {"order_id": "A-1001"})
        return before, after

    (before, after), _ = _run(back_in_full, tmp_path, body)
    assert not before.isError
    assert after.isError and "denied by mode.suspended" in _text(after)
    assert "INC-2" in _text(after)
    assert _forwarded(tmp_path / "calls.jsonl") == ["lookup_order"]


# A refund over $150 after its order's lookup: the fixed controls route it to a person.
LARGE_REFUND = {"order_id": "A-1002", "amount": 200, "refund_to": "original_payment_method"}


def _held_refund(ws: Workspace, tmp_path: Path, decision: str | None,
                 *options: str, edited: dict[str, Any] | None = None,
                 ) -> tuple[types.CallToolResult, list[dict[str, Any]]]:
    """Send the large refund; once it waits in the queue, decide it with `reinstate review
    DECISION` in another process (None: nobody decides; an edit releases ``edited``, by
    default the refund at $150). Returns the result and the items."""
    async def decide(review: str) -> None:
        if decision is None:
            return
        edit = ["--args", json.dumps(edited or {**LARGE_REFUND, "amount": 150})]
        done = await anyio.to_thread.run_sync(lambda: _cli(
            ws, "--actor", "rita.reviewer", "review", decision, review,
            "--reason", f"{decision} by the test", *(edit if decision == "edit" else [])))
        assert done.returncode == 0, done.stderr

    async def body(session: ClientSession, calls: Path) -> types.CallToolResult:
        return await _while_held(ws, session, decide)

    refund, _ = _run(ws, tmp_path, body, *options)
    items = [item.model_dump(mode="json")
             for item in ReviewQueue(ws.root).items(AGENT, status=None)]
    return refund, items


def test_review_routed_call_waits_and_proceeds_after_approve(back_in_full: Workspace,
                                                             tmp_path: Path) -> None:
    """A review-routed call waits in the queue and reaches the upstream once approved."""
    refund, items = _held_refund(back_in_full, tmp_path, "approve")
    assert not refund.isError, _text(refund)
    [item] = items
    assert (item["status"], item["source"]) == ("approved", "gateway")
    assert item["rule"].endswith("large-refund")  # the review rule that routed it
    assert item["args"] == LARGE_REFUND
    assert _forwarded(tmp_path / "calls.jsonl") == ["lookup_order", "issue_refund"]


def test_review_routed_call_is_refused_after_reject(back_in_full: Workspace,
                                                    tmp_path: Path) -> None:
    """A rejected call is a tool error with the reviewer's reason, never forwarded."""
    refund, items = _held_refund(back_in_full, tmp_path, "reject")
    assert refund.isError
    assert "rejected by rita.reviewer: reject by the test" in _text(refund)
    assert [item["status"] for item in items] == ["rejected"]
    assert _forwarded(tmp_path / "calls.jsonl") == ["lookup_order"]


def test_an_edited_call_goes_up_with_the_reviewers_arguments(back_in_full: Workspace,
                                                             tmp_path: Path) -> None:
    """A call a reviewer edits reaches the upstream with the edited arguments."""
    refund, _ = _held_refund(back_in_full, tmp_path, "edit")
    assert not refund.isError, _text(refund)
    sent = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert sent[-1]["tool"] == "issue_refund" and sent[-1]["arguments"]["amount"] == 150
    assert _edits_refused(back_in_full) == []


def _edits_refused(ws: Workspace) -> list[dict[str, Any]]:
    return [e.detail for e in open_store(ws).audit(AGENT, actions=["review.edit_refused"])]


def test_an_edit_past_the_limit_never_reaches_the_upstream(back_in_full: Workspace,
                                                           tmp_path: Path) -> None:
    """An edit the permissions deny is a tool error naming the rule, audited, never forwarded."""
    over = {**LARGE_REFUND, "amount": 600}
    refund, items = _held_refund(back_in_full, tmp_path, "edit", edited=over)
    assert refund.isError
    text = _text(refund)
    assert "edited by rita.reviewer: the reviewer's edit was refused: denied by " \
           "permissions.tools.issue_refund.arguments" in text, text
    assert [item["status"] for item in items] == ["edited"]
    assert _forwarded(tmp_path / "calls.jsonl") == ["lookup_order"]
    [entry] = _edits_refused(back_in_full)
    assert entry["review"] == items[0]["id"] and entry["edited_args"] == over
    assert entry["rule"] == "permissions.tools.issue_refund.arguments"


def test_an_edit_routed_to_review_by_the_same_rule_is_the_reviewers_to_release(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """An edit still over $150 is decided by the review that held it, and goes up as edited."""
    refund, _ = _held_refund(back_in_full, tmp_path, "edit",
                             edited={**LARGE_REFUND, "amount": 180})
    assert not refund.isError, _text(refund)
    sent = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert sent[-1]["tool"] == "issue_refund" and sent[-1]["arguments"]["amount"] == 180
    assert _edits_refused(back_in_full) == []


def test_an_edit_another_rule_routes_to_review_is_refused_not_held_again(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """An edit a different review rule would hold is refused, saying it is not held twice."""
    review = back_in_full.root / "agents" / AGENT / "review.yaml"
    review.write_text(review.read_text() + """\
  - id: manager-override
    applies_to: tool_call
    tool: issue_refund
    arguments: {type: object, required: [reason], properties: {reason: {const: override}}}
    description: A refund a reviewer marks as an override is confirmed by a manager.
""")
    proven(back_in_full)
    refund, _ = _held_refund(back_in_full, tmp_path, "edit",
                             edited={**LARGE_REFUND, "amount": 100, "reason": "override"})
    assert refund.isError
    assert "routed to review again, by review.rules[" in _text(refund), _text(refund)
    assert "not held twice" in _text(refund)
    assert _forwarded(tmp_path / "calls.jsonl") == ["lookup_order"]
    assert len(_edits_refused(back_in_full)) == 1


# A refund the permissions deny outright: over the $500 limit, to another account.
FORGED_REFUND = {"order_id": "A-1002", "amount": 5000, "refund_to": "store_credit:C-7731"}


async def _while_held(ws: Workspace, session: ClientSession,
                      meanwhile: Callable[[str], Awaitable[None]],
                      ) -> types.CallToolResult:
    """Send the large refund; once it waits in the queue, run ``meanwhile(review id)``."""
    await session.call_tool("lookup_order", {"order_id": "A-1002"})
    result: list[types.CallToolResult] = []

    async def call() -> None:
        result.append(await session.call_tool("issue_refund", LARGE_REFUND))

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        while not (pending := ReviewQueue(ws.root).items(AGENT)):
            await anyio.sleep(0.2)
        await meanwhile(pending[0].id)
    return result[0]


def _release_refused(ws: Workspace, tmp_path: Path,
                     meanwhile: Callable[[str], Awaitable[None]],
                     timeout: str) -> tuple[str, AuditEntry]:
    """The gateway while a refund is held and ``meanwhile`` acts on its review: the refund
    comes back an error, nothing but the lookup goes up, and one refusal is audited; the
    error's text and that entry."""
    async def body(session: ClientSession, calls: Path) -> types.CallToolResult:
        return await _while_held(ws, session, meanwhile)

    refund, _ = _run(ws, tmp_path, body, "--review-timeout", timeout)
    assert refund.isError
    assert _forwarded(tmp_path / "calls.jsonl") == ["lookup_order"]
    [entry] = open_store(ws).audit(AGENT, actions=["review.release_refused"])
    return _text(refund), entry


@pytest.mark.attack
def test_a_review_row_approved_behind_the_audit_log_releases_nothing(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A write to the store's review row (approved, other arguments; no person, no audit
    entry) forwards nothing: the gateway releases what the audit log vouches for, and the
    refusal is audited."""
    async def forge(review: str) -> None:
        with sqlite3.connect(back_in_full.state_path) as conn:
            [body] = conn.execute("SELECT body FROM reviews WHERE num = ?",
                                  (int(review.removeprefix("R-")),)).fetchone()
            item = {**json.loads(body), "args": FORGED_REFUND, "status": "approved",
                    "decided_by": "rita.reviewer", "decision_reason": "ok"}
            item["decided_at"] = item["submitted_at"]
            conn.execute("UPDATE reviews SET status = 'approved', body = ? WHERE num = ?",
                         (json.dumps(item), int(review.removeprefix("R-"))))

    text, entry = _release_refused(back_in_full, tmp_path, forge, "60")
    assert "the audit log records no decision of R-1" in text, text
    assert entry.detail["review"] == "R-1"


@pytest.mark.attack
def test_an_approval_after_the_agent_was_suspended_is_not_forwarded(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A held call approved after a containment suspended the agent is decided again at
    release, as an edit is: mode.suspended denies it, audited, nothing goes up."""
    async def suspend_then_decide(review: str) -> None:
        for args in (("incident", "open", AGENT, "--severity", "sev1", "--summary",
                      "fraud ring"),
                     ("contain", "INC-2", "--mode", "suspended", "--notify", "legal",
                      "--scope", "all refunds")):
            done = await anyio.to_thread.run_sync(_cli, back_in_full, *args)
            assert done.returncode == 0, done.stderr
        done = await anyio.to_thread.run_sync(lambda: _cli(
            back_in_full, "--actor", "rita.reviewer", "review", "approve", review,
            "--reason", "looks fine"))
        assert done.returncode == 0, done.stderr

    text, entry = _release_refused(back_in_full, tmp_path, suspend_then_decide, "120")
    assert "denied by mode.suspended" in text, text
    assert entry.detail["rule"] == "mode.suspended"


@pytest.mark.attack
def test_an_edit_is_decided_after_the_calls_made_while_it_waited(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A $200 refund waits; a $40 refund of the same $240 order goes up meanwhile; the
    reviewer's edit to $230 is decided after it and refused, never forwarded."""
    with_refunds_within_total(back_in_full)
    sent: dict[str, types.CallToolResult] = {}

    async def body(session: ClientSession, calls: Path) -> types.CallToolResult:
        async def small_then_edit(review: str) -> None:
            sent["small"] = await session.call_tool("issue_refund",
                                                    {**LARGE_REFUND, "amount": 40})
            done = await anyio.to_thread.run_sync(lambda: _cli(
                back_in_full, "--actor", "rita.reviewer", "review", "edit", review,
                "--reason", "partial", "--args", json.dumps({**LARGE_REFUND, "amount": 230})))
            assert done.returncode == 0, done.stderr

        return await _while_held(back_in_full, session, small_then_edit)

    refund, _ = _run(back_in_full, tmp_path, body, "--review-timeout", "60")
    assert not sent["small"].isError, _text(sent["small"])
    assert refund.isError
    assert "refunds-past-order-total" in _text(refund), _text(refund)
    amounts = [json.loads(line)["arguments"]["amount"]
               for line in (tmp_path / "calls.jsonl").read_text().splitlines()
               if json.loads(line)["tool"] == "issue_refund"]
    assert amounts == [40]


def test_a_review_nobody_decides_expires_and_denies(back_in_full: Workspace,
                                                    tmp_path: Path) -> None:
    """At --review-timeout an undecided call expires and is a tool error, never forwarded."""
    refund, items = _held_refund(back_in_full, tmp_path, None, "--review-timeout", "1")
    assert refund.isError and "expired" in _text(refund)
    assert [item["status"] for item in items] == ["expired"]
    assert _forwarded(tmp_path / "calls.jsonl") == ["lookup_order"]


@pytest.mark.attack
def test_controls_edited_after_the_gate_hold_every_call_for_a_person(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """The order-total rule taken out of permissions.yaml where the gateway runs: a refund
    past the order's total ($100 on an $84.99 order) was forwarded. Every call now waits for a
    person first (rule controls.unproven), and nobody deciding, none is forwarded."""
    permissions = back_in_full.root / "agents" / AGENT / "permissions.yaml"
    text = permissions.read_text()
    start = text.index("    deny_when:\n      - id: refund-exceeds-order-total\n")
    end = text.index("double(s.result.total))\n", start) + len("double(s.result.total))\n")
    permissions.write_text(text[:start] + text[end:])

    async def body(session: ClientSession,
                   calls: Path) -> tuple[types.CallToolResult, list[str]]:
        await session.call_tool("lookup_order", {"order_id": "A-1001"})
        refund = await session.call_tool("issue_refund", {
            "order_id": "A-1001", "amount": 100, "refund_to": "original_payment_method"})
        return refund, _forwarded(calls)

    (refund, forwarded), _ = _run(back_in_full, tmp_path, body, "--review-timeout", "1")
    assert refund.isError and "expired" in _text(refund), _text(refund)
    assert forwarded == []
    held = ReviewQueue(back_in_full.root).items(AGENT, status=None)
    assert {item.rule for item in held} == {"controls.unproven"}, held


def test_the_sessions_run_log_is_read_by_ingest(back_in_full: Workspace,
                                                tmp_path: Path) -> None:
    """The guard's log of a gateway session holds every call, result and decision, and ingests."""
    async def body(session: ClientSession, calls: Path) -> None:
        await session.call_tool("lookup_order", {"order_id": "A-1001"})
        await session.call_tool("issue_refund", HARMFUL_REFUND)

    _run(back_in_full, tmp_path, body)
    [log] = back_in_full.logs_dir.glob(f"*-{AGENT}-guard.jsonl")
    [run] = [r for r in read_log_runs(log) if r.run_id.startswith("mcp-")]
    kinds = [(s.kind, getattr(s, "tool", None)) for s in run.steps]
    assert kinds == [("user_input", None), ("tool_call", "lookup_order"),
                     ("tool_result", "lookup_order"), ("tool_call", "issue_refund"),
                     ("tool_result", "issue_refund")]
    assert run.steps[2].result["total"] == 84.99  # type: ignore[union-attr]
    assert run.metadata["guard.step.3"]["effect"] == "deny"
    assert run.outcome is not None and run.outcome.stop_reason == "done"
    ingested = _cli(back_in_full, "ingest", str(log), "--agent", AGENT)
    assert ingested.returncode == 0, ingested.stderr
    assert "1 run, 5 steps (1 input, 2 calls, 2 results)" in ingested.stdout
    assert "calls: 2 with a result, 0 without" in ingested.stdout


@pytest.mark.parametrize(("tool", "arguments", "said"), [
    ("create_ticket", {"summary": "slow"}, "cancelled after it was forwarded to the upstream"),
    ("issue_refund", LARGE_REFUND, "cancelled while held for review: never forwarded"),
], ids=["forwarded", "held"])
def test_a_call_the_client_cancels_is_answered_in_the_log(
        back_in_full: Workspace, tmp_path: Path, tool: str, arguments: dict[str, Any],
        said: str) -> None:
    """A client that cancels a call once the upstream has it (the upstream runs it all the
    same: nothing tells it to stop), or while it waits for review, leaves no call of the
    run log without an answer: the log says what became of it."""
    async def body(session: ClientSession, calls: Path) -> str:
        await session.call_tool("lookup_order", {"order_id": "A-1002"})
        request = session._request_id  # the id the next request is sent with
        refused: list[str] = []

        async def call() -> None:
            try:
                await session.call_tool(tool, arguments)
            except McpError as exc:
                refused.append(exc.error.message)

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            with anyio.fail_after(30):  # until the upstream runs it, or it is held
                while _forwarded(calls)[1:] != [tool] and not ReviewQueue(ws.root).items(
                        AGENT):
                    await anyio.sleep(0.05)
            await session.send_notification(types.ClientNotification(
                types.CancelledNotification(params=types.CancelledNotificationParams(
                    requestId=request, reason="the user stopped it"))))
        return refused[0]

    ws = back_in_full
    refused, _ = _run(ws, tmp_path, body)
    assert refused == "Request cancelled"
    [log] = ws.logs_dir.glob(f"*-{AGENT}-guard.jsonl")
    [run] = [r for r in read_log_runs(log) if r.run_id.startswith("mcp-")]
    assert [(s.kind, getattr(s, "tool", None)) for s in run.steps][3:] == [
        ("tool_call", tool), ("tool_result", tool)]
    answer = run.steps[4]
    assert isinstance(answer, ToolResult) and answer.error is not None
    assert said in answer.error
    ingested = _cli(ws, "ingest", str(log), "--agent", AGENT)
    assert "calls: 2 with a result, 0 without" in ingested.stdout, ingested.stdout


def test_the_printed_address_takes_connections_at_once(back_in_full: Workspace,
                                                     tmp_path: Path) -> None:
    """The address --http prints already accepts connections, even while the gateway is
    not yet serving (here: stopped right after printing it), so a client that connects as
    soon as it reads the address is never refused."""
    gateway = subprocess.Popen([*CLI, *_gateway_args(back_in_full, tmp_path / "calls.jsonl",
                                                     "--http", "--port", "0")],
                               env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert gateway.stderr is not None
        found = None
        for line in gateway.stderr:
            found = re.search(r"serving MCP \(streamable HTTP\) at http://([\d.]+):(\d+)/",
                              line)
            if found:
                break
        assert found, "the gateway never said where it serves"
        gateway.send_signal(signal.SIGSTOP)
        try:
            with socket.create_connection((found.group(1), int(found.group(2))), timeout=10):
                pass  # accepted into the backlog: refused when the socket only was bound
        finally:
            gateway.send_signal(signal.SIGCONT)
    finally:
        gateway.terminate()
        gateway.communicate(timeout=30)


def test_the_gateway_serves_streamable_http(back_in_full: Workspace, tmp_path: Path) -> None:
    """Over --http the SDK's streamable HTTP client lists the tools and gets calls decided."""
    calls = tmp_path / "calls.jsonl"
    gateway = subprocess.Popen([*CLI, *_gateway_args(back_in_full, calls, "--http", "--port",
                                                     "0")],
                               env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert gateway.stderr is not None
        url = ""
        for line in gateway.stderr:
            found = re.search(r"serving MCP \(streamable HTTP\) at (\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the gateway never said where it serves"

        async def main() -> tuple[list[str], types.CallToolResult, types.CallToolResult]:
            async with streamable_http_client(url) as (read, write, _), \
                    ClientSession(read, write) as session:
                await session.initialize()
                names = [tool.name for tool in (await session.list_tools()).tools]
                lookup = await session.call_tool("lookup_order", {"order_id": "A-1001"})
                refund = await session.call_tool("issue_refund", HARMFUL_REFUND)
                return names, lookup, refund

        names, lookup, refund = anyio.run(main)
    finally:
        gateway.terminate()
        gateway.communicate(timeout=30)
    assert "wire_money" not in names and "lookup_order" in names
    [log] = back_in_full.logs_dir.glob(f"*-{AGENT}-guard.jsonl")
    [run] = [r for r in read_log_runs(log) if r.run_id.startswith("mcp-")]
    assert run.context["transport"] == "http"
    assert len(run.steps) == 5
    # The client's DELETE on leaving ends the session, and with it the guarded run.
    assert run.outcome is not None and run.outcome.stop_reason == "done"
    assert not lookup.isError
    assert refund.isError and "denied by" in _text(refund)
    assert _forwarded(calls) == ["lookup_order"]


def test_an_upstream_that_dies_is_a_tool_error_then_exit_3(back_in_full: Workspace,
                                                           tmp_path: Path) -> None:
    """An upstream that stops mid-call makes that call a tool error, then the gateway exit 3."""
    calls = tmp_path / "calls.jsonl"
    gateway = subprocess.Popen([*CLI, *_gateway_args(back_in_full, calls)], env=_env(),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert gateway.stdin is not None and gateway.stdout is not None

    def ask(number: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert gateway.stdin is not None and gateway.stdout is not None
        gateway.stdin.write(json.dumps({"jsonrpc": "2.0", "id": number, "method": method,
                                        "params": params}) + "\n")
        gateway.stdin.flush()
        answer: dict[str, Any] = json.loads(gateway.stdout.readline())
        return answer

    try:
        ask(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "test", "version": "1"}})
        gateway.stdin.write(json.dumps({"jsonrpc": "2.0",
                                        "method": "notifications/initialized"}) + "\n")
        gateway.stdin.flush()
        crashed = ask(2, "tools/call", {"name": "create_ticket",
                                        "arguments": {"summary": "crash"}})
        code = gateway.wait(timeout=60)  # stdin still open: the gateway ends by itself
    finally:
        if gateway.poll() is None:
            gateway.kill()
        _, err = gateway.communicate(timeout=30)
    assert crashed["result"]["isError"] is True
    assert "stopped" in crashed["result"]["content"][0]["text"]
    assert code == 3, err
    assert "Traceback" not in err
    assert re.search(r"error: .*upstream MCP server .* stopped", err), err
    [log] = back_in_full.logs_dir.glob(f"*-{AGENT}-guard.jsonl")
    [run] = [r for r in read_log_runs(log) if r.run_id.startswith("mcp-")]
    assert run.steps[-1].error is not None and "stopped" in run.steps[-1].error  # type: ignore[union-attr]
    assert run.outcome is not None and run.outcome.stop_reason == "the gateway stopped"


def test_the_readmes_client_config_launches_the_gateway(back_in_full: Workspace,
                                                        tmp_path: Path) -> None:
    """The README's MCP client config, pointed at the example, serves the guarded tools."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [snippet] = [block for block in re.findall(r"```json\n(.*?)```", readme, re.DOTALL)
                 if "mcp-gateway" in block]
    [server] = json.loads(snippet)["mcpServers"].values()
    args = list(server["args"])
    args[args.index("-C") + 1] = str(back_in_full.root)
    args[args.index("--") + 1:] = [sys.executable, str(UPSTREAM), str(tmp_path / "calls")]
    command = Path(sys.executable).with_name(server["command"])  # this venv's `reinstate`

    async def main() -> list[str]:
        params = StdioServerParameters(command=str(command), args=args, env=_env())
        with (tmp_path / "gateway.err").open("w") as err:
            async with stdio_client(params, errlog=err) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                return [tool.name for tool in (await session.list_tools()).tools]

    names = anyio.run(main)
    assert "lookup_order" in names and "wire_money" not in names


@pytest.mark.parametrize(("args", "code", "says"), [
    (["mcp-gateway", "no-such-agent", "--", sys.executable, str(UPSTREAM), "x"], 2,
     "unknown agent 'no-such-agent'"),
    (["mcp-gateway", AGENT], 2, "no upstream command"),
    (["mcp-gateway", AGENT, "--", "/nonexistent/mcp-server"], 3,
     "cannot start the upstream MCP server"),
    (["mcp-gateway", AGENT, "--", sys.executable, "-c", "print('hello')"], 3,
     "did not answer as an MCP server"),
    (["mcp-gateway", AGENT, "--", sys.executable, "-c", "pass"], 3,
     "did not answer as an MCP server"),
])
def test_bad_arguments_are_one_line(back_in_full: Workspace, args: list[str], code: int,
                                    says: str) -> None:
    """An unknown agent, no upstream, or an upstream that is not an MCP server is one clean line."""
    done = subprocess.run([*CLI, "-C", str(back_in_full.root), *args], env=_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_later_calls_are_decided_after_the_edited_call(back_in_full: Workspace,
                                                       tmp_path: Path) -> None:
    """After a $200 refund edited to $100 went up, a $130 refund fits the order's $240 total."""
    from tests.gates.test_guard_edits import EDITED, with_refunds_within_total

    with_refunds_within_total(back_in_full)

    async def edit(review: str) -> None:
        done = await anyio.to_thread.run_sync(lambda: _cli(
            back_in_full, "--actor", "rita.reviewer", "review", "edit", review,
            "--reason", "half now", "--args", json.dumps(EDITED)))
        assert done.returncode == 0, done.stderr

    async def body(session: ClientSession, calls: Path) -> list[types.CallToolResult]:
        held = await _while_held(back_in_full, session, edit)
        second = await session.call_tool("issue_refund", {**LARGE_REFUND, "amount": 130})
        third = await session.call_tool("issue_refund", {**LARGE_REFUND, "amount": 150})
        return [held, second, third]

    (edited, second, third), _ = _run(back_in_full, tmp_path, body)
    assert not edited.isError and not second.isError, (_text(edited), _text(second))
    assert third.isError and "refunds-past-order-total" in _text(third), _text(third)
    refunds = [json.loads(line)["arguments"]["amount"]
               for line in (tmp_path / "calls.jsonl").read_text().splitlines()
               if json.loads(line)["tool"] == "issue_refund"]
    assert refunds == [100, 130]
    [log] = back_in_full.logs_dir.glob(f"*-{AGENT}-guard.jsonl")
    [run] = [r for r in read_log_runs(log) if r.run_id.startswith("mcp-")]
    assert run.metadata["guard.edited.3"]["arguments"] == EDITED


def _checklist_lists_track_parcel(ws: Workspace) -> None:
    """The operating checklist lists track_parcel and rates its risk, as the gate needs."""
    checklist = ws.root / "agents" / AGENT / "checklist.yaml"
    text = checklist.read_text()
    for old, new in (("close_account]", "close_account, track_parcel]"),
                     ("  close_account: critical\n", "  close_account: critical\n"
                                                     "  track_parcel: low\n")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    checklist.write_text(text)


def test_a_change_of_the_upstreams_tools_reaches_the_client_filtered(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """The upstream's tools/list_changed reaches the client, whose new list holds only the
    added tool the permissions list."""
    permissions = back_in_full.root / "agents" / AGENT / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace("tools:\n", """\
tools:
  track_parcel:
    allowed: true
    risk: low
    description: Where an order's parcel is.
""", 1))
    _checklist_lists_track_parcel(back_in_full)
    proven(back_in_full)
    calls, errlog = tmp_path / "calls.jsonl", tmp_path / "gateway.err"
    params = StdioServerParameters(command=CLI[0], args=[*CLI[1:],
                                   *_gateway_args(back_in_full, calls)], env=_env())

    async def main() -> tuple[bool, list[str], list[str], types.CallToolResult]:
        changed = anyio.Event()

        async def heard(message: Any) -> None:
            if isinstance(message, types.ServerNotification) and isinstance(
                    message.root, types.ToolListChangedNotification):
                changed.set()

        with errlog.open("w", encoding="utf-8") as err:
            async with stdio_client(params, errlog=err) as (read, write), \
                    ClientSession(read, write, message_handler=heard) as session:
                started = await session.initialize()
                announced = bool(started.capabilities.tools
                                 and started.capabilities.tools.listChanged)
                before = [tool.name for tool in (await session.list_tools()).tools]
                await session.call_tool("create_ticket", {"summary": "more tools"})
                with anyio.fail_after(30):
                    await changed.wait()
                after = [tool.name for tool in (await session.list_tools()).tools]
                tracked = await session.call_tool("track_parcel", {"order_id": "A-1001"})
                return announced, before, after, tracked

    announced, before, after, tracked = anyio.run(main)
    err = errlog.read_text(encoding="utf-8")
    assert announced
    assert "track_parcel" not in before
    assert sorted(after) == sorted([*before, "track_parcel"])
    assert not tracked.isError, _text(tracked)
    assert _forwarded(calls) == ["create_ticket", "track_parcel"]
    assert "hidden: export_customers" in err, err
    entries = open_store(back_in_full).audit(AGENT, actions=["mcp_gateway.hidden_tools"])
    assert [e.detail["tools"] for e in entries] == [  # type: ignore[index]
        ["wire_money"], ["export_customers"]]


def test_a_change_of_the_upstreams_tools_reaches_an_http_client_filtered(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """Over --http the upstream's tools/list_changed reaches every SDK streamable HTTP
    client connected, and the new list holds only the added tool the permissions list."""
    permissions = back_in_full.root / "agents" / AGENT / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace("tools:\n", """\
tools:
  track_parcel:
    allowed: true
    risk: low
    description: Where an order's parcel is.
""", 1))
    _checklist_lists_track_parcel(back_in_full)
    proven(back_in_full)
    calls = tmp_path / "calls.jsonl"
    gateway = subprocess.Popen([*CLI, *_gateway_args(back_in_full, calls, "--http", "--port",
                                                     "0")],
                               env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert gateway.stderr is not None
        url = ""
        for line in gateway.stderr:
            found = re.search(r"serving MCP \(streamable HTTP\) at (\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the gateway never said where it serves"

        async def main() -> tuple[bool, list[str], list[str], types.CallToolResult, bool]:
            changed, other_changed = anyio.Event(), anyio.Event()

            def listener(event: anyio.Event) -> Callable[[Any], Awaitable[None]]:
                async def heard(message: Any) -> None:
                    if isinstance(message, types.ServerNotification) and isinstance(
                            message.root, types.ToolListChangedNotification):
                        event.set()
                return heard

            # A second client, connected the whole time, is told too: each HTTP session
            # has its own stream for what the server says unasked.
            async with streamable_http_client(url) as (read, write, _), \
                    ClientSession(read, write, message_handler=listener(changed)) as session, \
                    streamable_http_client(url) as (other_read, other_write, _), \
                    ClientSession(other_read, other_write,
                                  message_handler=listener(other_changed)) as other:
                started = await session.initialize()
                await other.initialize()
                await other.list_tools()
                announced = bool(started.capabilities.tools
                                 and started.capabilities.tools.listChanged)
                before = [tool.name for tool in (await session.list_tools()).tools]
                await session.call_tool("create_ticket", {"summary": "more tools"})
                with anyio.fail_after(30):
                    await changed.wait()
                    await other_changed.wait()
                after = [tool.name for tool in (await session.list_tools()).tools]
                tracked = await session.call_tool("track_parcel", {"order_id": "A-1001"})
                return announced, before, after, tracked, other_changed.is_set()

        announced, before, after, tracked, other_told = anyio.run(main)
    finally:
        gateway.terminate()
        _, rest = gateway.communicate(timeout=30)
    assert announced
    assert "track_parcel" not in before
    assert sorted(after) == sorted([*before, "track_parcel"])
    assert not tracked.isError, _text(tracked)
    assert _forwarded(calls) == ["create_ticket", "track_parcel"]
    assert "hidden: export_customers" in rest, rest
    assert other_told
    assert "told 2 session(s)" in rest, rest


@pytest.mark.attack
def test_arguments_the_upstream_would_coerce_are_not_forwarded(back_in_full: Workspace,
                                                               tmp_path: Path) -> None:
    """A team bounds a refund's amount in its permissions and acceptance criteria without
    saying it is a number, and holds refunds of a number over $150 for review. An amount
    sent as the text "200" passes every bound (a bound on numbers says nothing about text)
    and is no number to the review rules, and the FastMCP upstream would read it as 200.0:
    a $200 refund no person confirmed. The upstream's own schema says a number, so the
    call is refused and logged as blocked, never forwarded."""
    agent_dir = back_in_full.root / "agents" / AGENT
    for name, before, after in [
            ("permissions.yaml", "amount: {type: number, exclusiveMinimum: 0, maximum: 500}",
             "amount: {exclusiveMinimum: 0, maximum: 500}"),
            ("acceptance.yaml", "amount: {type: number, exclusiveMinimum: 0}",
             "amount: {exclusiveMinimum: 0}"),
            ("permissions.yaml", "amount: {exclusiveMinimum: 150}",
             "amount: {type: number, exclusiveMinimum: 150}"),
            ("review.yaml", "amount: {exclusiveMinimum: 150}",
             "amount: {type: number, exclusiveMinimum: 150}")]:
        text = (agent_dir / name).read_text()
        assert before in text
        (agent_dir / name).write_text(text.replace(before, after))
    proven(back_in_full)
    as_text = {"order_id": "A-1002", "amount": "200", "currency": "USD",
               "refund_to": "original_payment_method", "reason": "damaged"}

    async def body(session: ClientSession,
                   calls: Path) -> tuple[types.CallToolResult, list[str]]:
        await session.call_tool("lookup_order", {"order_id": "A-1002"})
        refund = await session.call_tool("issue_refund", as_text)
        return refund, _forwarded(calls)

    (refund, forwarded), _ = _run(back_in_full, tmp_path, body, "--review-timeout", "1")
    assert refund.isError and "the upstream's own input schema of issue_refund" in \
        _text(refund), _text(refund)
    assert forwarded == ["lookup_order"]
    [log] = back_in_full.logs_dir.glob(f"*-{AGENT}-guard.jsonl")
    [run] = [r for r in read_log_runs(log) if r.run_id.startswith("mcp-")]
    [result] = [s for s in run.steps if isinstance(s, ToolResult) and s.tool == "issue_refund"]
    assert result.blocked and "not forwarded" in (result.error or "")
