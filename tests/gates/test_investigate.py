"""Investigation through the real CLI and the gate: ingest, investigate, timeline, metrics,
the logging finding, and the logging check that fails until new logs are complete."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from evalsuite import read_runs
from gates import Evidence, Investigated, Workspace, load_inputs
from gates._gate.logging_check import logging as logging_check
from gates._response.investigation import investigate
from regressions import ROOT_CAUSE, resolution_gaps, utc_now
from tests.conftest import RunCli, tree
from tests.helpers import ACTOR, LOG, captured

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent.parent / "data" / "logs"
OTLP = DATA / "refund-agent.otlp.jsonl"
TAU = Path(__file__).parents[3] / "shared" / "datasets" / "tau-bench" / (
    "gpt-4o-airline.subset.json")
ANY_REFUND = [{"kind": "tool_call", "tool": "issue_refund", "description": "any refund"}]


def _one_clear_line(result: object, *needles: str) -> None:
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr


def _edit_signature(ws: Workspace, incident_id: str, match: list[dict[str, object]]) -> None:
    path = ws.incidents().path(incident_id)
    data = yaml.safe_load(path.read_text())
    data["investigation"]["signature"]["match"] = match
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _investigated_with_gaps(example: Workspace) -> Investigated:
    """INC-1 captured, its signature widened to any refund, investigated again over the
    example's log and the OTLP log, whose runs leave the four logging questions open."""
    incident_id = captured(example)
    investigate(example, incident_id, [example.root / LOG], actor=ACTOR)
    _edit_signature(example, incident_id, ANY_REFUND)
    shutil.copy(OTLP, example.logs_dir / OTLP.name)
    return investigate(
        example, incident_id, [example.root / LOG, example.logs_dir / OTLP.name], actor=ACTOR)


def _checked(ws: Workspace) -> tuple[str, str, list[str]]:
    result = logging_check(load_inputs(ws, "refund-agent"), Evidence([], frozenset()))
    return result.outcome, result.summary, result.findings


