"""The runtime guard: the controls the gate verified, the mode and the run log, live."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalsuite import Run, ToolCall, ToolResult, read_log_runs
from gates import (
    Decision,
    GatesError,
    Guard,
    GuardDecision,
    ModeRecord,
    Workspace,
    capture,
    investigate,
    open_store,
)
from regressions import utc_now
from tests.helpers import ACTOR, LOG, contained, proven

AGENT = "refund-agent"
CLI = [sys.executable, "-m", "gates"]


def _incident_run(ws: Workspace) -> Run:
    return next(r for r in read_log_runs(ws.root / LOG) if r.run_id == "run-7f3a97")


def _replay_until_refund(guard: Guard, run: Run) -> GuardDecision:
    """Feed the recorded incident run to the guard up to its harmful refund (step 4)."""
    pending: dict[str, str] = {}
    for step in run.steps[1:4]:
        if isinstance(step, ToolCall):
            decision = guard.call(step.tool, step.arguments)
            assert decision.effect != "deny", decision
            assert step.call_id is not None and decision.call_id is not None
            pending[step.call_id] = decision.call_id
        elif isinstance(step, ToolResult):
            assert step.call_id is not None
            guard.result(pending[step.call_id], step.result)
    refund = run.steps[4]
    assert isinstance(refund, ToolCall) and refund.tool == "issue_refund"
    return guard.call(refund.tool, refund.arguments)


def _cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REINSTATE_ACTOR": ACTOR}
    env.pop("REINSTATE_WORKSPACE", None)
    return subprocess.run([*CLI, "-C", str(ws.root), *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(params=["kernel watch", "stat fallback"])
def watching(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each guard of the test watches its files with inotify, or (where the kernel gives
    no watch) stats them."""
    if request.param == "stat fallback":
        monkeypatch.setattr("gates._response.guard.open_watch", lambda *_: None)
    elif not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux's")
    else:  # the watch really opens: a guard silently on stats would pass for one on it
        from gates._response import guard_watch

        def opened(store: Path, incidents: Path) -> guard_watch.ChangeWatch:
            watch = guard_watch.open_watch(store, incidents)
            assert watch is not None, f"no kernel watch on {store.parent} and {incidents}"
            return watch

        monkeypatch.setattr("gates._response.guard.open_watch", opened)
    return str(request.param)


@pytest.mark.slow
def test_incident_refund_is_denied_live_by_the_rule_verify_proved(back_in_full: Workspace,
                                                                   tmp_path: Path) -> None:
    """The incident's harmful refund is denied live by the rule the gate's verification recorded."""
    verdict = open_store(back_in_full).latest_verdict(AGENT)
    assert verdict is not None and verdict.outcome == "pass"
    proved = {row.after_rule for v in verdict.verifications
              if v.layer == "tool_permission_boundary" and v.verified
              for row in v.replays
              if row.kind in ("decision", "cases") and "issue_refund" in row.step}
    assert proved, verdict.verifications
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    run = _incident_run(back_in_full)
    with guard.run("live-1", goal=run.steps[0].content,  # type: ignore[union-attr]
                   context=run.context):
        decision = _replay_until_refund(guard, run)
    assert decision.effect == "deny"
    assert decision.rule in proved


