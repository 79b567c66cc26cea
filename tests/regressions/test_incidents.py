"""The incidents folder: unique ids under concurrency, loading, locked changes, resolution gaps."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalsuite import InvalidInput, json_path
from regressions import (
    LAYERS,
    Containment,
    ControlChange,
    Finding,
    IllegalTransition,
    Incident,
    IncidentBook,
    UnknownIncident,
    other_layer_fixes,
    resolution_gaps,
    utc_now,
)

DETECTED = datetime(2026, 11, 26, 1, 52, tzinfo=UTC)
WORKERS = 8


def _book(root: Path) -> IncidentBook:
    return IncidentBook(root / "incidents", root / ".reinstate" / "locks")


def _open(book: IncidentBook, summary: str = "Refunded $1,250 on an $84.99 order") -> Incident:
    return book.open(agent="refund-agent", summary=summary, severity="sev2",
                     detected_at=DETECTED, actor="oncall")


def _open_in_child(root: str, barrier: Any, results: Any) -> None:
    """Child process: wait for every sibling, then open one incident and report its id."""
    barrier.wait(timeout=60)
    incident = _open(_book(Path(root)), summary="opened concurrently")
    results.put(incident.id)


def _capture_event_in_child(root: str, actor: str, barrier: Any, done: Any) -> None:
    """Child process: wait for every sibling, then append one history event under the lock."""
    barrier.wait(timeout=60)
    with _book(Path(root)).change("INC-1", action="capture", actor=actor, detail=actor):
        pass
    done.put(actor)


def _in_parallel(target: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target`` in real processes released together; return what each reported."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args))
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args]
    for process in processes:
        process.start()
    try:
        reported = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return reported


def test_open_hands_out_consecutive_ids(tmp_path: Path) -> None:
    """Opening incidents one after another gives INC-1, INC-2, INC-3, each in its own file."""
    book = _book(tmp_path)
    ids = [_open(book).id for _ in range(3)]
    assert ids == ["INC-1", "INC-2", "INC-3"]
    assert book.ids() == ids
    assert sorted(p.name for p in book.directory.iterdir()) == [
        "INC-1.yaml", "INC-2.yaml", "INC-3.yaml"]


def test_open_records_the_opening_in_history(tmp_path: Path) -> None:
    """A new incident is in the detected phase with one 'open' event by its opener."""
    book = _book(tmp_path)
    opened = _open(book)
    loaded = book.load(opened.id)
    assert loaded == opened
    assert loaded.phase == "detected"
    assert [(e.actor, e.action) for e in loaded.history] == [("oncall", "open")]


def test_open_continues_after_the_highest_id(tmp_path: Path) -> None:
    """A new incident takes the number after the highest existing one, in number order."""
    book = _book(tmp_path)
    for _ in range(10):
        _open(book)
    (book.directory / "INC-3.yaml").unlink()
    assert _open(book).id == "INC-11"
    assert book.ids()[-3:] == ["INC-9", "INC-10", "INC-11"]


def test_open_never_gives_out_an_id_again(tmp_path: Path) -> None:
    """The last incident's file deleted, its baseline folder left: the id is not given out
    again, nor one that ``past`` (what the regression cases and the audit log name) covers."""
    book = _book(tmp_path)
    _open(book), _open(book)
    (book.directory / "INC-2.baseline").mkdir()
    (book.directory / "INC-2.yaml").unlink()
    assert _open(book).id == "INC-3"
    (book.directory / "INC-3.yaml").unlink()
    assert book.open(agent="refund-agent", summary="x", severity="sev2", detected_at=DETECTED,
                     actor="oncall", past=7).id == "INC-8"


@pytest.mark.slow
def test_concurrent_openers_get_distinct_ids(tmp_path: Path) -> None:
    """Eight processes opening incidents at once get eight distinct ids and eight files."""
    ids = _in_parallel(_open_in_child, [(str(tmp_path),)] * WORKERS)
    expected = {f"INC-{n}" for n in range(1, WORKERS + 1)}
    assert set(ids) == expected
    book = _book(tmp_path)
    assert set(book.ids()) == expected
    assert sorted(p.name for p in book.directory.iterdir()) == sorted(
        f"{i}.yaml" for i in expected)
    assert all(book.load(i).summary == "opened concurrently" for i in expected)


@pytest.mark.slow
def test_concurrent_changes_lose_no_history(tmp_path: Path) -> None:
    """Six processes changing one incident at once each leave their history event."""
    _open(_book(tmp_path))
    actors = [f"engineer-{n}" for n in range(6)]
    _in_parallel(_capture_event_in_child, [(str(tmp_path), a) for a in actors])
    history = _book(tmp_path).load("INC-1").history
    assert history[0].action == "open"
    assert sorted(e.actor for e in history[1:]) == actors


def test_load_unknown_id_suggests_the_close_one(tmp_path: Path) -> None:
    """Loading a missing id suggests the existing id it most resembles."""
    book = _book(tmp_path)
    for _ in range(2):
        _open(book)
    with pytest.raises(UnknownIncident) as info:
        book.load("INC-20")
    assert "unknown incident 'INC-20'" in str(info.value)
    assert "(did you mean 'INC-2'?)" in str(info.value)
    assert info.value.known == ["INC-1", "INC-2"]


def test_load_with_no_incidents_says_so(tmp_path: Path) -> None:
    """Loading from an empty book says there are no incidents yet."""
    with pytest.raises(UnknownIncident, match="there are no incidents yet"):
        _book(tmp_path).load("INC-1")


@pytest.mark.parametrize("bad", ["../x", "INC-1/../INC-2", "inc-1", "INC-0", "INC-01", "INC-",
                                 "INC-1.yaml", ""])
def test_malformed_id_is_rejected(tmp_path: Path, bad: str) -> None:
    """An id that is not INC-<n> is refused as invalid input before any file is touched."""
    book = _book(tmp_path)
    _open(book)
    with pytest.raises(InvalidInput, match="is not an incident id"):
        book.load(bad)


def test_change_with_malformed_id_touches_no_file(tmp_path: Path) -> None:
    """change() with an id like '../../x' is refused and creates no file anywhere."""
    book = _book(tmp_path)
    _open(book)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(InvalidInput), book.change("../../escaped", action="capture",
                                                  actor="oncall"):
        pass
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before


def _contain(incident: Incident) -> None:
    incident.containment = Containment(
        mode="review", contained_at=utc_now(), contained_by="oncall", notified=["legal"],
        scope="one refund", target_hours=4,
        baseline={"directory": "INC-1.baseline", "files": {}, "fingerprint": {}},  # type: ignore[arg-type]
    )


def test_change_appends_a_utc_history_event(tmp_path: Path) -> None:
    """A change is saved with an appended event naming the actor, action, detail and UTC time."""
    book = _book(tmp_path)
    _open(book)
    before = utc_now()
    with book.change("INC-1", action="contain", actor="alice", detail="mode review") as record:
        _contain(record)
    after = utc_now()
    loaded = book.load("INC-1")
    assert loaded.phase == "contained"
    event = loaded.history[-1]
    assert (event.actor, event.action, event.detail) == ("alice", "contain", "mode review")
    assert event.at.utcoffset() == timedelta(0)
    assert before <= event.at <= after
    assert [e.action for e in loaded.history] == ["open", "contain"]
    raw = yaml.safe_load(book.path("INC-1").read_text(encoding="utf-8"))
    assert raw["history"][-1]["actor"] == "alice"
    assert raw["history"][-1]["at"].endswith(("Z", "+00:00"))


def test_change_writes_nothing_when_the_block_raises(tmp_path: Path) -> None:
    """When the block raises, the incident file is left byte for byte as it was."""
    book = _book(tmp_path)
    _open(book)
    original = book.path("INC-1").read_bytes()
    with pytest.raises(RuntimeError, match="changed my mind"), book.change(
            "INC-1", action="contain", actor="alice") as record:
        _contain(record)
        raise RuntimeError("changed my mind")
    assert book.path("INC-1").read_bytes() == original
    assert sorted(p.name for p in book.directory.iterdir()) == ["INC-1.yaml"]


def test_change_refuses_an_illegal_action(tmp_path: Path) -> None:
    """An action the lifecycle forbids in the current phase raises and writes nothing."""
    book = _book(tmp_path)
    _open(book)
    original = book.path("INC-1").read_bytes()
    with pytest.raises(IllegalTransition, match="Can't restore INC-1 when in detected"), \
            book.change("INC-1", action="restore", actor="alice"):
        pass
    assert book.path("INC-1").read_bytes() == original


def test_change_refuses_a_dangling_reference(tmp_path: Path) -> None:
    """A change that leaves a control change addressing a missing finding is refused, unwritten."""
    book = _book(tmp_path)
    _open(book)
    with book.change("INC-1", action="contain", actor="alice") as record:
        _contain(record)
    with book.change("INC-1", action="finding", actor="alice") as record:
        record.findings = [Finding(id="F-1", layer="review_gate", gap=True,
                                   description="no review of refunds")]
    original = book.path("INC-1").read_bytes()
    with pytest.raises(InvalidInput) as info, book.change("INC-1", action="change",
                                                          actor="alice") as record:
        record.control_changes = [ControlChange(id="CC-1", layer="review_gate",
                                                addresses=["F-7"], description="x")]
    assert info.value.place == "$.control_changes[0].addresses[0]"
    assert "no finding 'F-7' (findings: F-1)" in info.value.expected
    assert book.path("INC-1").read_bytes() == original


HAND_EDITED = """\
schema_version: 1
id: INC-1
agent: refund-agent
summary: Refunded $1,250 on an $84.99 order
severity: sev2
detected_at: 2026-11-26T01:52:00Z
opened_by: oncall
findings:
  - id: F-1
    layer: tool_permission_boundary
    gap: true
    description: issue_refund accepted any amount