def test_ingest_reads_every_format_and_writes_native_runs(example: Workspace,
                                                         cli: RunCli) -> None:
    """`reinstate ingest` reads OTLP, OpenAI (tau-bench) and Anthropic logs and converts them."""
    result = cli("ingest", str(OTLP), str(DATA / "refund-agent.anthropic.jsonl"), str(TAU),
                 "--out", "converted.jsonl", cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "otel" in result.stdout and "anthropic" in result.stdout and "openai" in result.stdout
    runs = read_runs(example.root / "converted.jsonl")
    assert len(runs) == 3 + 2 + 80
    assert runs[0].run_id == "conv_5j66UpCpwteGg4YSxUnt7lPY"


def test_ingest_stops_at_a_truncated_line_and_writes_nothing(example: Workspace,
                                                           cli: RunCli) -> None:
    """A line cut off mid-record is one error line naming file and line; --out is not written."""
    lines = (example.root / LOG).read_text().splitlines()
    (example.root / "logs" / "cut.jsonl").write_text("\n".join([*lines[:4], lines[4][:60],
                                                                 *lines[5:]]) + "\n")
    before = tree(example.root)
    result = cli("ingest", "logs/cut.jsonl", "--out", "out.jsonl", cwd=example.root)
    _one_clear_line(result, "logs/cut.jsonl:5", "not valid JSON")
    assert tree(example.root) == before


def test_ingest_skip_invalid_reports_what_it_left_out(example: Workspace, cli: RunCli) -> None:
    """--skip-invalid reads on, says how many records were skipped and why, and writes the rest."""
    lines = (example.root / LOG).read_text().splitlines()
    lines[4] = lines[4][:60]
    lines[11] = lines[11].replace('"tool": "issue_refund"', '"tool": ["issue_refund"]')
    (example.root / "logs" / "cut.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("ingest", "logs/cut.jsonl", "--skip-invalid", "--out", "out.jsonl",
                 cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "skipped 2 invalid record(s)" in result.stderr
    assert "logs/cut.jsonl:5" in result.stderr and "logs/cut.jsonl:12" in result.stderr
    assert sum(len(r.steps) for r in read_runs(example.root / "out.jsonl")) == len(lines) - 3 - 2


def test_ingest_refuses_what_is_not_a_log(example: Workspace, cli: RunCli) -> None:
    """A file that is not a run log, or a format that does not exist, is one clear line."""
    (example.root / "notes.txt").write_text("shopping list\n")
    _one_clear_line(cli("ingest", "notes.txt", cwd=example.root), "notes.txt",
                    "not a run log")
    bad = cli("ingest", LOG, "--format", "csv", cwd=example.root)
    assert bad.returncode == 2 and "csv" in bad.stderr
    _one_clear_line(cli("ingest", str(OTLP), "--format", "jsonl", cwd=example.root),
                    "refund-agent.otlp.jsonl:1")


def test_investigate_writes_timeline_scope_and_history(example: Workspace, cli: RunCli) -> None:
    """The incident gets its run, a timeline with sources, the scope and a history entry."""
    incident_id = captured(example)
    result = cli("investigate", incident_id, "--logs", LOG, cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "1 of 3 runs matched" in result.stdout
    incident = example.incidents().load(incident_id)
    assert incident.phase == "investigating" and incident.history[-1].action == "investigate"
    inv = incident.investigation
    assert inv is not None and inv.runs == ["run-7f3a97"] and inv.logging_gaps == []
    kinds = [e.kind for e in inv.timeline]
    assert kinds[:2] == ["user_input", "reasoning"] and {"containment", "mode_change",
                                                         "detection"} <= set(kinds)
    refund = next(e for e in inv.timeline if e.kind == "tool_call" and e.step == 4)
    assert refund.source == f"{LOG}:12" and refund.summary.startswith("issue_refund(")
    shown = cli("timeline", incident_id, cwd=example.root)
    assert shown.returncode == 0 and "issue_refund(" in shown.stdout
    assert "store_credit:C-7731" in shown.stdout and "audit log #" in shown.stdout
    as_json = json.loads(cli("timeline", incident_id, "--json", cwd=example.root).stdout)
    assert as_json["scope"]["runs_matched"] == 1


def test_an_edited_signature_is_used_when_investigating_again(example: Workspace,
                                                              cli: RunCli) -> None:
    """Widening the signature in the incident file and rerunning finds every refund."""
    incident_id = captured(example)
    assert cli("investigate", incident_id, "--logs", LOG, cwd=example.root).returncode == 0
    _edit_signature(example, incident_id, ANY_REFUND)
    again = cli("investigate", incident_id, "--logs", LOG, cwd=example.root)
    assert again.returncode == 0, again.stderr
    scope = example.incidents().load(incident_id).investigation.scope  # type: ignore[union-attr]
    assert (scope.runs_matched, [r.run_id for r in scope.runs]) == (
        2, ["run-7f3a97", "run-7f3a9c"])


def test_a_bad_log_leaves_the_incident_as_it_was(example: Workspace, cli: RunCli) -> None:
    """A wrong type in a log stops the investigation with one line, and nothing is written."""
    incident_id = captured(example)
    text = (example.root / LOG).read_text().replace('"kind": "output"', '"kind": "answer"', 1)
    (example.root / "logs" / "bad.jsonl").write_text(text)
    before = tree(example.root)
    result = cli("investigate", incident_id, "--logs", LOG, "logs/bad.jsonl", cwd=example.root)
    _one_clear_line(result, "logs/bad.jsonl:6", "$.kind", "'answer'")
    assert tree(example.root) == before
    missing = cli("investigate", incident_id, "--logs", "logs/nope.jsonl", cwd=example.root)
    _one_clear_line(missing, "logs/nope.jsonl", "file not found")


def test_logging_gaps_are_a_root_cause_and_fail_the_gate_until_new_logs(
        example: Workspace) -> None:
    """Gaps give a logging finding; the check fails until runs logged after it are complete."""
    done = _investigated_with_gaps(example)
    inv = done.investigation
    assert inv.scope.runs_matched == 5 and inv.gap_runs == ["conv_Z9x8c7v6b5n4m3"]
    assert {g.question for g in inv.logging_gaps} == {"goal", "context", "tools", "completion"}
    finding = next(f for f in done.incident.findings if f.layer == "logging")
    assert finding.gap and finding.description.startswith(ROOT_CAUSE)
    assert done.incident.phase == "investigating"
    assert not any("logging" in gap for gap in resolution_gaps(done.incident))
    outcome, summary, _ = _checked(example)
    assert outcome == "fail" and "since INC-1 found logging gaps" in summary

    later = utc_now() + timedelta(minutes=5)
    lines = []
    for line in (example.root / LOG).read_text().splitlines()[6:16]:
        record = json.loads(line)
        record["run_id"] = "run-8a0001"
        if "started_at" in record:
            record["started_at"] = later.isoformat()
        if "at" in record:
            record["at"] = later.isoformat()
        lines.append(json.dumps(record))
    (example.logs_dir / "after-the-fix.jsonl").write_text("\n".join(lines) + "\n")
    outcome, summary, findings = _checked(example)
    assert (outcome, findings) == ("pass", []), (summary, findings)
    assert "1 recent run(s) logged since INC-1's investigation answer" in summary


def test_logging_check_never_passes_on_no_logs(example: Workspace) -> None:
    """Without logs the check is inconclusive; with an unreadable log it is an error."""
    shutil.rmtree(example.logs_dir)
    assert _checked(example)[0] == "inconclusive"
    example.logs_dir.mkdir()
    (example.logs_dir / "broken.jsonl").write_text(
        '{"run_id": "r", "kind": "run", "agent": "refund-agent"}\n'
        '{"run_id": "r", "kind": "user_input", "content": 5}\n')
    outcome, summary, _ = _checked(example)
    assert outcome == "error" and "broken.jsonl:2" in summary and "$.content" in summary


def test_metrics_say_unknown_where_the_logs_are_silent(example: Workspace, cli: RunCli) -> None:
    """On tau-bench: success and escalation from documented fields, cost and corrections unknown."""
    result = cli("metrics", "--logs", str(TAU), "--escalation-tool", "transfer_to_human_agents",
                 "--json", cwd=example.root)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    values = {m["name"]: m["value"] for m in data["metrics"]}
    assert data["runs"] == 80 and values["task success rate"] == 53 / 80
    assert values["escalation rate"] == 27 / 80
    assert values["cost per successful run"] is None and values["human correction rate"] is None
    table = cli("metrics", "--logs", LOG, cwd=example.root)
    # The six outcome metrics, model calls and both token counts: that log records none;
    # and the three the review queue and the guard's decisions give: there are none yet.
    assert table.returncode == 0 and table.stdout.count("unknown:") == 9 + 3


@pytest.mark.attack
def test_a_run_id_reused_in_another_log_is_said_not_merged_silently(example: Workspace,
                                                                    cli: RunCli) -> None:
    """Last month's rotated log holds another run that happens to carry the incident's run
    id: runs are joined by id across every log given, so its steps would enter the
    incident's run in the timeline and the scope without a word. `investigate` says which
    run id was read from which logs, so the investigator sees the join."""
    incident_id = captured(example)
    other = "logs/2026-10-refund-agent.jsonl"
    (example.root / other).write_text("\n".join(json.dumps(line) for line in [
        {"schema_version": 1, "kind": "run", "run_id": "run-7f3a97", "agent": "refund-agent",
         "agent_version": "1.3.0", "started_at": "2026-10-02T08:00:00Z"},
        {"run_id": "run-7f3a97", "kind": "user_input", "content": "Where is my order A-9?",
         "at": "2026-10-02T08:00:00Z"},
        {"run_id": "run-7f3a97", "kind": "output", "content": "It has shipped.",
         "at": "2026-10-02T08:00:02Z"},
    ]) + "\n")
    alone = cli("investigate", incident_id, "--logs", LOG, cwd=example.root)
    assert alone.returncode == 0 and "more than one log" not in alone.stderr, alone.stderr
    result = cli("investigate", incident_id, "--logs", LOG, other, cwd=example.root)
    assert result.returncode == 0, result.stderr
    warning = " ".join(result.stderr.split())
    assert "run run-7f3a97 was read from more than one log" in warning, result.stderr
    assert LOG in warning and other in warning
    assert "1 of 3 runs matched" in result.stdout  # the figures are as before, now said
    done = investigate(example, incident_id, [example.root / LOG, example.root / other],
                       actor=ACTOR)
    assert any("run run-7f3a97 was read from more than one log" in w for w in done.warnings)


@pytest.mark.attack
def test_a_run_id_reused_inside_one_log_is_said_not_merged_silently(example: Workspace,
                                                                    cli: RunCli) -> None:
    """One log holds the harmful run and, two hours later, another run started under a
    run id already used in it (a service that restarted its counter): the two were joined
    as one run, so "N of M runs matched" counted them once and the timeline mixed their
    steps, with no word. The run records are recounted from the log: the figure is
    printed as before (runs are joined by id) and the reuse is now said, naming both
    places."""
    incident_id = captured(example)
    lines = [json.loads(line) for line in (example.root / LOG).read_text().splitlines()]
    harmful = [dict(line, run_id="run-7f3a91") for line in lines
               if line.get("run_id") == "run-7f3a97"]
    harmful[0]["started_at"] = "2026-11-25T23:09:11Z"
    reused = "logs/reused.jsonl"
    (example.root / reused).write_text(
        "\n".join(json.dumps(line) for line in [*lines, *harmful]) + "\n")
    records = [line for line in [*lines, *harmful] if line.get("kind") == "run"]
    starts = {(r["run_id"], r["started_at"]) for r in records}
    assert len(starts) == 4 and len({r["run_id"] for r in records}) == 3  # 4 runs, 3 ids
    result = cli("investigate", incident_id, "--logs", reused, cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "2 of 3 runs matched" in result.stdout, result.stdout
    warning = " ".join(result.stderr.split())
    assert "run run-7f3a91 is started again in one log" in warning, result.stderr
    first = next(i for i, r in enumerate(lines, 1) if r.get("run_id") == "run-7f3a91")
    again = len(lines) + 1
    assert f"{reused}:{first}" in warning and f"{reused}:{again}" in warning, warning
    assert "run-7f3a97 is started again" not in warning  # its one start is not said
    plain = cli("investigate", incident_id, "--logs", LOG, cwd=example.root)
    assert plain.returncode == 0 and "started again" not in plain.stderr, plain.stderr


def test_investigation_times_edited_with_an_offset_print_as_utc(example: Workspace,
                                                                cli: RunCli) -> None:
    """The incident file's investigation written back with local offsets (an editor that
    rewrote the times, a person who typed them): "investigated 06:43 UTC" and the scope
    "from 16:09:14 … UTC" were the clock readings at +05:00 and -05:00 printed as UTC.
    They are read as the instants they are and printed in UTC."""
    incident_id = captured(example)
    done = cli("investigate", incident_id, "--logs", LOG, cwd=example.root)
    assert done.returncode == 0, done.stderr
    path = example.incidents().path(incident_id)
    data = yaml.safe_load(path.read_text())
    inv = data["investigation"]
    truth = {key: datetime.fromisoformat(inv[key] if key == "investigated_at"
                                         else inv["scope"][key]).astimezone(UTC)
             for key in ("investigated_at", "first_at", "last_at")}
    inv["investigated_at"] = truth["investigated_at"].astimezone(
        timezone(timedelta(hours=5))).isoformat()
    for key in ("first_at", "last_at"):
        inv["scope"][key] = truth[key].astimezone(timezone(timedelta(hours=-5))).isoformat()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    shown = cli("timeline", incident_id, cwd=example.root)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert f"investigated {truth['investigated_at']:%Y-%m-%d %H:%M} UTC" in text, text
    assert (f"from {truth['first_at']:%Y-%m-%d %H:%M:%S} to "
            f"{truth['last_at']:%Y-%m-%d %H:%M:%S} UTC") in text, text


@pytest.mark.attack
def test_an_investigation_that_checked_no_run_does_not_clear_a_logging_gap(
        example: Workspace, cli: RunCli) -> None:
    """A logging gap is on record; the incident is investigated again in a log that holds
    none of its runs and nothing the signature matches. Zero runs were checked, and the
    logging finding was rewritten as "every one of the 0 runs in scope answers the four
    questions", no gap: a figure over nothing that erased the root cause. Now the finding
    stays as it was, and the investigation says it checked no run."""
    done = _investigated_with_gaps(example)
    incident_id = done.incident.id
    before = next(f for f in done.incident.findings if f.layer == "logging")
    assert before.gap
    other = "logs/other.jsonl"
    (example.root / other).write_text("\n".join(json.dumps(line) for line in [
        {"schema_version": 1, "kind": "run", "run_id": "run-unrelated", "agent": "refund-agent",
         "started_at": "2026-11-26T08:00:00Z"},
        {"run_id": "run-unrelated", "kind": "user_input", "content": "Where is my order A-9?",
         "at": "2026-11-26T08:00:00Z"},
        {"run_id": "run-unrelated", "kind": "output", "content": "It has shipped.",
         "at": "2026-11-26T08:00:02Z"},
    ]) + "\n")
    again = cli("investigate", incident_id, "--logs", other, cwd=example.root)
    assert again.returncode == 0, again.stderr
    assert "0 of 1 runs matched" in again.stdout, again.stdout
    recorded = example.incidents().load(incident_id)
    assert recorded.investigation is not None and recorded.investigation.runs_checked == 0
    after = next(f for f in recorded.findings if f.layer == "logging")
    assert after == before, after
    assert "0 runs in scope answers" not in again.stdout + again.stderr
    assert "logging: unknown: no run in scope was found in the logs" in again.stdout
    written = cli("postmortem", incident_id, cwd=example.root)
    assert written.returncode == 0, written.stderr
    assert "the logs of the 0 run(s) in scope answer" not in written.stdout
    assert "logging: unknown: no run in scope was found in the logs" in written.stdout
