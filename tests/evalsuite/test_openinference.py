"""OpenInference and OpenLLMetry traces as the real instrumentations write them (the real
``openai`` client against a local scripted server, exported as OTLP/JSON), read into runs:
steps, arguments, results, context, and one run per session across traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite import (
    ToolResult,
    UserInput,
    read_log,
    read_log_runs,
    sessions_grouped_by,
)
from gates import Workspace
from tests.conftest import RunCli, tree
from tests.helpers import as_another_session, captured
from tests.openinference_producers import (
    ASK,
    THANKS,
    assert_the_conversation,
    produce,
)

pytestmark = pytest.mark.slow  # each file is made by a child process running the client



@pytest.fixture(scope="module")
def openinference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One session of three model calls traced by openinference-instrumentation-openai."""
    return produce("openinference", tmp_path_factory.mktemp("oi") / "oi.otlp.jsonl")


@pytest.fixture(scope="module")
def openllmetry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same session traced by OpenLLMetry with a session_id association property."""
    return produce("openllmetry", tmp_path_factory.mktemp("ol") / "ol.otlp.jsonl")


def test_openinference_session_is_one_run_with_every_step(openinference: Path) -> None:
    """Three OpenInference traces of one session.id read as one run: each user message once,
    the call with its arguments, the result from the next call's tool message, the answers."""
    runs = read_log_runs(openinference)
    assert len(runs) == 1 and runs[0].run_id == "sess-7731"
    run = runs[0]
    assert_the_conversation(run)
    assert run.context["tool_definitions"][0]["function"]["name"] == "issue_refund"
    assert run.usage is not None and run.usage.model_calls == 3
    assert (run.usage.input_tokens, run.usage.output_tokens) == (120 + 140 + 160, 60)
    assert run.metadata["model"] == "gpt-4o-2024-08-06" and run.metadata["traces"] == 3
    assert run.outcome is not None and run.outcome.stop_reason == "stop"
    assert run.started_at == run.steps[0].at


def test_openinference_tool_span_gives_the_result_once(tmp_path: Path) -> None:
    """A TOOL span the app traced answers the model's call; the next call's tool message
    that repeats it adds no second result."""
    run, = read_log_runs(produce("openinference", tmp_path / "tools.jsonl", tool_spans=True))
    assert_the_conversation(run)
    assert sum(isinstance(s, ToolResult) for s in run.steps) == 1


def test_openllmetry_association_session_is_one_run(openllmetry: Path) -> None:
    """OpenLLMetry's per-call traces sharing traceloop.association.properties.session_id are
    one run, history read once, the tool's result taken from the next call's input."""
    runs = read_log_runs(openllmetry)
    assert len(runs) == 1 and runs[0].run_id == "sess-7731"
    assert_the_conversation(runs[0])
    assert runs[0].usage is not None and runs[0].usage.model_calls == 3


def test_grouping_follows_the_session_attributes_given(openinference: Path,
                                                      openllmetry: Path) -> None:
    """With no session attributes each trace is its own run (each repeating the history);
    an attribute named explicitly is the only one used."""
    with sessions_grouped_by([]):
        alone = read_log_runs(openinference)
    assert len(alone) == 3 and {r.run_id for r in alone} == {
        r.metadata["trace_id"] for r in alone}
    assert [s.kind for s in alone[2].steps] == ["user_input", "user_input", "output"]
    with sessions_grouped_by(["traceloop.association.properties.session_id"]):
        assert len(read_log_runs(openllmetry)) == 1
        assert len(read_log_runs(openinference)) == 3


def test_sessions_held_in_numbers_still_pair_each_result_with_its_call(
        tmp_path: Path, openinference: Path) -> None:
    """Seventy conversations traced in the same minute, so that most of their traces are
    held with only the spans whose input may still answer a call: each is still one run
    with its refund call, the result the next trace's input carries, and its answers."""
    lines = openinference.read_text().splitlines()
    many = tmp_path / "many.jsonl"
    many.write_text("".join(line for number in range(70) for line in as_another_session(
        lines, number, "session.id", f"sess-{number}")))
    runs = read_log_runs(many)
    assert sorted(run.run_id for run in runs) == sorted(f"sess-{n}" for n in range(70))
    for run in runs:
        assert_the_conversation(run)


