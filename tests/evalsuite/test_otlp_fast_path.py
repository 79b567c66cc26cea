"""The OTLP/JSON fast path: export lines read without the pydantic check, into the same runs,
and every line it does not decide read, accepted or refused exactly as the pydantic path does."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evalsuite._otel
import evalsuite._otel_spans
from evalsuite import InvalidInput, RunPart, read_log, read_logs
from gates import ingest
from tests.conftest import built_once
from tests.evalsuite.test_otlp_deferred import DATA, _sdk_exports
from tests.otel_producers import produce

TRACE, ROOT, CHILD = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173"


class _NoCheck:
    """Stands in for the pydantic check of an export line: fails the test if it is asked."""

    def validate_json(self, raw: object) -> None:
        raise AssertionError("the pydantic check read a line the fast path should have read")


def _parts(path: Path, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[RunPart] | str:
    """The parts of ``path`` as read with or without the fast path, or the error's line."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(evalsuite._otel, "fast_spans", lambda raw, place: None)
        try:
            return list(read_log(path, "otel"))
        except InvalidInput as exc:
            return str(exc)


@pytest.fixture(scope="module")
def sdk_spans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the real OpenTelemetry SDK and the openai-v2 instrumentation write for a tool
    call with an agent span, in span_only mode."""
    root = built_once(tmp_path_factory, "otlp-fast-path",
                      lambda root: produce(root, mode="span_only", agent_span=True,
                                           tool_span=True))
    return root / "spans.jsonl"


@pytest.mark.slow
def test_sdk_export_lines_are_read_without_the_pydantic_check(
        sdk_spans: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines the OpenTelemetry SDK writes are read by the fast path alone, into the same
    parts the pydantic path reads, and ingest counts them the same."""
    slow = _parts(sdk_spans, fast=False, monkeypatch=monkeypatch)
    counted = ingest([sdk_spans]).files[0].understood()
    monkeypatch.setattr(evalsuite._otel_spans, "_EXPORT", _NoCheck())
    fast = _parts(sdk_spans, fast=True, monkeypatch=monkeypatch)
    assert isinstance(fast, list) and fast and fast == slow
    assert ingest([sdk_spans]).files[0].understood() == counted


