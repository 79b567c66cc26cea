"""The mode as a runtime polls it: ``agent_mode(cache_s=…)``, ``reinstate mode --watch`` and
the OpenFeature provider ``reinstate.openfeature.ReinstateProvider``, all failing closed."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from gates import Workspace, agent_mode, contain, mode_reading, open_incident, open_store
from reinstate.openfeature import ReinstateProvider
from tests.conftest import CLI, RunCli
from tests.helpers import ACTOR

AGENT = "refund-agent"
FLAG = f"reinstate.mode.{AGENT}"


def _fresh(example: Workspace) -> str:
    """The example with a store and one open incident, not contained yet: its id."""
    open_store(example).create()
    return open_incident(example, AGENT, summary="over-refund", severity="sev1",
                         actor=ACTOR).id


def _contain(example: Workspace, incident_id: str) -> None:
    contain(example, incident_id, mode="review", notify=["legal", "compliance", "eng-lead"],
            scope="one refund", actor=ACTOR)


def _corrupt(example: Workspace) -> None:
    example.state_path.write_bytes(b"\x00garbage" * 64)


@pytest.fixture
def client() -> Iterator[Callable[[ReinstateProvider], OpenFeatureClient]]:
    """Sets a provider on OpenFeature's global API and clears it afterwards."""
    def use(provider: ReinstateProvider) -> OpenFeatureClient:
        api.set_provider(provider)
        return api.get_client()
    yield use
    api.clear_providers()


# --- agent_mode(cache_s=…) -------------------------------------------------------------


def test_a_cached_reading_is_served_within_its_age_only(example: Workspace) -> None:
    """Within ``cache_s`` the answer comes from memory; past it the store is read again, and
    a store that became unreadable answers suspended, never the cached full."""
    open_store(example).create()
    assert agent_mode(AGENT, example.root, cache_s=60) == "full"
    _corrupt(example)
    assert agent_mode(AGENT, example.root, cache_s=60) == "full"  # from memory
    time.sleep(0.1)
    assert agent_mode(AGENT, example.root, cache_s=0.05) == "suspended"
    assert agent_mode(AGENT, example.root) == "suspended"


