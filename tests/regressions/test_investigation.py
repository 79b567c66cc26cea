"""Investigation over runs: signatures and scope, the four logging questions, the timeline,
and what a logging gap demands of the resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evalsuite import (
    InvalidInput,
    Output,
    OutputNotContains,
    Run,
    RunOutcome,
    ToolCall,
    ToolResult,
    UserInput,
    read_log,
    read_runs,
)
from regressions import (
    Incident,
    RegressionCase,
    ScopeSearch,
    Signature,
    TimelineEvent,
    build_timeline,
    derive_signature,
    logging_gaps,
    resolution_gaps,
)

LOG = Path(__file__).parents[2] / "gates" / "_example" / "workspace" / "logs" / (
    "2026-11-25-refund-agent.jsonl")
T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)


def _case(harmful: list[int]) -> RegressionCase:
    run = next(r for r in read_runs(LOG) if r.run_id == "run-7f3a97")
    return RegressionCase.model_validate({
        "id": "INC-1-1", "agent": "refund-agent", "description": "over-refund",
        "tags": ["prompt_injection"], "input": {"messages": [{"role": "user", "content": "x"}]},
        "expect": [{"kind": "passes_acceptance"}],
        "provenance": {"incident": "INC-1", "source": "logs/a.jsonl", "source_sha256": "0",
                       "run_id": "run-7f3a97", "captured_at": T0, "captured_by": "dana"},
        "recorded": {"steps": [s.model_dump() for s in run.steps], "harmful": harmful},
    })


def _search(signature: dict[str, Any], criteria: dict[str, Any] | None = None) -> ScopeSearch:
    search = ScopeSearch(Signature.model_validate(signature), criteria or {},
                         keep=["run-7f3a91"])
    for part in read_log(LOG):
        search.feed(part)
    return search


def test_derived_signature_looks_for_the_recorded_calls_and_failed_criteria() -> None:
    """Each harmful call gives a tool pattern; a harmful output gives its failed criteria."""
    signature = derive_signature([_case([4, 6, 8])], lambda output: ["no-store-credit"])
    assert signature is not None and signature.derived_from == ["INC-1-1"]
    kinds = [(p.kind, getattr(p, "tool", None) or getattr(p, "fails", None))
             for p in signature.match]
    assert kinds == [("tool_call", "issue_refund"), ("tool_call", "send_email"),
                     ("output", "no-store-credit")]
    assert derive_signature([], lambda output: []) is None


def test_scope_of_the_exact_signature_is_the_incident_run_alone() -> None:
    """The derived signature matches the two harmful calls of one of three runs."""
    signature = derive_signature([_case([4, 6])], lambda output: [])
    assert signature is not None
    search = _search(signature.model_dump())
    scope = search.scope()
    assert (scope.runs_searched, scope.runs_matched, scope.calls_matched) == (3, 1, 2)
    assert scope.runs[0].run_id == "run-7f3a97" and scope.runs[0].first_match.endswith(":12")
    assert scope.first_at == datetime(2026, 11, 25, 21, 9, 14, 400000, tzinfo=UTC)
    assert [p.run_id for p in search.kept] == ["run-7f3a91"]


def test_an_edited_signature_widens_the_scope() -> None:
    """Every refund, by any argument, matches two runs; an output pattern counts outputs."""
    criteria = {"no-refund-talk": OutputNotContains(kind="output_not_contains",
                                                    id="no-refund-talk", text="refund")}
    search = _search({"match": [{"kind": "tool_call", "tool": "issue_refund"},
                                {"kind": "output", "fails": "no-refund-talk"}]}, criteria)
    scope = search.scope()
    assert (scope.runs_matched, scope.calls_matched, scope.outputs_matched) == (2, 2, 2)
    assert search.matched_runs == ["run-7f3a97", "run-7f3a9c"]


def test_runs_searched_count_runs_of_a_log_without_run_headers(tmp_path: Path) -> None:
    """A native log whose runs have no header line still has runs: they are searched and
    counted, never "1 of 0 runs matched"."""
    log = tmp_path / "headless.jsonl"
    log.write_text("".join(line for line in LOG.read_text().splitlines(keepends=True)
                           if '"kind": "run"' not in line))
    search = ScopeSearch(Signature.model_validate(
        {"match": [{"kind": "tool_call", "tool": "issue_refund"}]}), {})
    for part in read_log(log):
        search.feed(part)
    scope = search.scope()
    assert (scope.runs_searched, scope.runs_matched) == (3, 2)


def test_an_unknown_criterion_in_a_signature_is_named() -> None:
    """An output pattern naming no acceptance criterion is refused with a suggestion."""
    criteria = {"no-card-numbers": OutputNotContains(kind="output_not_contains",
                                                     id="no-card-numbers", text="4242")}
    with pytest.raises(InvalidInput, match="did you mean 'no-card-numbers'"):
        _search({"match": [{"kind": "output", "fails": "no-card-number"}]}, criteria)


def test_a_complete_run_answers_the_four_questions() -> None:
    """The bundled example's runs log goal, context, paired tools, reasoning and output."""
    assert [logging_gaps(run, "log") for run in read_runs(LOG)] == [[], [], []]