@pytest.fixture(scope="module")
def instrumented(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Every export the real SDK and instrumentations write (each content mode, streamed,
    failed, with agent and tool spans; OpenInference and OpenLLMetry, with and without
    tool spans), each as ingest is given it: a spans file with its logs file when content
    went to log events; and the OTLP/JSON log kept under tests/data."""
    root = built_once(tmp_path_factory, "otlp-deferred", _sdk_exports)
    groups = [[DATA / "refund-agent.otlp.jsonl"]]
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        logs = folder / "logs.jsonl"
        groups.append([folder / "spans.jsonl",
                       *([logs] if logs.exists() and logs.stat().st_size else [])])
    return groups + [[p] for p in sorted(root.glob("*.jsonl"))]


@pytest.mark.slow
def test_every_instrumentation_export_is_read_the_same_fast_or_checked(
        instrumented: list[list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    """For every export real instrumentations write, the fast path's parts (headers, steps,
    places, notes), read whole or with deferred steps, and ingest's summary of them are
    those of the pydantic path."""

    def read(paths: list[Path], *, fast: bool) -> tuple[list[RunPart], list[RunPart], Any]:
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(evalsuite._otel, "fast_spans", lambda raw, place: None)
            done = ingest(paths)
            return (list(read_logs(paths)), list(read_logs(paths, defer_steps=True)),
                    ([f.understood() for f in done.files], done.warnings,
                     [(f.first_at, f.last_at) for f in done.files]))

    for paths in instrumented:
        whole, deferred, summary = read(paths, fast=True)
        assert whole and (whole, deferred, summary) == read(paths, fast=False), paths
        assert deferred == whole, paths


def _line(path: Path, span: dict[str, Any], **request: Any) -> Path:
    body = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "refund-agent"}}]},
        "scopeSpans": [{"spans": [span]}]}], **request}
    path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    return path


def _span(**fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE, "spanId": ROOT, "name": "invoke_agent refund-agent",
            "startTimeUnixNano": "1795000000000000000",
            "endTimeUnixNano": "1795000001000000000", "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}},
                {"key": "gen_ai.conversation.id", "value": {"stringValue": "conv-1"}}]}
    span.update(fields)
    return span


@pytest.mark.parametrize(("fields", "place"), [
    ({"startTimeUnixNano": "1e3"}, "startTimeUnixNano"),
    ({"spanId": "not-an-id"}, "spanId"),
    ({"status": {"code": None}}, "status.code"),
    ({"attributes": [{"key": "n", "value": {"intValue": "12.5"}}]}, "intValue"),
])
def test_lines_the_pydantic_check_refuses_are_refused_with_its_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any],
        place: str) -> None:
    """A line the fast path leaves to the pydantic check fails there, with the file, the
    line and the place in it, as it always did."""
    path = _line(tmp_path / "spans.jsonl", _span(**fields))
    error = _parts(path, fast=True, monkeypatch=monkeypatch)
    assert isinstance(error, str) and "spans.jsonl" in error and place in error, error
    assert error == _parts(path, fast=False, monkeypatch=monkeypatch)


INTS = st.one_of(st.integers(-5, 1 << 62), st.integers(0, 1 << 62).map(str),
                 st.sampled_from(["-0", "+5", " 7 ", "007", "1_000", "1e3", "12.0", "12.5",
                                  "0x10", "１２", "", "-", 3.0, True, None,
                                  "99999999999999999999999"]))
IDS = st.one_of(
    st.binary(min_size=8, max_size=8).map(bytes.hex),
    st.binary(min_size=8, max_size=8).map(lambda b: b.hex().upper()),
    st.binary(min_size=8, max_size=8).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["", "xyz", "ab cd ef 01 23 4", 7, None]))
VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.builds(lambda v: {"stringValue": v}, st.one_of(st.text(max_size=5), st.none(),
                                                          st.integers(0, 3))),
        st.builds(lambda v: {"intValue": v}, INTS),
        st.builds(lambda v: {"doubleValue": v}, st.sampled_from(
            [1.5, 2, "1.5", "NaN", None, True])),
        st.builds(lambda v: {"boolValue": v}, st.sampled_from(
            [True, False, 1, "true", "no", None])),
        st.builds(lambda v: {"bytesValue": v}, st.sampled_from(["AAE=", 5])),
        st.just({}), st.just({"stringValue": "a", "intValue": 1})),
    lambda inner: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=2)),
        st.builds(lambda vs: {"kvlistValue": {"values": [
            {"key": f"k{i}", "value": v} for i, v in enumerate(vs)]}},
            st.lists(inner, max_size=2))),
    max_leaves=4)
ATTRIBUTES = st.lists(st.builds(lambda k, v: {"key": k, "value": v},
                                st.sampled_from(["gen_ai.operation.name", "gen_ai.tool.name",
                                                 "gen_ai.usage.input_tokens", "x"]), VALUES),
                      max_size=3)
SPANS = st.fixed_dictionaries(
    {"traceId": st.one_of(st.just(TRACE), st.just(TRACE.upper()),
                          st.just(base64.b64encode(bytes.fromhex(TRACE)).decode()),
                          st.sampled_from(["", 5])),
     "spanId": IDS, "name": st.sampled_from(["chat gpt-4o", "execute_tool lookup"]),
     "startTimeUnixNano": INTS},
    optional={"parentSpanId": st.one_of(IDS, st.just(ROOT)), "endTimeUnixNano": INTS,
              "attributes": ATTRIBUTES,
              "events": st.lists(st.fixed_dictionaries(
                  {"name": st.sampled_from(["gen_ai.content.prompt", "exception"])},
                  optional={"timeUnixNano": INTS, "attributes": ATTRIBUTES}), max_size=2),
              "status": st.fixed_dictionaries({}, optional={
                  "code": st.sampled_from([0, 2, "2", "STATUS_CODE_ERROR", 2.0, None]),
                  "message": st.sampled_from(["boom", "", None])}),
              "droppedAttributesCount": st.integers(0, 3)})


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spans=st.lists(SPANS, min_size=1, max_size=3),
       logs=st.sampled_from([{}, {"resourceLogs": []}, {"resourceLogs": 5}]))
def test_any_export_line_is_decided_as_the_pydantic_path_decides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spans: list[dict[str, Any]],
        logs: dict[str, Any]) -> None:
    """Any export line, lax or wrong, reads into the same parts with the fast path as
    without it, or fails with the same error."""
    path = tmp_path / "spans.jsonl"
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}], **logs}
    path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    assert (_parts(path, fast=True, monkeypatch=monkeypatch)
            == _parts(path, fast=False, monkeypatch=monkeypatch))
