"""Which recorded runs (or steps) were harmful and which were good: labels for a backtest.

Labels come from a file a person writes (JSONL, CSV or YAML: a run id, optionally a step,
``harmful`` or ``good``, a note), from an incident (its scope of impact is harmful), or
both. Every record is checked against one JSON Schema, and a bad one names the file and
its line. A light first pass over the logs (:func:`scan`) then checks that each label names
a run there, and a step of it that acts, before anything is decided. An incident's label
names a step by its place in the run as captured, so it also says what step that is: a
run read with a part in another log (or another run with its id) numbers its steps
otherwise, and the label must not land on a different call.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator

from evalsuite import (
    InvalidInput,
    LogFormat,
    Output,
    Redactor,
    RunPart,
    Step,
    ToolCall,
    json_path,
    line_of,
    load_json,
    parse_yaml,
    read_logs,
    read_text,
    schema_validator,
)
from gates._backtest.model import LabelKind
from gates._config import Workspace
from gates._response.investigation import acceptance_criteria, incident_cases
from regressions import Incident, RegressionCase, ScopeSearch, exact_arguments

LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["run_id", "label"],
    "additionalProperties": False,
    "properties": {
        "run_id": {"type": "string", "minLength": 1},
        "step": {"type": ["integer", "null"], "minimum": 0},
        "label": {"enum": ["harmful", "good"]},
        "note": {"type": "string"},
    },
}
_VALIDATOR = Draft202012Validator(LABEL_SCHEMA)
CSV_COLUMNS = ("run_id", "step", "label", "note")
# A record as read: its value, its line, and its place in the document (YAML).
_Record = tuple[Any, int | None, list[str | int]]


@dataclass(frozen=True)
class BacktestLabel:
    """One labelled run, or one step of it."""

    run_id: str
    step: int | None
    label: LabelKind
    source: str
    note: str = ""
    expect: str | None = None
    """What the labelled step must be, as a JSON Schema (JSON text: a label stays hashable)
    over its :func:`step_facts`; set for a step a regression case recorded."""
    expected: str = ""
    """That step in words, for the error when the step read is another."""


def step_facts(step: Step) -> dict[str, Any]:
    """What a label's ``expect`` is checked against: a call's tool and arguments, an
    output's text."""
    if isinstance(step, ToolCall):
        return {"kind": step.kind, "tool": step.tool, "arguments": step.arguments}
    if isinstance(step, Output):
        return {"kind": step.kind, "content": step.content}
    return {"kind": step.kind}


def _described(step: Step) -> str:
    return step.describe() if isinstance(step, ToolCall) else f"a {step.kind}"


def _captured(case: RegressionCase, index: int, source: str) -> BacktestLabel:
    """A captured harmful step as a label that knows the step it names: its tool and
    arguments, or its text, each placeholder of a redacted case matching any value of
    its kind (the logs hold the raw values)."""
    step = case.recorded.steps[index]
    facts = Redactor().value(step_facts(step))
    return BacktestLabel(run_id=case.provenance.run_id, step=index, label="harmful",
                         source=source, note=f"captured in {case.id}",
                         expect=json.dumps(exact_arguments(facts)),
                         expected=_described(step))


def read_labels(path: Path) -> list[BacktestLabel]:
    """Every label in a JSONL, CSV or YAML file (by its suffix), each record validated.

    Raises:
        InvalidInput: the file cannot be read, or a record is not a label (the message
            names the file, the line and what was expected).
    """
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        records = _jsonl(text, path)
    elif suffix == ".csv":
        records = _csv(text, path)
    elif suffix in (".yaml", ".yml"):
        records = _yaml(text, path)
    else:
        raise InvalidInput(path, "", "expected a labels file ending in .jsonl, .csv or .yaml")
    labels = [_label(record, path, line, loc) for record, line, loc in records]
    seen: dict[tuple[str, int | None], BacktestLabel] = {}
    for label in labels:
        key = (label.run_id, label.step)
        other = seen.setdefault(key, label)
        if other.label != label.label:
            raise InvalidInput(path, "", f"{label.source} labels {_named(label)} {label.label}, "
                                         f"but {other.source} labels it {other.label}")
    return labels


def _named(label: BacktestLabel) -> str:
    return label.run_id + (f" step {label.step}" if label.step is not None else "")


