"""`reinstate review …` on a real workspace, and the example agent behind the guard waiting
in the review queue until a person approves from the command line."""

from __future__ import annotations

import importlib
import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evalsuite import ToolResult, read_log_runs
from gates import (
    Guard,
    GuardedRun,
    ReviewItem,
    ReviewQueue,
    ReviewSubmission,
    Workspace,
    hold_for_review,
    open_store,
)
from tests.conftest import RunCli
from tests.helpers import ACTOR, held_refund

AGENT = "refund-agent"
InlineCli = Callable[..., tuple[int, str, str]]


def _queued(ws: Workspace) -> tuple[ReviewItem, ReviewItem]:
    queue = ReviewQueue(ws)
    call = queue.submit(AGENT, kind="call", tool="issue_refund",
                        args={"order_id": "A-1001", "amount": 900}, rule="review.rules[0]",
                        reason="refunds over 500 go to a person", source="guard")
    out = queue.submit(AGENT, kind="output", text="Refunded $900.\x1b[2J", reason="review mode",
                       rule="mode.review", source="gateway")
    return call, out


def test_list_and_show_print_the_pending_items(example: Workspace,
                                               inline_cli: InlineCli) -> None:
    """`review list` shows each pending item on one line; `show --json` reads back the item."""
    code, out, _ = inline_cli(example, "review", "list")
    assert code == 0 and "0 pending item(s)" in out
    call, text = _queued(example)
    code, out, _ = inline_cli(example, "review", "list", AGENT)
    assert code == 0 and "2 pending item(s)" in out
    assert 'R-1  refund-agent  pending' in out and 'issue_refund({"order_id": "A-1001"' in out
    assert "\\x1b[2J" in out and "\x1b" not in out  # an escape in an output is shown, inert
    code, out, _ = inline_cli(example, "review", "show", call.id, "--json")
    assert code == 0 and ReviewItem.model_validate(json.loads(out)) == call
    code, out, _ = inline_cli(example, "review", "show", text.id)
    assert code == 0 and "routed because: review mode" in out and "source:         gateway" in out



@pytest.mark.attack
def test_hidden_characters_in_held_arguments_are_shown_not_obeyed(
        example: Workspace, inline_cli: InlineCli) -> None:
    r"""A bidi override makes a terminal show ``ACC-\u202e1234`` as ``ACC-4321``, and a
    zero-width space or a Unicode tag shows as nothing: `review list` and `review show`
    print each as its escape, so the reviewer reads the arguments that would run."""
    sneaky = {"to_account": "ACC-\u202e1234\u202c", "memo": "ok\u200b\U000e0041"}
    ReviewQueue(example).submit(AGENT, kind="call", tool="wire_money", args=sneaky,
                                reason="every wire", source="guard")
    for command in (("list",), ("show", "R-1")):
        code, out, _ = inline_cli(example, "review", *command)
        assert code == 0
        assert not any(c in out for c in "\u202e\u202c\u200b\U000e0041"), ascii(out)
        assert "ACC-\\u202e1234\\u202c" in out and "ok\\u200b\\U000e0041" in out, out


