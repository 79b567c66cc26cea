"""A suite run with ``park_passing`` releases each passing case's runs once the case ends."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from evalsuite import Engine, EvalCase, RunSettings, TrialResult, run_cases
from tests.evalsuite.test_runner import (  # the autouse fixture forgets imported agents
    OVER_REFUND,
    PASSING,
    _agent,
    _case,
    _restore_import_state,  # noqa: F401
)


def _recording(cases: list[EvalCase], adapter_root: Path, source: str, *,
               park_passing: bool) -> tuple[list[Any], list[tuple[str, dict[str, Any]]],
                                            list[bool]]:
    """Run ``cases`` one trial at a time; note, as each trial is recorded, whether the
    runs of the cases before it are still alive."""
    seen: list[tuple[str, weakref.ref[Any]]] = []
    dumps: list[tuple[str, dict[str, Any]]] = []
    earlier_alive: list[bool] = []

    def record(case: EvalCase, result: TrialResult) -> None:
        earlier_alive.append(any(ref() is not None for case_id, ref in seen
                                 if case_id != case.id))
        assert result.run is not None
        seen.append((case.id, weakref.ref(result.run)))
        dumps.append((case.id, result.run.model_dump(mode="json")))

    engine = Engine(_agent(adapter_root, source), RunSettings(trials=2, concurrency=1))
    results = run_cases(engine, cases, record=record, park_passing=park_passing)
    return results, dumps, earlier_alive


def test_a_passing_cases_runs_are_released_before_the_next_case_ends(tmp_path: Path) -> None:
    """With park_passing, no run of a finished passing case is alive when the next one is
    recorded, and each reads back as the run the recorder saw."""
    cases = [_case(id=f"refund-{n}") for n in range(3)]
    results, dumps, earlier_alive = _recording(cases, tmp_path, PASSING, park_passing=True)
    assert [r.outcome for r in results] == ["pass"] * 3
    assert earlier_alive == [False] * 6
    for result in results:
        for trial in result.trials:
            assert trial.run is None and trial.has_run
            assert [j.passed for j in trial.recorded_judgements] == [True, True, True]
    read_back = [(r.case_id, t.recorded_run.model_dump(mode="json"))
                 for r in results for t in r.trials if t.recorded_run is not None]
    assert read_back == dumps


def test_without_park_passing_every_run_stays_whole(tmp_path: Path) -> None:
    """By default a suite's results keep every run as models, as callers of run_cases
    have always read them."""
    cases = [_case(id=f"refund-{n}") for n in range(2)]
    results, _, earlier_alive = _recording(cases, tmp_path, PASSING, park_passing=False)
    assert earlier_alive == [False, False, True, True]
    assert all(t.run is not None and t.recorded_run is t.run
               for r in results for t in r.trials)


def test_a_case_that_did_not_pass_keeps_its_runs_whole(tmp_path: Path) -> None:
    """A failing case is read whole afterwards (what the agent did), so it is never parked."""
    results, _, _ = _recording([_case(id="over-refund")], tmp_path, OVER_REFUND,
                               park_passing=True)
    assert results[0].outcome == "fail"
    trial = results[0].trials[0]
    assert trial.run is not None and trial.judgements
    assert trial.recorded_run is trial.run


def test_held_results_of_passing_cases_share_one_set_of_field_names(tmp_path: Path) -> None:
    """Every held result of a passing case, and every parked trial, lists each of its
    fields as set through one shared set, which a field assigned on one leaves as it was."""
    cases = [_case(id=f"refund-{n}") for n in range(3)]
    results, _, _ = _recording(cases, tmp_path, PASSING, park_passing=True)
    trials = [t for r in results for t in r.trials]
    assert all(r.model_fields_set is results[0].model_fields_set for r in results)
    assert all(t.model_fields_set is trials[0].model_fields_set for t in trials)
    assert results[0].model_fields_set == set(type(results[0]).model_fields)
    assert trials[0].model_fields_set == set(type(trials[0]).model_fields)
    results[0].confidence = 0.9
    assert results[0].model_fields_set == set(type(results[0]).model_fields)
    assert [r.confidence for r in results] == [0.9, 0.95, 0.95]
    assert results[1].model_dump(exclude_unset=True) == results[1].model_dump()