def _label(record: Any, path: Path, line: int | None, loc: list[str | int]) -> BacktestLabel:
    error = next(iter(_VALIDATOR.iter_errors(record)), None)
    if error is not None:
        where = json_path([*loc, *error.absolute_path])
        raise InvalidInput(path, where, f"expected a label (run_id, optional step, "
                                        f"harmful|good, optional note): {error.message}",
                           line=line)
    return BacktestLabel(run_id=record["run_id"], step=record.get("step"), label=record["label"],
                 note=record.get("note", ""), source=f"{path.name}:{line}")


def _jsonl(text: str, path: Path) -> Iterator[_Record]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = load_json(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(path, "", f"expected one JSON object per line ({exc.msg})",
                               line=number) from None
        yield record, number, []


def _csv(text: str, path: Path) -> Iterator[_Record]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        yield from _rows(reader, path)
    except csv.Error as exc:
        raise InvalidInput(path, "", f"expected CSV ({exc})", line=reader.line_num) from None


def _rows(reader: csv.DictReader[str], path: Path) -> Iterator[_Record]:
    columns = reader.fieldnames or []
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown or "run_id" not in columns or "label" not in columns:
        raise InvalidInput(path, "", f"expected a header row of {', '.join(CSV_COLUMNS)} "
                                     f"(step and note optional), got {', '.join(columns)}",
                           line=1)
    for row in reader:
        record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v}
        if None in row:
            raise InvalidInput(path, "", "expected no more cells than the header names",
                               line=reader.line_num)
        step = record.get("step")
        if step is not None:
            # ASCII digits only: str.isdigit() also takes "³", which int() refuses.
            digits = step.strip()
            record["step"] = int(digits) if digits.isascii() and digits.isdigit() else step
        yield record, reader.line_num, []


def _yaml(text: str, path: Path) -> Iterator[_Record]:
    document = parse_yaml(text, path)
    prefix: list[str | int] = []
    if isinstance(document, dict) and set(document) == {"labels"}:
        document, prefix = document["labels"], ["labels"]
    if not isinstance(document, list):
        raise InvalidInput(path, "$", "expected a list of labels (or labels: [...])", line=1)
    for index, record in enumerate(document):
        loc = [*prefix, index]
        yield record, line_of(text, loc), loc


def incident_labels(workspace: Workspace, incident: Incident, logs: Iterable[Path],
                    fmt: LogFormat | Literal["auto"] = "auto") -> list[BacktestLabel]:
    """The incident's harm as labels: each captured harmful step, and its scope of impact.

    The scope is every step the recorded signature matches in ``logs``, each labelled
    itself: found again, not taken from the list ``investigate`` wrote, which lists only
    the first runs and is a hand edit away from leaving one out. A run labelled whole is
    stopped by any of its steps, so a matching call far into a run would pass as stopped
    when an earlier, unrelated call was denied or sent to a person. Only an own run of
    the incident with no matching step in ``logs`` is labelled whole (its captured steps
    are labelled too).

    Raises:
        InvalidInput: ``logs`` hold less of the scope than the investigation recorded
            (fewer matching calls, outputs or runs, or a listed run without a matching
            step): the harm left out would be counted as nothing, or its run as stopped
            by any other step.
    """
    source = incident.id
    labels = [_captured(case, index, source)
              for case in incident_cases(workspace, incident) for index in case.recorded.harmful]
    investigation = incident.investigation
    if investigation is not None:
        search = ScopeSearch(investigation.signature,
                             acceptance_criteria(workspace, incident.agent))
        taken = {(label.run_id, label.step) for label in labels}
        counted: dict[str, int] = {}  # steps read so far per run: the backtest's numbering
        found: Counter[str] = Counter()  # matching steps by kind
        in_scope: dict[str, None] = {}
        for part in read_logs(logs, fmt, agent=incident.agent):
            start = counted.get(part.run_id, 0)
            counted[part.run_id] = start + len(part.steps)
            for index, step in enumerate(part.steps):
                if not search.matches(step):
                    continue
                found[step.kind] += 1
                in_scope[part.run_id] = None
                if (part.run_id, start + index) not in taken:
                    taken.add((part.run_id, start + index))
                    labels.append(BacktestLabel(
                        run_id=part.run_id, step=start + index, label="harmful", source=source,
                        note=f"matches the signature of {incident.id} (scope of impact)"))
        _whole_scope(workspace, incident, logs, found, in_scope)
        matched = {label.run_id for label in labels}
        labels += [BacktestLabel(run_id=run_id, step=None, label="harmful", source=source,
                                 note=f"a run of {incident.id}")
                   for run_id in dict.fromkeys(investigation.runs) if run_id not in matched]
    if not labels:
        raise InvalidInput(None, "--incident", f"{incident.id} records no harm to label: "
                                               f"capture its run or investigate it first")
    return labels


