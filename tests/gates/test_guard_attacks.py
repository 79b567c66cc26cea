"""Attacks on the runtime guard by the code it wraps: what is decided live must be what the
run log says was decided, so the gate's replay of the same controls over that log agrees."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from evalsuite import History, ToolCall, read_log_runs
from gates import Guard, Workspace
from tests.helpers import proven

AGENT = "refund-agent"
REFUND = {"order_id": "A-1001", "refund_to": "original_payment_method"}


def _replayed(guard: Guard, log: Path) -> dict[int, tuple[str, str]]:
    """Each logged call of the log's one run decided again from the log alone, as the gate
    and the backtest replay it: (effect, rule) by step."""
    [run] = read_log_runs(log)
    return {index: (again.effect, again.rule) for index, step in enumerate(run.steps)
            if isinstance(step, ToolCall)
            for again in [guard.decide(step, History(run.steps[:index]), run.context)]}


def _logged(log: Path) -> dict[int, tuple[str, str]]:
    [run] = read_log_runs(log)
    return {int(key.rsplit(".", 1)[1]): (value["effect"], value["rule"])
            for key, value in run.metadata.items() if key.startswith("guard.step.")}


@pytest.mark.attack
@pytest.mark.slow
def test_an_answer_the_caller_changes_after_logging_it_changes_no_decision(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """An agent keeps the order it logged as the lookup's answer and raises its total
    afterwards (or changes the arguments of a call already decided): the guard's history
    held the caller's objects, so a refund of 140 on an order of 100 was allowed while the
    log said total 100 and a replay of the log denies it."""
    log = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=log)
    with guard.run("mutated", goal="refund A-1001", context={"customer_id": "C-1001"}) as run:
        looked = run.call("lookup_order", {"order_id": "A-1001"})
        order: dict[str, Any] = {"order_id": "A-1001", "total": 100.0}
        run.result(looked.call_id or "", order)
        assert run.call("issue_refund", {**REFUND, "amount": 140}).effect == "deny"
        order["total"] = 10000.0  # the agent's own bookkeeping, after the answer was logged
        again = run.call("issue_refund", {**REFUND, "amount": 140})
        assert (again.effect, again.rule) == (
            "deny", "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total")
        nested: dict[str, Any] = {"order_id": "A-1001", "summary": "x", "tags": ["a"]}
        ticket = run.call("create_ticket", nested)
        nested["tags"].append("b")
        assert run.history[ticket.step].arguments["tags"] == ["a"]  # type: ignore[union-attr]
    guard.close()
    assert _logged(log) == _replayed(guard, log)


class _Amount(int):
    """An int whose own comparisons lie: never above a bound, below 150 and up."""

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return isinstance(other, int | float) and other >= 150

    def __lt__(self, other: object) -> bool:
        return isinstance(other, int | float) and other >= 150


@pytest.mark.attack
@pytest.mark.slow
def test_arguments_whose_comparisons_lie_are_decided_by_their_value(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A refund of 900 (`maximum: 500`, over $150 to review) as an int subclass whose `>`
    and `<=` lie was allowed outright, logged as `"amount": 900`. It is decided as the 900
    it is; what has no JSON of its own (a Decimal, logged as text) is denied, naming it."""
    log = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=log)
    with guard.run("liar", goal="refund A-1001", context={"customer_id": "C-1001"}) as run:
        looked = run.call("lookup_order", {"order_id": "A-1001"})
        run.result(looked.call_id or "", {"order_id": "A-1001", "total": 2000.0})
        lying = run.call("issue_refund", {**REFUND, "amount": _Amount(900)})
        decimal = run.call("issue_refund", {**REFUND, "amount": Decimal("900")})
        keyed = run.call("create_ticket", {"order_id": "A-1001", "summary": {1: "x"}})
    guard.close()
    assert (lying.effect, lying.rule) == ("deny", "permissions.tools.issue_refund.arguments")
    assert (decimal.effect, decimal.rule) == ("deny", "guard.arguments")
    assert decimal.reason.startswith("amount: a Decimal: the arguments are not JSON data")
    assert (keyed.effect, keyed.rule) == ("deny", "guard.arguments")
    assert "summary: the key 1 is no string" in keyed.reason
    replayed = _replayed(guard, log)
    assert replayed[lying.step] == _logged(log)[lying.step]


# A guarded agent whose run log hits a file size limit (as a disk filling up does): the
# kernel writes what fits and says how much, without an error, then refuses the rest.
_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
import gates
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
log = Path(sys.argv[2])
guard = gates.Guard(sys.argv[1], "refund-agent", log=log)
refund = {"order_id": "A-1001", "refund_to": "original_payment_method", "amount": 100}
def attempt(what, act):
    try:
        print(what, act(), flush=True)
    except Exception as exc:
        print(what, "refused:", type(exc).__name__, exc, flush=True)
with guard.run("torn", goal="refund A-1001", context={"customer_id": "C-1001"}) as run:
    looked = run.call("lookup_order", {"order_id": "A-1001"})
    resource.setrlimit(resource.RLIMIT_FSIZE, (log.stat().st_size + 40, resource.RLIM_INFINITY))
    attempt("answer:", lambda: run.result(looked.call_id, {"order_id": "A-1001", "total": 2000.0}))
    attempt("refund:", lambda: run.call("issue_refund", refund).effect)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    decided = run.call("issue_refund", refund)
    print("after:", decided.effect, decided.rule, flush=True)