@pytest.mark.slow
def test_containment_in_another_process_flips_the_next_call(back_in_full: Workspace,
                                                            tmp_path: Path,
                                                            watching: str) -> None:
    """A `reinstate contain` run in another process denies the very next call."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    with guard.run("live-2", goal="where is my order A-1001?", context={"customer_id": "C-1001"}):
        assert guard.call("lookup_order", {"order_id": "A-1001"}).effect == "allow"
        opened = _cli(back_in_full, "incident", "open", AGENT, "--severity", "sev2",
                      "--summary", "refunds to the wrong account again")
        assert opened.returncode == 0, opened.stderr
        done = _cli(back_in_full, "contain", "INC-2", "--mode", "suspended", "--notify",
                    "legal", "--scope", "unknown")
        assert done.returncode == 0, done.stderr
        decision = guard.call("lookup_order", {"order_id": "A-1002"})
    assert (decision.effect, decision.rule) == ("deny", "mode.suspended")
    assert "INC-2" in decision.reason


def test_the_first_incident_of_a_workspace_flips_the_next_call(example: Workspace,
                                                              watching: str) -> None:
    """With no incidents folder yet, the first incident's containment denies the next call,
    while the guard's log is written in the workspace's root."""
    open_store(example).create()  # type: ignore[union-attr]
    assert not example.incidents_dir.exists()
    guard = Guard(example.root, AGENT, log=example.root / "guard.jsonl")
    with guard.run("live-first", goal="where is my order A-1001?"):
        assert guard.call("lookup_order", {"order_id": "A-1001"}).effect == "allow"
        opened = _cli(example, "incident", "open", AGENT, "--severity", "sev2",
                      "--summary", "refunds to the wrong account")
        assert opened.returncode == 0, opened.stderr
        done = _cli(example, "contain", "INC-1", "--mode", "suspended", "--notify", "legal",
                    "--scope", "unknown")
        assert done.returncode == 0, done.stderr
        decision = guard.call("lookup_order", {"order_id": "A-1002"})
    guard.close()
    assert (decision.effect, decision.rule) == ("deny", "mode.suspended")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_watch_awaiting_the_incidents_folder_hears_nothing_of_other_files(
        example: Workspace) -> None:
    """A file written beside the awaited incidents folder (a run log in the workspace's root)
    queues no event for the guard to read at each decision; the folder's creation does."""
    from gates._response.guard_watch import open_watch

    example.state_path.parent.mkdir(parents=True, exist_ok=True)
    (example.root / "guard.jsonl").touch()
    watch = open_watch(example.state_path, example.incidents_dir)
    assert watch is not None
    try:
        with (example.root / "guard.jsonl").open("ab", buffering=0) as log:
            for _ in range(3):
                log.write(b"{}\n")
        assert watch._inotify.read(timeout=0) == []
        example.incidents_dir.mkdir()
        assert watch.changed() and watch.broken  # a watch on the folder itself is next
    finally:
        watch.close()


def test_unreadable_store_denies_with_the_reason(back_in_full: Workspace, tmp_path: Path,
                                                 watching: str) -> None:
    """A state store that cannot be read denies every call, and says why."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    with guard.run("live-3", goal="status of A-1001", context={"customer_id": "C-1001"}):
        assert guard.call("lookup_order", {"order_id": "A-1001"}).effect == "allow"
        back_in_full.state_path.write_bytes(b"this is not a database, it is a note")
        decision = guard.call("lookup_order", {"order_id": "A-1001"})
        answer = guard.output("Your order is on its way.")
    assert (decision.effect, decision.rule) == ("deny", "mode.suspended")
    assert "state store unreadable" in decision.reason
    assert answer.effect == "deny"


def test_broken_controls_deny_and_a_fix_is_picked_up(back_in_full: Workspace,
                                                     tmp_path: Path) -> None:
    """Control files that no longer load deny with the file's error; fixed, they load again."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    good = permissions.read_text()
    with guard.run("live-4", goal="status of A-1001", context={"customer_id": "C-1001"}):
        permissions.write_text(good.replace("allowed: true", "allowed: maybe", 1))
        broken = guard.call("lookup_order", {"order_id": "A-1001"})
        permissions.write_text(good)
        again = guard.call("lookup_order", {"order_id": "A-1001"})
    assert (broken.effect, broken.rule) == ("deny", "guard.controls")
    assert "permissions.yaml" in broken.reason
    assert again.effect == "allow"
    assert guard.reloads == 2  # the first read and the fix; the broken file loaded nothing


@pytest.mark.attack
def test_an_edit_of_a_predicate_module_alone_reaches_the_next_call(back_in_full: Workspace,
                                                                  tmp_path: Path) -> None:
    """A ``deny_when`` predicate's module is a control (the verdict fingerprints it): a fix
    that changes only its code is enforced after ``controls_recheck_s``, never the code the
    guard loaded first, and a touch that changes nothing reads nothing again."""
    root = back_in_full.root
    config = root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["guards"]\n')
    (root / "guards").mkdir()
    (root / "guards/__init__.py").write_text("")
    module = root / "guards/tickets.py"
    module.write_text("def leaks(data):\n    return False\n")
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace(
        "    description: Open a ticket for the support team.\n",
        "    description: Open a ticket for the support team.\n"
        "    deny_when:\n      - id: leaks\n        predicate: guards.tickets:leaks\n", 1))
    proven(back_in_full)
    guard = Guard(root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    with guard.run("live-pred", goal="open a ticket", context={"customer_id": "C-1001"}):
        before = guard.call("create_ticket", {"summary": "card 4242 4242 4242 4242"})
        module.write_text("def leaks(data):\n    return '4242' in str(data['args'])\n")
        after = guard.call("create_ticket", {"summary": "card 4242 4242 4242 4242"})
        module.touch()
        guard.refresh()
    assert before.effect == "allow", before
    assert (after.effect, after.rule) == (
        "deny", "permissions.tools.create_ticket.deny_when.leaks"), after
    assert guard.reloads == 2


@pytest.mark.attack
def test_an_edit_of_a_module_a_predicate_imports_reaches_the_next_call(
        back_in_full: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper module a listed package's predicate imports is a control too: a fix in it
    alone is enforced at the next call, even where the workspace is on ``sys.path`` (as
    the agent's own process may have it), never the copy Python imported first."""
    root = back_in_full.root
    monkeypatch.syspath_prepend(str(root))
    config = root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["ticket_rules"]\n')
    (root / "ticket_rules").mkdir()
    (root / "ticket_rules/__init__.py").write_text("")
    helper = root / "ticket_rules/patterns.py"
    helper.write_text("CARD = 'never matches'\n")
    (root / "ticket_rules/tickets.py").write_text(
        "from ticket_rules.patterns import CARD\n"
        "def leaks(data):\n    return CARD in str(data['args'])\n")
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace(
        "    description: Open a ticket for the support team.\n",
        "    description: Open a ticket for the support team.\n"
        "    deny_when:\n      - id: leaks\n        predicate: ticket_rules.tickets:leaks\n", 1))
    proven(back_in_full)
    guard = Guard(root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    with guard.run("live-helper", goal="open a ticket", context={"customer_id": "C-1001"}):
        before = guard.call("create_ticket", {"summary": "card 4242 4242 4242 4242"})
        helper.write_text("CARD = '4242'\n")
        after = guard.call("create_ticket", {"summary": "card 4242 4242 4242 4242"})
    assert before.effect == "allow", before
    assert (after.effect, after.rule) == (
        "deny", "permissions.tools.create_ticket.deny_when.leaks"), after
    assert guard.reloads == 2


@pytest.mark.attack
@pytest.mark.parametrize("kind", ["folder", "named pipe"])
def test_a_control_file_that_is_no_file_denies_and_does_not_raise(
        back_in_full: Workspace, tmp_path: Path, kind: str) -> None:
    """A control file replaced by a folder or a named pipe mid-run is controls that cannot
    be read: the call is denied with the reason, not an exception the runtime may pass over
    (with nothing logged)."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl", controls_recheck_s=0)
    review = back_in_full.agent_dir(AGENT) / "review.yaml"
    with guard.run("live-nofile", goal="status of A-1001", context={"customer_id": "C-1001"}):
        review.unlink()
        if kind == "folder":
            review.mkdir()
        else:
            os.mkfifo(review)
        decision = guard.call("lookup_order", {"order_id": "A-1001"})
    assert (decision.effect, decision.rule) == ("deny", "guard.controls"), decision
    assert "review.yaml" in decision.reason and "not a regular file" in decision.reason
    logged = (tmp_path / "guard.jsonl").read_text()
    assert '"blocked":true' in logged and "guard.controls" in logged


@pytest.mark.attack
@pytest.mark.parametrize("credit", ["NaN", "Infinity", "[1, NaN]"])
def test_a_number_that_is_no_number_does_not_pass_the_argument_bounds(
        back_in_full: Workspace, tmp_path: Path, credit: str) -> None:
    """Arguments as a runtime parses a model's JSON (``json.loads`` reads ``NaN``): NaN
    meets every bound of a JSON Schema, as no comparison with it is true, so a goodwill
    credit of at most $50 would be waved on at NaN. A non-finite number is denied by the
    permission boundary, wherever it sits in the arguments."""
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    permissions.write_text(permissions.read_text().replace(
        "    description: Open a ticket for the support team.\n",
        "    description: Open a ticket for the support team.\n"
        "    arguments:\n      type: object\n      properties:\n"
        "        credit:\n          anyOf:\n            - {type: number, maximum: 50}\n"
        "            - {type: array, items: {type: number, maximum: 50}}\n", 1))
    proven(back_in_full)
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    with guard.run("live-nan", goal="open a ticket", context={"customer_id": "C-1001"}):
        fair = guard.call("create_ticket", json.loads('{"credit": 20}'))
        odd = guard.call("create_ticket", json.loads(f'{{"credit": {credit}}}'))
    assert fair.effect == "allow", fair
    assert (odd.effect, odd.rule) == ("deny", "permissions.tools.create_ticket.arguments"), odd
    assert "not a finite number" in odd.reason and "credit" in odd.reason


def test_touched_controls_are_not_read_again(back_in_full: Workspace, tmp_path: Path) -> None:
    """Control files whose stamps move but whose content does not are not parsed again."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    for path in back_in_full.agent_dir(AGENT).glob("*.yaml"):
        path.touch()
    guard.refresh()
    assert guard.reloads == 1


def test_review_mode_routes_what_the_controls_allow(back_in_full: Workspace,
                                                    tmp_path: Path) -> None:
    """In review mode an allowed call and an allowed answer go to a person; a denial stays."""
    store = open_store(back_in_full)
    store.set_mode(ModeRecord(agent=AGENT, mode="review", since=utc_now(), actor=ACTOR,
                              reason="drill"))
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    with guard.run("live-5", goal="status of A-1001", context={"customer_id": "C-1001"}):
        call = guard.call("lookup_order", {"order_id": "A-1001"})
        unknown = guard.call("wire_money", {"to": "anyone"})
        answer = guard.output("It shipped yesterday.")
    assert (call.effect, call.rule) == ("review", "mode.review")
    assert (unknown.effect, unknown.rule) == ("deny", "permissions.unknown_tool")
    assert (answer.effect, answer.rule) == ("review", "mode.review")


@pytest.mark.slow
def test_investigate_reads_the_guard_log(example: Workspace) -> None:
    """`investigate` reads the run the guard logged, with no logging gap and the decisions kept."""
    incident_id = contained(example)
    guard = Guard(example.root, AGENT)
    run = _incident_run(example)
    with guard.run("live-6", goal=run.steps[0].content,  # type: ignore[union-attr]
                   context=run.context):
        refund = _replay_until_refund(guard, run)
        assert refund.effect == "review"  # contained in review mode; the old controls allow it
        assert refund.call_id is not None
        guard.result(refund.call_id, error="rejected by a reviewer", blocked=True)
        answer = guard.output("A person will look at your refund.")
    log = next(example.logs_dir.glob("*-guard.jsonl"))
    logged = next(r for r in read_log_runs(log) if r.run_id == "live-6")
    assert logged.metadata[f"guard.step.{refund.step}"]["rule"] == refund.rule
    assert logged.metadata[f"guard.step.{answer.step}"]["effect"] == answer.effect
    assert logged.outcome is not None and logged.outcome.stop_reason == "done"
    capture(example, incident_id, log, actor=ACTOR, run_id="live-6", steps=[refund.step])
    done = investigate(example, incident_id, [log], actor=ACTOR)
    assert done.investigation.runs == ["live-6"]
    assert done.investigation.runs_checked >= 1
    assert not done.investigation.logging_gaps
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["kind"] == "run" and lines[0]["context"] == run.context


def test_the_readmes_guard_snippet_runs_as_printed(example: Workspace,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's runtime guard snippet, run in the example workspace, allows the lookup."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [snippet] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
                 if "gates.Guard(" in block]
    open_store(example).create()
    monkeypatch.chdir(example.root)
    scope: dict[str, object] = {}
    exec(snippet, scope)
    decision = scope["decision"]
    assert isinstance(decision, GuardDecision)
    assert decision.effect == "allow", decision
    scope["guard"].close()  # type: ignore[attr-defined]
    assert list(example.logs_dir.glob("*-refund-agent-guard.jsonl"))


def test_recheck_interval_defers_the_look_at_the_files(back_in_full: Workspace,
                                                       tmp_path: Path) -> None:
    """With ``recheck_s`` the store is looked at again only after the interval or refresh()."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl", recheck_s=3600)
    with guard.run("live-7", goal="status of A-1001", context={"customer_id": "C-1001"}):
        back_in_full.state_path.write_bytes(b"not a database")
        before = guard.call("lookup_order", {"order_id": "A-1001"})
        guard.refresh()
        after = guard.call("lookup_order", {"order_id": "A-1001"})
    assert before.effect == "allow"
    assert (after.effect, after.rule) == ("deny", "mode.suspended")


def test_a_control_edit_waits_for_its_interval_but_a_containment_does_not(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """Control files are looked at every ``controls_recheck_s``, the mode on every call."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl",
                  controls_recheck_s=3600)
    permissions = back_in_full.agent_dir(AGENT) / "permissions.yaml"
    store = open_store(back_in_full)
    with guard.run("live-8", goal="status of A-1001", context={"customer_id": "C-1001"}):
        permissions.write_text(permissions.read_text().replace("allowed: true",
                                                               "allowed: maybe", 1))
        unseen = guard.call("lookup_order", {"order_id": "A-1001"})
        store.set_mode(ModeRecord(agent=AGENT, mode="suspended", since=utc_now(),
                                  actor=ACTOR, reason="drill"))
        contained_now = guard.call("lookup_order", {"order_id": "A-1001"})
        store.set_mode(ModeRecord(agent=AGENT, mode="full", since=utc_now(), actor=ACTOR,
                                  reason="drill over"))
        guard.refresh()
        seen = guard.call("lookup_order", {"order_id": "A-1001"})
    assert unseen.effect == "allow"
    assert (contained_now.effect, contained_now.rule) == ("deny", "mode.suspended")
    assert (seen.effect, seen.rule) == ("deny", "guard.controls")


def _settled(guard: Guard) -> GuardDecision:
    """A call made once the files the guard read are older than its settle time, so it
    trusts their stamps and reads nothing again unless one moves."""
    time.sleep(0.25)
    guard.call("lookup_order", {"order_id": "A-1001"})
    return guard.call("lookup_order", {"order_id": "A-1001"})


def test_an_open_incident_edited_in_place_reaches_the_next_call(
        back_in_full: Workspace, tmp_path: Path, watching: str) -> None:
    """A hand edit in place tightening an open incident's containment denies the next call."""
    incident_id = contained(back_in_full)  # review, through the store
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl",
                  controls_recheck_s=3600)
    path = back_in_full.incidents().path(incident_id)
    with guard.run("live-9", goal="status of A-1001", context={"customer_id": "C-1001"}):
        before = _settled(guard)
        inode = path.stat().st_ino
        text = path.read_text()
        assert text.count("mode: review") == 1, text
        with path.open("r+", encoding="utf-8") as handle:  # in place: same file, same folder
            handle.write(text.replace("mode: review", "mode: suspended"))
            handle.truncate()
        assert path.stat().st_ino == inode
        after = guard.call("lookup_order", {"order_id": "A-1001"})
    assert (before.effect, before.rule) == ("review", "mode.review")
    assert (after.effect, after.rule) == ("deny", "mode.suspended")
    assert incident_id in after.reason


def _break_in_place(path: Path) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("summary: [this is not\n")


def test_any_incident_file_broken_in_place_fails_closed_at_the_next_call(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """With the kernel's watch, a restored incident's file broken in place denies the next call."""
    if not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux's")
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl",
                  controls_recheck_s=3600)
    with guard.run("live-10", goal="status of A-1001", context={"customer_id": "C-1001"}):
        assert _settled(guard).effect == "allow"
        _break_in_place(back_in_full.incidents().path("INC-1"))
        broken = guard.call("lookup_order", {"order_id": "A-1001"})
    assert (broken.effect, broken.rule) == ("deny", "mode.suspended")
    assert "incident records or audit log unreadable" in broken.reason


def test_without_a_watch_a_broken_incident_file_is_seen_within_the_recheck(
        back_in_full: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel gives no watch, a restored incident's file broken in place denies
    after ``controls_recheck_s``."""
    monkeypatch.setattr("gates._response.guard.open_watch", lambda *_: None)
    waiting = Guard(back_in_full.root, AGENT, log=tmp_path / "waiting.jsonl",
                    controls_recheck_s=3600)
    eager = Guard(back_in_full.root, AGENT, log=tmp_path / "eager.jsonl",
                  controls_recheck_s=0)
    with waiting.run("live-10", goal="status of A-1001", context={"customer_id": "C-1001"}):
        assert _settled(waiting).effect == "allow"
        with eager.run("live-11", goal="status of A-1001", context={"customer_id": "C-1001"}):
            assert _settled(eager).effect == "allow"
            _break_in_place(back_in_full.incidents().path("INC-1"))
            broken = eager.call("lookup_order", {"order_id": "A-1001"})
        unseen = waiting.call("lookup_order", {"order_id": "A-1001"})
    assert (broken.effect, broken.rule) == ("deny", "mode.suspended")
    assert "incident records or audit log unreadable" in broken.reason
    assert unseen.effect == "allow"


def test_the_log_lines_are_pydantics_own_json_and_read_back(back_in_full: Workspace,
                                                            tmp_path: Path) -> None:
    """Each logged line is byte for byte pydantic's JSON of its step and decision, read back."""
    log = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=log)
    odd = {"order_id": "A-1001", "amount": 1e-7, "big": 1e20, "nested": {"é": [1, 2.5, None]},
           "text": "tab\there \"quoted\" \u2028 \x1f ✓"}
    with guard.run("live-12 ✓", goal="where is my ordér?", context={"customer_id": "C-1001"}
                   ) as run:
        decisions = [guard.call("lookup_order", {"order_id": "A-1001"}),
                     guard.call("lookup_order", odd), guard.call("wire_money", {"to": "x"})]
        guard.result(decisions[0].call_id or "", {"status": "shipped", "eta": 2.0})
        guard.result(decisions[1].call_id or "", error="timeout after 1e+20 s")
        decisions.append(guard.output("It shipped: ✓ \"soon\"\n"))
        steps = list(run.history)
    guard.close()
    quoted = json.dumps("live-12 ✓")
    decided = {d.step: Decision(effect=d.effect, rule=d.rule, reason=d.reason)
               for d in decisions}
    expected = [json.dumps({"schema_version": 1, "kind": "run", "run_id": "live-12 ✓",
                            "agent": AGENT, "started_at": steps[0].at.isoformat(),  # type: ignore[union-attr]
                            "context": {"customer_id": "C-1001"}})]
    for index, step in enumerate(steps):
        expected.append(f'{{"run_id": {quoted}, {step.model_dump_json(exclude_none=True)[1:]}')
        if index in decided:
            expected.append(f'{{"kind": "run", "run_id": {quoted}, "metadata": '
                            f'{{"guard.step.{index}": {decided[index].model_dump_json()}}}}}')
    expected.append(json.dumps({"schema_version": 1, "kind": "run", "run_id": "live-12 ✓",
                                "outcome": {"stop_reason": "done"}}))
    assert log.read_bytes() == ("\n".join(expected) + "\n").encode("utf-8")
    [back] = read_log_runs(log)
    assert back.steps == steps
    assert back.metadata[f"guard.step.{decisions[1].step}"]["rule"] == decisions[1].rule
    assert back.outcome is not None and back.outcome.stop_reason == "done"


_KILLED_MID_RUN = """
import os, signal, sys
from pathlib import Path
import gates
guard = gates.Guard(sys.argv[1], "refund-agent", log=Path(sys.argv[2]))
with guard.run("live-13", goal="status of A-1001", context={"customer_id": "C-1001"}):
    decision = guard.call("lookup_order", {"order_id": "A-1001"})
    guard.result(decision.call_id, {"status": "shipped"})
    denied = guard.call("wire_money", {"to": "anyone"})
    print(decision.step, denied.step, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush, no finally
"""


@pytest.mark.slow
def test_a_process_killed_mid_run_loses_no_decided_step(back_in_full: Workspace,
                                                         tmp_path: Path) -> None:
    """A guarded process killed after a decision leaves the step, decision and answer logged."""
    log = tmp_path / "guard.jsonl"
    done = subprocess.run([sys.executable, "-c", _KILLED_MID_RUN, str(back_in_full.root),
                           str(log)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == -9, done.stderr
    allowed, denied = (int(n) for n in done.stdout.split())
    [run] = read_log_runs(log)
    assert [type(s).__name__ for s in run.steps] == [
        "UserInput", "ToolCall", "ToolResult", "ToolCall", "ToolResult"]
    assert run.steps[2].result == {"status": "shipped"}  # type: ignore[union-attr]
    assert run.steps[4].blocked  # type: ignore[union-attr]
    assert run.metadata[f"guard.step.{allowed}"]["effect"] == "allow"
    assert run.metadata[f"guard.step.{denied}"]["rule"] == "permissions.unknown_tool"
    assert run.outcome is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_take_its_parents_news_of_a_containment(
        back_in_full: Workspace, tmp_path: Path) -> None:
    """After a fork, a containment reaches the next call of both the child and the parent."""
    guard = Guard(back_in_full.root, AGENT, log=tmp_path / "guard.jsonl")
    time.sleep(0.25)  # the files read are older than the settle time
    lookup = ToolCall(tool="lookup_order", arguments={"order_id": "A-1001"})
    assert guard.decide(lookup).effect == "allow"
    ready, go = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's verdict is its exit code
        code = 1
        try:
            os.read(ready, 1)
            decision = guard.decide(lookup)
            code = 0 if decision.effect == "deny" else 2
        finally:
            os._exit(code)
    open_store(back_in_full).set_mode(ModeRecord(agent=AGENT, mode="suspended",
                                                 since=utc_now(), actor=ACTOR, reason="drill"))
    os.write(go, b"x")
    _, status = os.waitpid(child, 0)
    parent = guard.decide(lookup)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (parent.effect, parent.rule) == ("deny", "mode.suspended")


@pytest.mark.attack
def test_a_call_id_used_twice_in_a_run_is_refused(back_in_full: Workspace,
                                                  tmp_path: Path) -> None:
    """Two calls under one id would have the first tool's answer logged (and read by later
    rules) as the second's: a ticket's echoed "total" passing for the order's. The second
    call is refused while the first waits for its answer, nothing of it logged, and the
    refund past the real total is denied. Once answered, the id may name a new call."""
    refund = {"order_id": "A-1001", "amount": 149, "refund_to": "original_payment_method"}
    log = tmp_path / "guard.jsonl"
    guard = Guard(back_in_full.root, AGENT, log=log)
    with guard.run("reused", goal="refund please") as run:
        ticket = run.call("create_ticket", {"order_id": "A-1001", "total": 10000,
                                            "summary": "x"}, call_id="call_1")
        assert ticket.call_id == "call_1"
        with pytest.raises(GatesError, match="call id 'call_1' names a create_ticket call "
                                             "of this run still waiting for its answer"):
            run.call("lookup_order", {"order_id": "A-1001"}, call_id="call_1")
        run.result("call_1", {"ticket_id": "T-9", "order_id": "A-1001", "total": 10000})
        looked = run.call("lookup_order", {"order_id": "A-1001"}, call_id="call_1")
        run.result("call_1", {"order_id": "A-1001", "total": 84.99})
        assert looked.effect == "allow"
        # A number the guard gives is never one a caller took.
        own = run.call("lookup_order", {"order_id": "A-1001"}, call_id="reused-call-1")
        assert run.call("lookup_order", {"order_id": "A-1001"}).call_id != own.call_id
        assert run.call("issue_refund", refund).effect == "deny"
    guard.close()
    [logged] = read_log_runs(log)
    answered = [(s.call_id, s.tool, s.result) for s in logged.steps
                if isinstance(s, ToolResult) and s.call_id == "call_1"]
    assert answered == [
        ("call_1", "create_ticket", {"ticket_id": "T-9", "order_id": "A-1001", "total": 10000}),
        ("call_1", "lookup_order", {"order_id": "A-1001", "total": 84.99})]