def _gaps(run: Run) -> dict[str, str]:
    return {g.question: g.detail for g in logging_gaps(run, "log")}


def test_each_missing_answer_is_its_own_gap() -> None:
    """No input, no context, an unlogged and unanswered call, no output: four gaps."""
    run = Run(run_id="r", steps=[ToolCall(tool="issue_refund", arguments_logged=False)])
    gaps = _gaps(run)
    assert set(gaps) == {"goal", "context", "tools", "completion"}
    assert gaps["tools"] == ("step 0 issue_refund: arguments not logged; step 0 issue_refund: "
                             "no result logged")
    assert gaps["completion"] == "no output logged after the last tool result"


def test_a_stop_reason_answers_why_the_agent_was_done() -> None:
    """Without reasoning, an output and a recorded stop reason answer the fourth question."""
    steps = [UserInput(content="hi"), ToolCall(tool="t", call_id="1"),
             ToolResult(call_id="1", result=1)]
    bare = Run(run_id="r", context={"c": 1}, steps=[*steps, Output(content="done")])
    assert _gaps(bare) == {"completion": "no reasoning and no stop reason logged"}
    told = bare.model_copy(update={"outcome": RunOutcome(stop_reason="end_turn")})
    assert _gaps(told) == {}


def test_timeline_orders_steps_and_incident_events_by_time() -> None:
    """Steps without a time follow the step before; detection comes after the run."""
    run = next(r for r in read_runs(LOG) if r.run_id == "run-7f3a97")
    undated = run.model_copy(update={"steps": [
        s.model_copy(update={"at": None}) if i == 3 else s for i, s in enumerate(run.steps)]})
    detection = TimelineEvent(at=T0 + timedelta(hours=2), kind="detection", summary="d",
                              source="incidents/INC-1.yaml")
    earlier = TimelineEvent(at=T0, kind="mode_change", summary="m", source="audit log #1")
    events = build_timeline([(undated, [f"log:{i}" for i in range(9)])], [detection, earlier])
    assert [e.kind for e in events] == ["mode_change", "user_input", "reasoning", "tool_call",
                                        "tool_result", "tool_call", "tool_result", "tool_call",
                                        "tool_result", "output", "detection"]
    assert events[4].step == 3 and events[4].at is None and events[4].source == "log:3"


def _incident(**fields: Any) -> Incident:
    base: dict[str, Any] = {
        "id": "INC-1", "agent": "refund-agent", "summary": "s", "severity": "sev2",
        "detected_at": T0, "opened_by": "dana",
        "containment": {"mode": "review", "contained_at": T0, "contained_by": "dana",
                        "notified": ["legal"], "scope": "one",
                        "target_hours": 4, "baseline": {"directory": "b", "files": {},
                                                        "fingerprint": {}}},
        "findings": [{"id": f"F-{n}", "layer": layer, "gap": False, "description": "d"}
                     for n, layer in enumerate(["tool_permission_boundary", "eval_coverage",
                                                "acceptance_criteria", "review_gate"], 1)],
        "no_control_gap_reason": "model slip",
        "control_changes": [{"id": "CC-1", "layer": "prompt", "description": "p"}],
    }
    return Incident.model_validate({**base, **fields})