"""


@pytest.mark.attack
@pytest.mark.slow
def test_a_step_the_log_cannot_hold_is_not_decided_or_read_later(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A write the disk cuts short returned no error: the lookup's answer was logged as a
    torn line and yet read by the next refund, which was allowed with nothing in the log to
    show the order's total. The answer is now refused (nothing of it in the history), no
    decision is given while the log cannot be written, and the refund, with no lookup
    answer on record, is denied as a replay of the log would deny it."""
    log = tmp_path / "guard.jsonl"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(back_in_full.root), str(log)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"answer: refused: GatesError the run log {log} could not be "
                               f"written (File too large)"), lines
    assert lines[1].startswith("refund: refused: GatesError the run log"), lines
    assert lines[2] == ("after: deny permissions.tools.issue_refund.deny_when."
                        "refund-exceeds-order-total"), lines
    # The torn line stands alone: every line after it is whole.
    text = log.read_text()
    torn = [line for line in text.splitlines() if not line.endswith("}")]
    assert len(torn) == 1 and text.endswith("}\n")


# A predicate that two decisions made at once meet in (one alone waits out the timeout),
# so the race of two threads sharing a run is not left to the scheduler.
_MEETING = '''
import threading
_meet = threading.Barrier(2, timeout=5)


def ticket_already(data):
    try:
        _meet.wait()
    except threading.BrokenBarrierError:
        pass
    return any(s.get("kind") == "tool_call" and s.get("tool") == "create_ticket"
               for s in data["history"])
'''


@pytest.mark.attack
@pytest.mark.slow
def test_two_threads_sharing_a_run_are_decided_one_after_the_other(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """A model's parallel calls run in two threads of one run: with "one ticket a run" in
    `deny_when`, both tickets were allowed, each decided without the other in the history,
    and both logged as step 1. The run now decides one step at a time: the second ticket
    is denied, as a replay of the log denies it."""
    root = back_in_full.root
    (root / "pacing.py").write_text(_MEETING)
    with (root / "reinstate.toml").open("a") as toml:
        toml.write('\n[rules]\npredicate_modules = ["pacing"]\n')
    permissions = root / "agents" / AGENT / "permissions.yaml"
    text = permissions.read_text()
    ticket = "    description: Open a ticket for the support team.\n"
    assert text.count(ticket) == 1
    permissions.write_text(text.replace(ticket, ticket + (
        "    deny_when:\n"
        "      - id: one-ticket-a-run\n"
        "        predicate: pacing:ticket_already\n")))
    proven(back_in_full)
    log = tmp_path / "guard.jsonl"
    guard = Guard(root, AGENT, log=log)
    decided: dict[str, Any] = {}
    with guard.run("parallel", goal="two tickets", context={"customer_id": "C-1001"}) as run:
        threads = [threading.Thread(target=lambda name=name: decided.update(
            {name: run.call("create_ticket", {"summary": name})})) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    guard.close()
    effects = sorted((d.effect, d.rule, d.step) for d in decided.values())
    assert effects == [("allow", "review", 1), (
        "deny", "permissions.tools.create_ticket.deny_when.one-ticket-a-run", 2)]
    assert _logged(log) == _replayed(guard, log)


@pytest.mark.attack
@pytest.mark.slow
def test_two_conversations_of_one_event_loop_keep_their_own_runs(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """An async server holds two conversations in one thread: A opens its run and awaits
    the model, B opens its run and looks up order A-1002 (total 900), then A asks for a
    refund on A-1002. The runs were a list of the thread's, so A's `guard.call` acted on B's
    run: A's refund of 120 on an order it never looked up was allowed, and logged in B's
    conversation, A's log showing none. Each task now has its own runs."""
    log = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=log)
    decided: dict[str, Any] = {}

    async def conversation_a(opened: asyncio.Event, looked: asyncio.Event) -> None:
        with guard.run("conv-A", goal="refund A-1002 for me", context={"customer_id": "C-1"}):
            opened.set()
            await looked.wait()  # the model thinks
            decided["A"] = guard.call("issue_refund", {**REFUND, "order_id": "A-1002",
                                                       "amount": 120})

    async def conversation_b(opened: asyncio.Event, looked: asyncio.Event) -> None:
        await opened.wait()
        with guard.run("conv-B", goal="status of A-1002", context={"customer_id": "C-2"}):
            lookup = guard.call("lookup_order", {"order_id": "A-1002"})
            guard.result(lookup.call_id or "", {"order_id": "A-1002", "total": 900.0})
            looked.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def both() -> None:
        opened, looked = asyncio.Event(), asyncio.Event()
        await asyncio.gather(conversation_a(opened, looked), conversation_b(opened, looked))

    asyncio.run(both())
    guard.close()
    assert (decided["A"].effect, decided["A"].rule) == (
        "deny", "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total")
    runs = {run.run_id: [getattr(s, "tool", s.kind) for s in run.steps]
            for run in read_log_runs(log)}
    assert runs == {"conv-A": ["user_input", "issue_refund", "issue_refund"],
                    "conv-B": ["user_input", "lookup_order", "lookup_order"]}