def test_a_session_streams_one_part_per_trace(openinference: Path) -> None:
    """Each trace is a part of the session's run holding only what it adds."""
    parts = list(read_log(openinference))
    assert [p.run_id for p in parts] == ["sess-7731"] * 3
    assert [[s.kind for s in p.steps] for p in parts] == [
        ["user_input", "tool_call"], ["tool_result", "output"], ["user_input", "output"]]


def test_ingest_and_investigate_find_the_harmful_call(example: Workspace, cli: RunCli,
                                                      openinference: Path,
                                                      openllmetry: Path) -> None:
    """`reinstate ingest` counts one run per session, and `investigate` finds the harmful
    refund in OpenInference spans (it reported 0 of 3 runs matched before)."""
    logs = example.root / "logs"
    (logs / "oi.otlp.jsonl").write_bytes(openinference.read_bytes())
    (logs / "ol.otlp.jsonl").write_bytes(openllmetry.read_bytes())
    incident_id = captured(example)
    # One command each: OTLP files given together are one stream (a session's spans may be
    # split over rotated files), and these two trace the same session id.
    for name in ("oi", "ol"):
        read = cli("ingest", f"logs/{name}.otlp.jsonl", "--out", f"{name}.jsonl",
                   cwd=example.root)
        assert read.returncode == 0, read.stderr
        rows = [line for line in read.stdout.splitlines() if "otel" in line and "│" in line]
        assert len(rows) == 1 and "│ 1    │ 6     │ 1" in rows[0], read.stdout
    found = cli("investigate", incident_id, "--logs", "logs/oi.otlp.jsonl", cwd=example.root)
    assert found.returncode == 0, found.stderr
    assert "1 of 1 runs matched" in found.stdout, found.stdout


def test_session_attributes_from_the_option_and_the_workspace(example: Workspace,
                                                              cli: RunCli,
                                                              openinference: Path) -> None:
    """--session-attribute replaces the list, [ingest] session_attributes sets it for the
    workspace, and a bad entry there is one clear line, exit 2, nothing written."""
    (example.root / "oi.jsonl").write_bytes(openinference.read_bytes())
    by_user = cli("ingest", "oi.jsonl", "--session-attribute", "user.id", cwd=example.root)
    assert by_user.returncode == 0 and "│ 3    │ 7" in by_user.stdout, by_user.stdout
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text() + "\n[ingest]\nsession_attributes = []\n")
    alone = cli("ingest", "oi.jsonl", cwd=example.root)
    assert alone.returncode == 0 and "│ 3    │ 7" in alone.stdout, alone.stdout
    config.write_text(config.read_text().replace("session_attributes = []",
                                                 'session_attributes = [""]'))
    before = tree(example.root)
    bad = cli("ingest", "oi.jsonl", "--out", "runs.jsonl", cwd=example.root)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "reinstate.toml" in bad.stderr and "$.ingest.session_attributes[0]" in bad.stderr
    assert tree(example.root) == before


def test_a_message_said_again_is_not_taken_for_history(tmp_path: Path,
                                                       openinference: Path) -> None:
    """A later trace whose user messages do not begin with the whole history keeps them all:
    the user saying the first request again is evidence, not a repeat."""
    lines = openinference.read_text().splitlines()
    last = json.loads(lines[2])
    span = last["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"] = [a for a in span["attributes"]
                          if not a["key"].startswith("llm.input_messages.")]
    for index, text in enumerate((THANKS, ASK)):
        span["attributes"] += [
            {"key": f"llm.input_messages.{index}.message.role", "value": {"stringValue": "user"}},
            {"key": f"llm.input_messages.{index}.message.content",
             "value": {"stringValue": text}}]
    edited = tmp_path / "again.jsonl"
    edited.write_text("\n".join([*lines[:2], json.dumps(last)]) + "\n")
    run, = read_log_runs(edited)
    assert [s.content for s in run.steps if isinstance(s, UserInput)] == [ASK, THANKS, ASK]