GAP = {"run_id": "r1", "question": "tools", "detail": "step 2 t: no result logged",
       "source": "logs/a.jsonl:3"}
INVESTIGATION = {
    "investigated_at": T0, "investigated_by": "dana",
    "logs": [{"path": "logs/a.jsonl", "sha256": "0" * 64, "format": "jsonl"}],
    "signature": {"match": [{"kind": "tool_call", "tool": "t"}]},
    "scope": {"runs_searched": 1, "steps_searched": 3, "runs_matched": 1, "calls_matched": 1,
              "outputs_matched": 0},
}


def test_resolution_needs_a_logging_finding_only_when_logs_had_gaps() -> None:
    """Gaps in the investigation require a logging finding; complete logs do not."""
    assert resolution_gaps(_incident()) == []
    assert resolution_gaps(_incident(investigation=INVESTIGATION)) == []
    gapped = _incident(investigation={**INVESTIGATION, "logging_gaps": [GAP]})
    assert resolution_gaps(gapped) == [
        "INC-1's investigation found logging gaps in 1 run(s), but no logging finding is "
        "recorded"]
    finding = {"id": "F-5", "layer": "logging", "gap": True, "description": "no results logged"}
    recorded = _incident(investigation={**INVESTIGATION, "logging_gaps": [GAP]},
                         findings=[*_incident().model_dump()["findings"], finding])
    assert resolution_gaps(recorded) == []  # the gate's logging check proves the fix


def _listed(n: int) -> list[dict[str, Any]]:
    return [{"run_id": f"r{i}", "first_match": f"logs/a.jsonl:{i}", "matches": 1}
            for i in range(n)]


@pytest.mark.attack
@pytest.mark.parametrize(("scope", "where"), [
    # 150 runs matched, the first 100 listed, the rest no longer said to exist: the backtest
    # would have trusted the list and labelled 50 harmful runs as nothing.
    ({"runs_matched": 150, "calls_matched": 150, "runs": _listed(100)}, ["runs_not_listed"]),
    ({"runs_matched": 2, "calls_matched": 2,
      "runs": [*_listed(1), *_listed(1)]}, ["runs", 1, "run_id"]),
    ({"runs_matched": 3, "calls_matched": 3, "runs": _listed(2)}, ["runs"]),
    ({"runs_searched": 1, "runs_matched": 2, "calls_matched": 2, "runs": _listed(2)},
     ["runs_matched"]),
    ({"runs_matched": 1, "calls_matched": 0, "outputs_matched": 0, "runs": _listed(1)},
     ["runs_matched"]),
    ({"runs_matched": 1, "calls_matched": 1,
      "runs": [{**_listed(1)[0], "matches": 0}]}, ["runs", 0, "matches"]),
    ({"runs_matched": 1, "calls_matched": 1, "runs": _listed(1),
      "first_at": T0, "last_at": T0 - timedelta(hours=1)}, ["last_at"]),
])
def test_scope_figures_that_disagree_make_the_incident_invalid(
        scope: dict[str, Any], where: list[str | int]) -> None:
    """Figures no one search could produce (a run deleted from the list, the unlisted count
    zeroed, a count above what was searched) are named where they are, never read as a
    smaller scope of impact."""
    figures = {"runs_searched": 500, "steps_searched": 5000, "outputs_matched": 0, **scope}
    incident = _incident(investigation={**INVESTIGATION, "scope": figures})
    problems = incident.reference_problems()
    assert problems and problems[0][0] == ["investigation", "scope", *where], problems
    whole = {**figures, "runs_not_listed": max(0, figures["runs_matched"] - 100)}
    if where[0] == "runs_not_listed":
        assert _incident(investigation={**INVESTIGATION, "scope": whole}
                         ).reference_problems() == []