def _whole_scope(workspace: Workspace, incident: Incident, logs: Iterable[Path],
                 found: Counter[str], in_scope: dict[str, None]) -> None:
    """The logs read hold no less of the scope of impact than ``investigate`` recorded.

    A run split across logs (a rotated one) left out, or the runs past the listed ones
    in a log not given, would leave harm unlabelled, so counted as nothing; a listed run
    whose matching step is in the log left out would be labelled whole and stopped by
    any other step. More is fine: newer logs hold more of the same harm.
    """
    assert incident.investigation is not None
    recorded = incident.investigation.scope
    missing = [run.run_id for run in recorded.runs if run.run_id not in in_scope]
    if (found["tool_call"] >= recorded.calls_matched
            and found["output"] >= recorded.outputs_matched
            and len(in_scope) >= recorded.runs_matched and not missing):
        return
    left_out = f" (none of {', '.join(missing[:3])})" if missing else ""
    given = ", ".join(workspace.relative(path) for path in logs)
    investigated = ", ".join(log.path for log in incident.investigation.logs)
    raise InvalidInput(
        workspace.relative(workspace.incidents().path(incident.id)), "investigation.scope",
        f"the logs read ({given}) hold {found['tool_call']} call(s) and {found['output']} "
        f"output(s) in {len(in_scope)} run(s) matching investigation.signature{left_out}, "
        f"not the {recorded.calls_matched} call(s) and {recorded.outputs_matched} output(s) "
        f"in {recorded.runs_matched} run(s) of the scope of impact on record, so harm "
        f"{incident.id} records would go unlabelled: backtest the logs it was investigated "
        f"over ({investigated}), or investigate it again")


@dataclass
class Scan:
    """What a first, light pass over the logs learns: each run's last part and length."""

    last_part: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    labelled: dict[tuple[str, int], tuple[dict[str, Any], str]] = field(default_factory=dict)
    """Each labelled step as read: its :func:`step_facts` and the step in words (plain
    data: a Ray task sends it back pickled, and a reader's light step is not picklable)."""


def scan(parts: Iterable[RunPart], labels: Sequence[BacktestLabel] = ()) -> Scan:
    """Each run's last part number and step count, so a run's state is dropped as soon as
    it ends and a label can be checked before anything is decided."""
    found = Scan()
    places = {(label.run_id, label.step) for label in labels if label.step is not None}
    wanted = {run_id for run_id, _ in places}
    for number, part in enumerate(parts):
        run_id = part.run_id
        found.last_part[run_id] = number
        before = found.steps.get(run_id, 0)
        found.steps[run_id] = before + len(part.steps)
        if run_id in wanted:
            for index, step in enumerate(part.steps):
                if (run_id, before + index) in places:
                    found.labelled[(run_id, before + index)] = (step_facts(step),
                                                                _described(step))
    return found


def check_labels(labels: Sequence[BacktestLabel], found: Scan) -> None:
    """Every label names a run in the logs and, if it names a step, one the run has.

    Raises:
        InvalidInput: the first label that does not.
    """
    for label in labels:
        steps = found.steps.get(label.run_id)
        if steps is None:
            raise InvalidInput(None, label.source, f"run '{label.run_id}' is in none of the "
                                                   f"logs read")
        if label.step is not None and label.step >= steps:
            raise InvalidInput(None, label.source, f"run '{label.run_id}' has {steps} steps "
                                                   f"(0 to {steps - 1}), not step {label.step}")
        seen = found.labelled.get((label.run_id, label.step)) \
            if label.step is not None else None
        if seen is None:
            continue
        facts, read = seen
        if facts["kind"] not in ("tool_call", "output"):
            raise InvalidInput(None, label.source, f"step {label.step} of '{label.run_id}' is "
                                                   f"a {facts['kind']}: expected a tool call "
                                                   f"or an output, the steps that take effect")
        if label.expect is not None and not schema_validator(
                json.loads(label.expect)).is_valid(facts):
            raise InvalidInput(None, label.source, (
                f"step {label.step} of '{label.run_id}' in the logs read is {read}, not the "
                f"step {label.note} ({label.expected}): the run is numbered otherwise there "
                f"(a part of it in another log, or another run with its id), so the label "
                f"would judge another step; backtest the log it was captured from"))
