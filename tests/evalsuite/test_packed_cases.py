"""Cases held packed: read back as the models packed, and alive only while their trials run."""

from __future__ import annotations

import pickle
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

from evalsuite import Engine, EvalCase, PackedCases, RunSettings, TrialResult, run_cases
from tests.evalsuite.test_runner import (  # the autouse fixture forgets imported agents
    PASSING,
    _agent,
    _case,
    _restore_import_state,  # noqa: F401
)


def test_packed_cases_read_back_as_the_models_packed() -> None:
    """Each packed case reads back equal to its model, in order, and ids, keys and a
    selection are had without unpacking."""
    cases = [_case(id=f"refund-{n}", trials=n + 1) for n in range(3)]
    packed = PackedCases(cases)
    assert len(packed) == 3
    assert list(packed) == cases
    assert packed[1] == cases[1] and packed[1] is not cases[1]
    assert packed.ids == ["refund-0", "refund-1", "refund-2"]
    assert [(k.tags, k.trials) for k in packed.keys] == [(("refund_request",), n + 1)
                                                         for n in range(3)]
    assert list(packed.select(lambda key: key.id != "refund-1")) == [cases[0], cases[2]]
    assert list(packed[1:]) == cases[1:]
    joined = packed + [cases[0]]  # noqa: RUF005 (PackedCases.__add__ is what is tested)
    assert list(joined) == [*cases, cases[0]]
    assert joined[3] is cases[0]  # a plain sequence's models are held as they are


def test_a_packed_case_is_released_before_the_next_case_ends(tmp_path: Path) -> None:
    """Run from PackedCases, a finished case's model is dead by the time the next case's
    trial is recorded, and every case's result is there in order."""
    seen: list[tuple[str, weakref.ref[Any]]] = []
    earlier_alive: list[bool] = []

    def record(case: EvalCase, result: TrialResult) -> None:
        earlier_alive.append(any(ref() is not None for case_id, ref in seen
                                 if case_id != case.id))
        seen.append((case.id, weakref.ref(case)))

    cases = PackedCases(_case(id=f"refund-{n}") for n in range(3))
    engine = Engine(_agent(tmp_path, PASSING), RunSettings(trials=2, concurrency=1))
    results = run_cases(engine, cases, record=record, park_passing=True)
    assert [r.case_id for r in results] == ["refund-0", "refund-1", "refund-2"]
    assert [r.outcome for r in results] == ["pass"] * 3
    assert earlier_alive == [False] * 6


def test_a_case_calling_a_predicate_is_held_as_its_model() -> None:
    """A case whose criteria call a predicate keeps its model (and the function bound to
    it), which bytes could not carry."""
    case = _case(id="with-predicate", expect=[
        {"kind": "predicate", "predicate": "checks:refund_is_small"}])
    packed = PackedCases([case])
    assert packed[0] is case


def test_similar_cases_are_held_in_a_fraction_of_their_pickled_size() -> None:
    """A hundred cases that differ in ids and texts are held packed in less than half the
    bytes their pickles take, and read back equal."""
    cases = [_case(id=f"refund-{n}", description=f"Refund number {n} of a damaged order.")
             for n in range(100)]
    pickled = sum(len(pickle.dumps(c, pickle.HIGHEST_PROTOCOL)) for c in cases)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        packed = PackedCases(cases)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < pickled / 2
    assert list(packed) == cases


def test_a_case_unlike_and_larger_than_the_first_packed_reads_back_equal() -> None:
    """A case far larger than zlib's window and unlike any packed before reads back equal."""
    first = _case(id="small")
    large = _case(id="large", description="a long story " * 20_000, tags=["other"] * 50)
    packed = PackedCases([first, large])
    assert list(packed) == [first, large]