def test_serve_on_an_address_in_use_names_it(example: Workspace,
                                             inline_cli: InlineCli) -> None:
    """`review serve --port N` with N taken: one line naming the address, exit 2 (before:
    "Address already in use" naming no address, exit 3)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = inline_cli(example, "review", "serve", "--port", str(port))
    assert code == 2 and "review queue:" not in out
    assert f"not 127.0.0.1:{port} (Address already in use)" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

def test_decisions_are_recorded_once_with_their_exit_codes(example: Workspace,
                                                           inline_cli: InlineCli) -> None:
    """approve, reject and edit decide once (exit 0); again exits 1, an unknown id 2."""
    call, text = _queued(example)
    code, out, _ = inline_cli(example, "review", "edit", call.id, "--reason", "cap it",
                              "--args", '{"order_id": "A-1001", "amount": 500}')
    assert code == 0 and "R-1 edited by test.engineer: cap it (released)" in out
    code, out, _ = inline_cli(example, "review", "reject", text.id, "--reason", "wrong tone")
    assert code == 0 and "not released" in out
    code, _, err = inline_cli(example, "review", "approve", call.id, "--reason", "fine")
    assert code == 1 and "R-1 was already decided: edited by test.engineer" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = inline_cli(example, "review", "approve", "R-7", "--reason", "fine")
    assert code == 2 and "review 'R-7': no such item" in err
    code, out, _ = inline_cli(example, "review", "list", "--all", "--json")
    listed = {i["id"]: i for i in json.loads(out)}
    assert listed["R-1"]["edited_args"] == {"order_id": "A-1001", "amount": 500}
    assert listed["R-2"]["status"] == "rejected"
    actions = [(e.action, e.actor) for e in open_store(example).audit()]
    assert actions[-2:] == [("review.edit", ACTOR), ("review.reject", ACTOR)]


@pytest.mark.parametrize("args", [
    ("approve", "R-1"),  # no --reason
    ("edit", "R-1", "--reason", "x"),  # neither --args nor --text
    ("edit", "R-1", "--reason", "x", "--args", "[1, 2]"),  # not an object
    ("edit", "R-1", "--reason", "x", "--args", "{oops"),  # not JSON
    ("edit", "R-1", "--reason", "x", "--text", "hello"),  # text for a call
])
def test_bad_decisions_exit_2_and_change_nothing(example: Workspace, inline_cli: InlineCli,
                                                 args: tuple[str, ...]) -> None:
    """A decision without a reason or with a change that does not fit writes nothing."""
    _queued(example)
    before = open_store(example).audit()
    code, _, err = inline_cli(example, "review", *args)
    assert code == 2 and "Traceback" not in err
    assert open_store(example).audit() == before
    assert ReviewQueue(example).get("R-1").status == "pending"


@pytest.mark.slow
def test_approve_in_a_real_process(example: Workspace, cli: RunCli) -> None:
    """`reinstate review approve` as a user runs it: exit 0, the item released."""
    call, _ = _queued(example)
    result = cli("review", "approve", call.id, "--reason", "customer confirmed",
                 cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "R-1 approved by test.engineer" in result.stdout
    done = ReviewQueue(example).get(call.id)
    assert done.released and done.decided_by == "test.engineer"


class ToolDenied(Exception):  # the example agent knows a refusal by this name
    """A call the controls or a reviewer did not let through."""


class GuardedSession:
    """The session the example agent talks to, each call decided by the guard and held in
    the review queue when routed there."""

    def __init__(self, run: GuardedRun, queue: ReviewQueue, goal: str,
                 tools: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.run, self.queue, self.tools = run, queue, tools
        self.messages = [{"role": "user", "content": goal}]
        self.context = run.context

    def think(self, text: str) -> None:
        """The agent's reasoning (not logged here)."""

    def call_tool(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run a tool only as the guard (and, for review, a person) allows."""
        args = dict(arguments or {})
        decision = self.run.call(tool, args)
        if decision.effect == "review":
            item = hold_for_review(self.queue, self.run, decision, timeout_s=60, poll_s=0.05)
            if not item.released:
                raise ToolDenied(f"{item.status} in review {item.id}")
            args = item.final_args or {}
        elif decision.effect == "deny":
            raise ToolDenied(decision.reason)
        assert decision.call_id is not None
        value = self.tools[tool](args)
        self.run.result(decision.call_id, value)
        return value


def _example_agent(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example agent's module, with its workspace's state store made (a guard with no
    store fails closed)."""
    open_store(ws).create()  # type: ignore[union-attr]
    monkeypatch.syspath_prepend(str(ws.agent_dir(AGENT)))
    return importlib.import_module("refund_agent")


@pytest.mark.slow
def test_a_review_routed_call_waits_and_proceeds_after_approve(
        example: Workspace, cli: RunCli, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The example agent's account closure waits in the queue and runs once approved."""
    agent = _example_agent(example, monkeypatch)
    closed: list[dict[str, Any]] = []
    tools = {"close_account": lambda args: closed.append(args) or {"closed": True}}
    guard = Guard(example.root, AGENT, log=tmp_path / "guard.jsonl")
    queue = ReviewQueue(example)
    answer: list[str] = []

    def live() -> None:
        goal = "Please close my account, I am moving abroad."
        with guard.run("live-close", goal=goal, context={"customer_id": "C-1001"}) as run:
            answer.append(agent.respond(GuardedSession(run, queue, goal, tools)))

    waiting = threading.Thread(target=live)
    waiting.start()
    deadline = time.monotonic() + 60
    while not queue.items() and time.monotonic() < deadline:
        time.sleep(0.05)
    [item] = queue.items()
    assert (item.tool, item.args, item.source, item.run_id) == (
        "close_account", {"customer_id": "C-1001", "reason": "customer request"}, "guard",
        "live-close")
    time.sleep(0.3)
    assert waiting.is_alive() and closed == []  # held: the tool has not run
    result = cli("review", "approve", item.id, "--reason", "customer confirmed by phone",
                 cwd=example.root)
    assert result.returncode == 0, result.stderr
    waiting.join(60)
    guard.close()
    assert closed == [{"customer_id": "C-1001", "reason": "customer request"}]
    assert "requested the closure of your account" in answer[0]
    [run] = read_log_runs(tmp_path / "guard.jsonl")
    results = [s for s in run.steps if isinstance(s, ToolResult)]
    assert [(r.tool, r.blocked) for r in results] == [("close_account", False)]
    assert run.metadata[f"guard.step.{1}"]["effect"] == "review"


def _closure_held_while(example: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        run_id: str, meddle: Callable[[ReviewQueue], None],
                        ) -> tuple[list[dict[str, Any]], ToolResult]:
    """The example agent asked to close an account (held for review) while ``meddle`` acts
    on the queue once the item is pending: the calls that ran, and the call's logged
    result. The agent must be refused."""
    agent = _example_agent(example, monkeypatch)
    closed: list[dict[str, Any]] = []
    tools = {"close_account": lambda args: closed.append(args)}
    guard = Guard(example.root, AGENT, log=tmp_path / "guard.jsonl")
    queue = ReviewQueue(example)

    def when_pending() -> None:
        while not queue.items():
            time.sleep(0.05)
        meddle(queue)

    meddling = threading.Thread(target=when_pending)
    meddling.start()
    goal = "close my account"
    with guard.run(run_id, goal=goal, context={"customer_id": "C-1001"}) as run, \
            pytest.raises(ToolDenied, match="rejected in review R-1"):
        agent.respond(GuardedSession(run, queue, goal, tools))
    meddling.join(30)
    guard.close()
    [logged] = read_log_runs(tmp_path / "guard.jsonl")
    [result] = [s for s in logged.steps if isinstance(s, ToolResult)]
    return closed, result


@pytest.mark.slow
def test_a_rejected_call_is_logged_blocked_and_never_runs(
        example: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reviewer's rejection reaches the agent as a refusal and the run log as blocked."""
    def reject(queue: ReviewQueue) -> None:
        queue.reject(queue.items()[0].id, actor="alice", reason="not the account holder")

    closed, blocked = _closure_held_while(example, tmp_path, monkeypatch, "live-reject",
                                          reject)
    assert closed == []
    assert blocked.blocked and "rejected in review R-1 by alice" in (blocked.error or "")


@pytest.mark.attack
def test_a_call_whose_queue_row_is_deleted_is_denied_and_logged_blocked(
        example: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A held call's row deleted from the SQLite store while its runtime waits: the call
    is denied, never runs, and is logged blocked naming the deleted item, with a
    review.release_refused audit entry (as a decision the log does not vouch for)."""
    store = open_store(example)

    def delete(_: ReviewQueue) -> None:
        with sqlite3.connect(store.path) as conn:  # type: ignore[union-attr]
            conn.execute("DELETE FROM reviews")

    closed, blocked = _closure_held_while(example, tmp_path, monkeypatch, "live-deleted",
                                          delete)
    assert closed == []
    assert blocked.blocked and "R-1 was deleted from the review queue" in (blocked.error or "")
    [refused] = store.audit(AGENT, actions=("review.release_refused",))
    assert refused.detail["review"] == "R-1" and "deleted" in (refused.reason or "")


@pytest.mark.slow
def test_the_readmes_review_snippet_runs_as_printed(example: Workspace,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Guard + ReviewQueue snippet holds the closure until it is approved."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    [guard_snippet] = [b for b in blocks if "gates.Guard(" in b]
    [review_snippet] = [b for b in blocks if "gates.hold_for_review(" in b]
    open_store(example).create()
    monkeypatch.chdir(example.root)
    closed: list[str] = []
    scope: dict[str, Any] = {"message": "close my account",
                             "close_account": lambda customer_id: closed.append(customer_id)}
    exec(guard_snippet, scope)
    queue = ReviewQueue(example)

    def reviewer() -> None:
        while not queue.items():
            time.sleep(0.05)
        queue.approve(queue.items()[0].id, actor="alice", reason="confirmed")

    deciding = threading.Thread(target=reviewer)
    deciding.start()
    exec(review_snippet, scope)
    deciding.join(30)
    scope["guard"].close()
    assert scope["item"].released and closed == ["C-1001"]


def test_an_item_is_its_submission_and_its_json_leads_with_the_id(
        example: Workspace, inline_cli: InlineCli) -> None:
    """An item carries its submission's fields, and `show --json` gives id, then them, then
    the decision."""
    assert issubclass(ReviewItem, ReviewSubmission)
    call, _ = _queued(example)
    code, out, _ = inline_cli(example, "review", "show", call.id, "--json")
    assert code == 0
    keys = list(json.loads(out))
    assert keys == ["id", *ReviewSubmission.model_fields, "status", "submitted_at", "decided_at",
                    "decided_by", "decision_reason", "edited_args", "edited_text"]
    code, out, _ = inline_cli(example, "review", "list", "--json")
    assert code == 0 and [next(iter(item)) for item in json.loads(out)] == ["id", "id"]


@pytest.mark.slow
def test_an_edit_past_the_limit_comes_back_rejected_and_never_runs(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A reviewer's edit the permissions deny is refused by the guard, audited, logged blocked."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    queue = ReviewQueue(back_in_full)
    over = {"order_id": "A-1002", "amount": 600, "refund_to": "original_payment_method"}

    def reviewer() -> None:
        while not queue.items():
            time.sleep(0.05)
        queue.edit(queue.items()[0].id, actor="rita", reason="customer asked for more",
                   args=over)

    deciding = threading.Thread(target=reviewer)
    deciding.start()
    with guard.run("live-edit", goal="refund order A-1002",
                   context={"customer_id": "C-1002"}) as run:
        decision = held_refund(run)
        item = hold_for_review(queue, run, decision, timeout_s=60, poll_s=0.05)
    deciding.join(30)
    guard.close()
    assert not item.released and item.status == "rejected"
    assert "edited by rita: the reviewer's edit was refused: denied by " \
           "permissions.tools.issue_refund.arguments" in (item.decision_reason or "")
    assert queue.get(item.id).status == "edited"  # the queue keeps the edit as made
    [entry] = open_store(back_in_full).audit(AGENT, actions=["review.edit_refused"])
    assert entry.actor == "reinstate-guard" and entry.detail["edited_args"] == over
    [logged] = read_log_runs(tmp_path / "guard.jsonl")
    [blocked] = [s for s in logged.steps
                 if isinstance(s, ToolResult) and s.tool == "issue_refund"]
    assert blocked.blocked and "the reviewer's edit was refused" in (blocked.error or "")


@pytest.mark.attack
def test_a_row_swapped_behind_the_log_is_named_and_cannot_be_approved(
        example: Workspace, inline_cli: InlineCli) -> None:
    """A pending call whose row was rewritten behind the audit log: `list` and `show` say so
    on stderr (and `list` marks the line), `approve` and `edit` refuse it, `reject` works."""
    call, _ = _queued(example)
    store = open_store(example)
    with sqlite3.connect(store.path) as conn:  # type: ignore[union-attr]
        swapped = call.model_copy(update={"args": {"order_id": "A-1001", "amount": 9}})
        conn.execute("UPDATE reviews SET body = ? WHERE num = 1", (swapped.model_dump_json(),))
    code, out, err = inline_cli(example, "review", "list")
    assert code == 0 and f"NOT AS SUBMITTED (reinstate review show {call.id})" in out
    assert f"warning: {call.id} is NOT AS SUBMITTED: the store's row shows other arguments" \
        in err and "R-2" not in err
    code, out, err = inline_cli(example, "review", "show", call.id)
    assert code == 0 and '"amount": 9' in out and "only rejecting it is possible" in err
    code, _, err = inline_cli(example, "review", "approve", call.id, "--reason", "small")
    assert code == 1 and f"{call.id} was not approved" in err
    code, _, err = inline_cli(example, "review", "edit", call.id, "--reason", "smaller",
                              "--args", '{"order_id": "A-1001", "amount": 5}')
    assert code == 1 and f"{call.id} was not edited" in err
    assert [e.action for e in store.audit()] == ["review.submit", "review.submit"]
    code, _, _ = inline_cli(example, "review", "reject", call.id, "--reason", "not as held")
    assert code == 0 and ReviewQueue(example).get(call.id).status == "rejected"


@pytest.mark.attack
def test_escapes_in_a_swapped_rows_warning_are_shown_not_obeyed(example: Workspace,
                                                                 cli: RunCli) -> None:
    """A row rewritten behind the log with a hidden link and a bidi override in its agent:
    the NOT AS SUBMITTED warning (plain click on stderr) shows them as their escapes."""
    call, _ = _queued(example)
    store = open_store(example)
    with sqlite3.connect(store.path) as conn:  # type: ignore[union-attr]
        swapped = call.model_copy(update={"agent": "x\x1b]8;;http://evil\x1b\\y\x1b[2J\u202e"})
        conn.execute("UPDATE reviews SET body = ? WHERE num = 1", (swapped.model_dump_json(),))
    result = cli("review", "list", cwd=example.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warning: {call.id} is NOT AS SUBMITTED" in result.stderr
    assert "\\x1b]8;;http://evil" in result.stderr and "\\u202e" in result.stderr
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