control_changes:
  - id: CC-1
    layer: tool_permission_boundary
    addresses:
      - F-1
      - F-2
    description: cap refunds at $500
"""


def test_hand_edited_dangling_reference_names_path_and_line(tmp_path: Path) -> None:
    """A hand-edited change addressing a missing finding is reported at its path and line."""
    book = _book(tmp_path)
    book.directory.mkdir(parents=True)
    book.path("INC-1").write_text(HAND_EDITED.replace("      - F-1\n", ""), encoding="utf-8")
    text = book.path("INC-1").read_text(encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        book.load("INC-1")
    assert info.value.path == book.path("INC-1")
    assert info.value.place == "$.control_changes[0].addresses[0]"
    assert info.value.line == text.splitlines().index("      - F-2") + 1
    assert "no finding 'F-2'" in info.value.expected


def test_hand_edited_second_reference_is_located(tmp_path: Path) -> None:
    """The second, dangling entry of an addresses list is reported at index 1 and its own line."""
    book = _book(tmp_path)
    book.directory.mkdir(parents=True)
    book.path("INC-1").write_text(HAND_EDITED, encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        book.load("INC-1")
    assert info.value.place == "$.control_changes[0].addresses[1]"
    assert info.value.line == HAND_EDITED.splitlines().index("      - F-2") + 1


def test_hand_edited_id_must_match_file_name(tmp_path: Path) -> None:
    """A file whose id differs from its name is refused at $.id on the id's line."""
    book = _book(tmp_path)
    book.directory.mkdir(parents=True)
    book.path("INC-2").write_text(HAND_EDITED.replace("      - F-2\n", ""), encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        book.load("INC-2")
    assert (info.value.place, info.value.line) == ("$.id", 2)


def test_hand_edited_naive_time_is_refused(tmp_path: Path) -> None:
    """A detection time without a timezone is refused with its place and line."""
    book = _book(tmp_path)
    book.directory.mkdir(parents=True)
    text = HAND_EDITED.replace("      - F-2\n", "").replace("01:52:00Z", "01:52:00")
    book.path("INC-1").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        book.load("INC-1")
    assert info.value.place == "$.detected_at"
    assert info.value.line == text.splitlines().index("detected_at: 2026-11-26T01:52:00") + 1


def _incident(**fields: Any) -> Incident:
    base: dict[str, Any] = {
        "id": "INC-4", "agent": "refund-agent", "summary": "over-refund", "severity": "sev2",
        "detected_at": DETECTED, "opened_by": "oncall",
        "containment": {
            "mode": "review", "contained_at": DETECTED + timedelta(hours=1),
            "contained_by": "oncall", "notified": ["legal"], "scope": "one refund",
            "target_hours": 4,
            "baseline": {"directory": "INC-4.baseline", "files": {}, "fingerprint": {}},
        },
    }
    return Incident.model_validate({**base, **fields})


def _findings(gaps: dict[str, bool]) -> list[dict[str, Any]]:
    return [{"id": f"F-{n}", "layer": layer, "gap": gap, "description": f"{layer} finding"}
            for n, (layer, gap) in enumerate(gaps.items(), start=1)]


ALL_GAPS = _findings(dict.fromkeys(LAYERS, True))
FIXES = [{"id": f"CC-{n}", "layer": layer, "addresses": [f"F-{n}"], "description": "fix"}
         for n, layer in enumerate(LAYERS, start=1)]


def test_resolution_gaps_uncontained() -> None:
    """An incident that was never contained has exactly that one gap."""
    assert resolution_gaps(_incident(containment=None)) == [
        "INC-4 was never contained: contain it first"]


def test_resolution_gaps_lists_missing_layers_and_changes() -> None:
    """A contained incident without findings lacks a finding per layer and a change."""
    gaps = resolution_gaps(_incident())
    for layer in LAYERS:
        assert f"INC-4 has no root-cause finding for the {layer} layer" in gaps
    assert "INC-4 has no control change recorded" in gaps
    assert len(gaps) == len(LAYERS) + 1


def test_resolution_gaps_lists_unaddressed_gaps() -> None:
    """A finding with a gap that no change addresses is listed; addressed ones are not."""
    gaps = resolution_gaps(_incident(findings=ALL_GAPS, control_changes=FIXES[:2]))
    assert gaps == [
        "INC-4 finding F-3 (acceptance_criteria) has a gap that no control change addresses",
        "INC-4 finding F-4 (review_gate) has a gap that no control change addresses",
    ]


def test_resolution_gaps_empty_when_resolved() -> None:
    """Findings on every layer, each gap addressed by a change: nothing stands in the way."""
    assert resolution_gaps(_incident(findings=ALL_GAPS, control_changes=FIXES)) == []


def test_prompt_only_resolution_with_control_gaps_is_refused() -> None:
    """Prompt changes alone do not resolve findings that record control-layer gaps."""
    findings = _findings({"tool_permission_boundary": True, "eval_coverage": False,
                          "acceptance_criteria": False, "review_gate": False})
    prompt = [{"id": "CC-1", "layer": "prompt", "addresses": ["F-1"], "description": "v1.5"}]
    gaps = resolution_gaps(_incident(findings=findings, control_changes=prompt))
    assert gaps == [
        "INC-4 is resolved only by prompt changes, but findings F-1 record control-layer gaps"]


def test_prompt_only_resolution_needs_a_reason_without_gaps() -> None:
    """Prompt changes alone with no gap need no_control_gap_reason, and pass once it is given."""
    findings = _findings(dict.fromkeys(LAYERS, False))
    prompt = [{"id": "CC-1", "layer": "prompt", "addresses": [], "description": "v1.5"}]
    gaps = resolution_gaps(_incident(findings=findings, control_changes=prompt))
    assert len(gaps) == 1 and "no_control_gap_reason" in gaps[0]
    explained = _incident(findings=findings, control_changes=prompt,
                          no_control_gap_reason="the model misread a clear policy")
    assert resolution_gaps(explained) == []


def test_prompt_change_alongside_control_changes_is_fine() -> None:
    """A prompt change next to control changes is not a prompt-only resolution."""
    prompt = {"id": "CC-5", "layer": "prompt", "addresses": [], "description": "v1.5"}
    assert resolution_gaps(_incident(findings=ALL_GAPS, control_changes=[*FIXES, prompt])) == []


def test_a_control_gap_addressed_only_by_a_prompt_change_stays_open() -> None:
    """A prompt change beside control changes does not address a control-layer gap: F-1's
    permission-boundary gap, named only by the prompt change, is still a gap."""
    prompt = {"id": "CC-5", "layer": "prompt", "addresses": ["F-1"], "description": "v1.5"}
    gaps = resolution_gaps(_incident(findings=ALL_GAPS, control_changes=[*FIXES[1:], prompt]))
    assert gaps == ["INC-4 finding F-1 (tool_permission_boundary) has a gap that only a prompt "
                    "change addresses: a control-layer gap needs a control change"]


def test_a_gap_addressed_only_on_another_layer_is_a_warning_not_a_gap() -> None:
    """F-1's permission-boundary gap addressed by a review-gate change (a compensating
    control) is addressed: no gap, but a warning naming the layer left as it was. Once a
    permission change addresses it too, or for a change on its own layer, no warning."""
    review = {"id": "CC-1", "layer": "review_gate", "addresses": ["F-1"],
              "description": "every refund to a person"}
    elsewhere = _incident(findings=ALL_GAPS, control_changes=[review, *FIXES[1:]])
    assert resolution_gaps(elsewhere) == []
    assert other_layer_fixes(elsewhere) == [
        "INC-4 finding F-1 (tool_permission_boundary) is addressed only by a change on "
        "review_gate: the tool_permission_boundary layer the root cause names is left as it was"]
    both = _incident(findings=ALL_GAPS, control_changes=[review, *FIXES])
    assert other_layer_fixes(both) == []
    assert other_layer_fixes(_incident(findings=ALL_GAPS, control_changes=FIXES)) == []


@pytest.mark.parametrize(("fields", "place"), [
    ({"detected_at": DETECTED + timedelta(hours=2)}, "$.containment.contained_at"),
    ({"restored_at": DETECTED + timedelta(minutes=30)}, "$.restored_at"),
    ({"restored_at": DETECTED + timedelta(hours=3), "closed_at": DETECTED + timedelta(hours=2)},
     "$.closed_at"),
])
def test_times_out_of_order_are_refused(fields: dict[str, Any], place: str) -> None:
    """Detection after containment (a negative time to contain, read as within any
    target), a restore before containment and a closing before the restore are named."""
    problems = _incident(**fields).reference_problems()
    assert [(json_path(loc), "expected a time no earlier than" in why)
            for loc, why in problems] == [(place, True)]