@pytest.mark.attack
def test_a_relative_workspace_is_cached_for_where_it_was_found(
        tmp_path: Path, example: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same relative folder from another working directory is another workspace: its
    contained agent is never answered with the first one's cached full. Before, the
    cache kept readings by the folder as given, so within ``cache_s`` the second
    workspace's suspended agent read full."""
    open_store(example).create()
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(example.root, elsewhere / "ws")
    held = Workspace.find(elsewhere / "ws")
    incident = open_incident(held, AGENT, summary="harm", severity="sev1", actor=ACTOR)
    contain(held, incident.id, mode="suspended", notify=["legal"], scope="all", actor=ACTOR)
    monkeypatch.chdir(example.root.parent)
    assert agent_mode(AGENT, "ws", cache_s=60) == "full"
    assert mode_reading(AGENT, "ws", cache_s=60).mode == "full"
    monkeypatch.chdir(elsewhere)
    assert agent_mode(AGENT, "ws", cache_s=60) == "suspended"
    assert mode_reading(AGENT, "ws", cache_s=60).mode == "suspended"


def test_an_agent_the_workspace_does_not_define_is_suspended(example: Workspace) -> None:
    """A misspelt agent never reads as "never contained", so never as full."""
    open_store(example).create()
    reading = mode_reading("refund-agnet", example.root)
    assert reading.mode == "suspended" and reading.unknown_agent
    assert reading.degraded is not None and "did you mean 'refund-agent'" in reading.degraded
    assert agent_mode("refund-agnet", example.root) == "suspended"


# --- reinstate mode --watch ------------------------------------------------------------


def _lines(stream: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The child's stdout lines as they come, so a test waits with a timeout, not forever."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert stream.stdout is not None
        for line in stream.stdout:
            lines.put(line)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


@pytest.mark.slow
@pytest.mark.parametrize(("stop_with", "as_json"), [(signal.SIGTERM, True),
                                                     (signal.SIGINT, False)])
def test_watch_prints_each_change_another_process_makes(
        example: Workspace, cli: RunCli, stop_with: signal.Signals, as_json: bool) -> None:
    """A watcher prints full, then review when another process contains the agent, and ends
    with exit 0 on SIGTERM or Ctrl-C."""
    incident_id = _fresh(example)
    env = {**os.environ, "REINSTATE_ACTOR": ACTOR, "COLUMNS": "200"}
    env.pop("REINSTATE_WORKSPACE", None)
    with subprocess.Popen(
            [*CLI, "mode", AGENT, "--watch", "--interval", "0.1",
             *(["--json"] if as_json else [])],
            cwd=example.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True) as watcher:
        try:
            lines, reader = _lines(watcher)
            first = lines.get(timeout=60)
            contained = cli("contain", incident_id, "--mode", "review", "--notify",
                            "legal,compliance,eng-lead", "--scope", "one refund",
                            cwd=example.root)
            assert contained.returncode == 0, contained.stderr
            second = lines.get(timeout=60)
            watcher.send_signal(stop_with)
            assert watcher.wait(timeout=60) == 0
            reader.join(timeout=60)
        finally:
            watcher.kill()
    if as_json:
        assert json.loads(first)["mode"] == "full"
        changed = json.loads(second)
        assert (changed["mode"], changed["reason"]) == ("review",
                                                        f"contain {incident_id}: one refund")
    else:
        assert (first.strip(), second.strip()) == ("full", "review")
    assert lines.empty()  # one line a change: nothing printed while nothing changed


# --- the OpenFeature provider ----------------------------------------------------------


@pytest.mark.slow
def test_the_flag_flips_from_full_to_review_when_the_example_is_contained(
        example: Workspace, cli: RunCli,
        client: Callable[[ReinstateProvider], OpenFeatureClient]) -> None:
    """Through OpenFeature's client, the example's flag reads full, then review once
    ``reinstate contain`` ran in another process."""
    incident_id = _fresh(example)
    flags = client(ReinstateProvider(example.root, cache_s=0))
    assert flags.get_string_value(FLAG, "suspended") == "full"
    result = cli("contain", incident_id, "--mode", "review", "--notify",
                 "legal,compliance,eng-lead", "--scope", "one refund", cwd=example.root)
    assert result.returncode == 0, result.stderr
    details = flags.get_string_details(FLAG, "suspended")
    assert (details.value, details.variant, details.error_code) == ("review", "review", None)
    assert details.flag_metadata["reason"] == f"contain {incident_id}: one refund"
    assert details.flag_metadata["actor"] == "test.engineer"


def test_an_unreadable_store_reads_suspended_with_the_reason(
        example: Workspace,
        client: Callable[[ReinstateProvider], OpenFeatureClient]) -> None:
    """A corrupt state store answers suspended, with an error code and why, from the
    provider itself and through the client."""
    open_store(example).create()
    _corrupt(example)
    provider = ReinstateProvider(example.root, cache_s=0)
    resolved = provider.resolve_string_details(FLAG, "full")
    assert (resolved.value, resolved.reason, resolved.error_code) == (
        "suspended", Reason.ERROR, ErrorCode.GENERAL)
    assert resolved.error_message is not None
    assert "cannot read the state store" in resolved.error_message
    details = client(provider).get_string_details(FLAG, "suspended")
    assert details.value == "suspended" and details.error_code == ErrorCode.GENERAL
    assert details.error_message == resolved.error_message


def test_an_unknown_agent_or_key_is_not_found_and_suspended(example: Workspace) -> None:
    """A flag for an agent the workspace does not define, or outside reinstate's keys, is
    suspended (false) with FLAG_NOT_FOUND, never full."""
    open_store(example).create()
    provider = ReinstateProvider(example.root, cache_s=0)
    for key in ("reinstate.mode.refund-agnet", "reinstate.mod.refund-agent",
                "reinstate.mode."):
        resolved = provider.resolve_string_details(key, "full")
        assert (resolved.value, resolved.error_code) == ("suspended",
                                                         ErrorCode.FLAG_NOT_FOUND), key
    unknown = provider.resolve_boolean_details("reinstate.full.refund-agnet", True)
    assert (unknown.value, unknown.error_code) == (False, ErrorCode.FLAG_NOT_FOUND)
    mismatch = provider.resolve_integer_details(FLAG, 7)
    assert mismatch.error_code == ErrorCode.TYPE_MISMATCH


def test_the_boolean_flag_is_true_only_in_full_operation(
        example: Workspace,
        client: Callable[[ReinstateProvider], OpenFeatureClient]) -> None:
    """``reinstate.full.<agent>`` is true before containment and false after it."""
    incident_id = _fresh(example)
    flags = client(ReinstateProvider(example.root, cache_s=0))
    assert flags.get_boolean_value(f"reinstate.full.{AGENT}", False) is True
    _contain(example, incident_id)
    assert flags.get_boolean_value(f"reinstate.full.{AGENT}", True) is False


def test_the_provider_answers_from_memory_within_cache_s(example: Workspace) -> None:
    """With ``cache_s`` the provider serves its last reading until it ages out."""
    incident_id = _fresh(example)
    cached = ReinstateProvider(example.root, cache_s=3600)
    assert cached.resolve_string_details(FLAG, "suspended").value == "full"
    _contain(example, incident_id)
    assert cached.resolve_string_details(FLAG, "suspended").value == "full"
    fresh = ReinstateProvider(example.root, cache_s=0)
    assert fresh.resolve_string_details(FLAG, "suspended").value == "review"


def test_the_readmes_three_line_setup_runs_as_printed(
        example: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's OpenFeature snippet, run in the example workspace, answers full."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [snippet] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
                 if "ReinstateProvider" in block]
    *setup, last = snippet.strip().splitlines()
    open_store(example).create()
    monkeypatch.chdir(example.root)
    scope: dict[str, object] = {}
    try:
        exec("\n".join(setup), scope)
        assert eval(last.split("#")[0], scope) == "full"
    finally:
        api.clear_providers()
