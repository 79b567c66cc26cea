"""Never a silent empty read: ``ingest`` and ``investigate`` say per file what they understood,
warn with counts and the first place about runs with no steps and records not understood,
and ``--strict`` refuses such a log with one line, writing nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gates import Workspace, ingest
from tests.conftest import tree
from tests.helpers import LOG, captured

DATA = Path(__file__).parent.parent / "data" / "logs"
InlineCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def logs(example: Workspace, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example workspace as the working directory, with logs that read as nothing."""
    monkeypatch.chdir(example.root)
    folder = example.root / "logs"
    # Three runs whose steps the instrumentation never wrote: headers only.
    (folder / "headers.jsonl").write_text("".join(
        json.dumps({"schema_version": 1, "kind": "run", "run_id": f"r-{n}"}) + "\n"
        for n in (1, 2, 3)))
    # A GUI agent whose actions (click <…>) no text-action dialect reads as calls.
    (folder / "gui.json").write_text(json.dumps([{"id": "gui-1", "contents": [[
        {"role": "user", "content": "download the best note app"},
        {"role": "agent", "thought": "open the store", "action": "Open <APP Store>"},
        {"role": "environment", "content": "<APP Store> is open"},
        {"role": "agent", "thought": None, "action": "click <Goodnotes><download>"},
        {"role": "environment", "content": "Download Success"},
        {"role": "agent", "thought": None, "action": "Final Answer: installed"}]]}]))
    shutil.copy(DATA / "refund-agent.otlp.jsonl", folder)
    return folder


def test_ingest_says_what_each_file_holds(logs: Path, inline_cli: InlineCli,
                                          example: Workspace) -> None:
    """Runs, steps by kind, calls with and without a result, and content missing, per file."""
    code, out, err = inline_cli(example, "ingest", LOG, "logs/refund-agent.otlp.jsonl")
    assert code == 0 and err == ""
    assert (f"{LOG} (jsonl): 3 runs, 23 steps (3 inputs, 3 reasoning, 7 calls, 7 results, "
            f"3 outputs); calls: 7 with a result, 0 without; content: present in every step"
            ) in out
    assert ("logs/refund-agent.otlp.jsonl (otel): 3 runs, 12 steps (2 inputs, 1 reasoning, "
            "4 calls, 3 results, 2 outputs); calls: 3 with a result, 1 without; content: "
            "missing from 1 of 4 calls") in out


def test_runs_with_no_steps_are_a_warning_and_strict_refuses(
        logs: Path, inline_cli: InlineCli, example: Workspace) -> None:
    """Runs read with no steps warn with the count and the first run's line; --strict exits 2."""
    code, out, err = inline_cli(example, "ingest", "logs/headers.jsonl", LOG)
    assert code == 0
    assert "logs/headers.jsonl (jsonl): 3 runs, 0 steps" in out
    assert err.strip() == ("warning: logs/headers.jsonl:1: 3 of 3 runs read with no steps "
                           "(the first here: r-1)")
    before = tree(example.root)
    code, out, err = inline_cli(example, "ingest", LOG, "logs/headers.jsonl", "--strict",
                                "--out", "runs.jsonl")
    assert code == 2 and out == ""
    assert err == ("error: logs/headers.jsonl:1: 3 of 3 runs read with no steps (the first "
                   "here: r-1); --strict refuses a log that was read only in part\n")
    assert tree(example.root) == before  # --out was not written


def test_records_not_understood_are_a_warning_and_strict_refuses(
        logs: Path, inline_cli: InlineCli, example: Workspace) -> None:
    """Actions no dialect reads warn with their count and the first one's JSON path."""
    code, out, err = inline_cli(example, "ingest", "logs/gui.json")
    assert code == 0
    assert ("logs/gui.json (text-actions): 1 run, 7 steps (1 input, 1 reasoning, 2 results, "
            "3 outputs); content: present in every step") in out
    assert err.strip() == (
        "warning: logs/gui.json $[0].contents[0][1].action: 2 records not understood, the "
        "first here: 2 × agent action not understood as a tool call, though the environment "
        "answered it")
    code, _, err = inline_cli(example, "ingest", "logs/gui.json", "--strict")
    assert code == 2
    assert err.startswith("error: logs/gui.json: $[0].contents[0][1].action: 2 records not "
                          "understood") and err.count("\n") == 1


def test_a_file_with_no_runs_of_the_agent_is_a_warning(
        logs: Path, inline_cli: InlineCli, example: Workspace) -> None:
    """A log holding only another agent's runs says so, and --strict refuses it."""
    code, _, err = inline_cli(example, "ingest", LOG, "--agent", "billing-agent")
    assert code == 0
    assert err.strip() == f"warning: {LOG}: no runs of agent billing-agent were read"
    code, _, err = inline_cli(example, "ingest", LOG, "--agent", "billing-agent", "--strict")
    assert code == 2 and "--strict refuses" in err


@pytest.mark.slow
def test_investigate_says_what_it_read_and_strict_changes_nothing(
        logs: Path, inline_cli: InlineCli, example: Workspace) -> None:
    """investigate prints what each log held and warns; with --strict it writes nothing."""
    incident_id = captured(example)
    before = tree(example.root)
    code, out, err = inline_cli(example, "investigate", incident_id, "--logs", LOG,
                                "--logs", "logs/headers.jsonl", "--strict")
    assert code == 2 and "3 of 3 runs read with no steps" in err and err.count("\n") == 1
    assert tree(example.root) == before
    code, out, err = inline_cli(example, "investigate", incident_id, "--logs", LOG,
                                "--logs", "logs/headers.jsonl")
    assert code == 0, err
    assert f"{LOG} (jsonl): 3 runs, 23 steps" in out and "1 of 6 runs matched" in out
    assert "warning: logs/headers.jsonl:1: 3 of 3 runs read with no steps" in err


def test_summary_pairs_results_across_interleaved_runs_and_mixed_time_zones(
        tmp_path: Path) -> None:
    """Results pair by id, else by tool, across a run's interleaved parts, and times with
    and without a zone widen the file's first and last time as UTC."""
    lines = [
        {"schema_version": 1, "kind": "run", "run_id": "a"},
        {"run_id": "a", "kind": "user_input", "content": "refund A-1", "at":
         "2026-11-25T21:00:00"},
        {"run_id": "a", "kind": "tool_call", "tool": "issue_refund", "call_id": "c1",
         "at": "2026-11-25T20:00:00+02:00"},
        {"run_id": "b", "kind": "tool_call", "tool": "issue_refund", "call_id": "c1"},
        {"run_id": "a", "kind": "tool_call", "tool": "lookup_order"},
        {"run_id": "a", "kind": "tool_result", "tool": "lookup_order", "result": {"ok": 1}},
        {"run_id": "a", "kind": "tool_result", "call_id": "c1", "result": {"ok": 1}},
        {"run_id": "a", "kind": "tool_result", "tool": "other", "call_id": "zz",
         "result": "done"},
        {"run_id": "a", "kind": "output", "content": "  "},
    ]
    log = tmp_path / "mixed.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = ingest([log]).files[0]
    assert summary.understood().endswith(
        "(jsonl): 2 runs, 8 steps (1 input, 3 calls, 3 results, 1 output); calls: 2 with a "
        "result, 1 without; content: missing from 1 of 1 outputs")
    assert (summary.first_at, summary.last_at) == (
        datetime(2026, 11, 25, 18, tzinfo=UTC), datetime(2026, 11, 25, 21, tzinfo=UTC))
