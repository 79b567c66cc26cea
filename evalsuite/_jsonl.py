"""The native JSONL run format: one JSON object a line.

A line is either a run header (``{"kind": "run", "run_id": …}``) or a step that names
its run (``{"run_id": …, "kind": "tool_call", …}``). A file may hold many runs, and
their lines may interleave; runs come back in the order they first appear.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError

from evalsuite._documents import json_path, strip_tags, write_atomic
from evalsuite._errors import InvalidInput
from evalsuite._record import Record
from evalsuite._run import STEP_KINDS, Run, Step

_STEP = TypeAdapter[Step](Step)


class RunHeader(Record):
    """The first line of a run in the native format: what the run is."""

    run_id: str
    agent: str | None = None
    agent_version: str | None = None
    started_at: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)


def read_runs(path: Path) -> list[Run]:
    """Read every run in a native JSONL file."""
    runs: dict[str, dict[str, Any]] = {}
    number = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    _read_line(line, number, path, runs)
    except UnicodeDecodeError as exc:
        raise InvalidInput(path, "", f"not UTF-8 text ({exc.reason})", line=number + 1) from None
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the run log ({exc.strerror})") from None
    if not runs:
        raise InvalidInput(path, "", "no runs in this file: expected JSON lines with a run_id")
    # Every line was validated as it was read, so building the runs cannot fail.
    return [Run.model_construct(**data) for data in runs.values()]


def _read_line(line: str, number: int, path: Path, runs: dict[str, dict[str, Any]]) -> None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(path, "", f"not valid JSON: {exc.msg}", line=number) from None
    if not isinstance(record, dict):
        raise InvalidInput(path, "$", "expected a JSON object on each line", line=number)
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput(path, "$.run_id", "expected the run's id as a string", line=number)
    kind = record.pop("kind", None)
    if kind == "run":
        version = record.pop("schema_version", 1)
        if version != 1:
            raise InvalidInput(
                path, "$.schema_version", f"expected 1, got {version!r}", line=number
            )
        header = _validated(RunHeader, record, path, number, "")
        run = runs.setdefault(run_id, {"run_id": run_id, "steps": []})
        run.update(header.model_dump(exclude_unset=True))
        return
    if kind not in STEP_KINDS:
        raise InvalidInput(
            path, "$.kind", f"expected 'run' or one of {', '.join(STEP_KINDS)}, got {kind!r}",
            line=number,
        )
    record.pop("run_id")
    step = _validated(_STEP, {"kind": kind, **record}, path, number, f" (in a {kind} step)")
    runs.setdefault(run_id, {"run_id": run_id, "steps": []})["steps"].append(step)


def _validated(model: Any, record: dict[str, Any], path: Path, number: int, where: str) -> Any:
    try:
        return model.validate_python(record) if isinstance(model, TypeAdapter) else (
            model.model_validate(record))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = strip_tags([p for p in first["loc"] if isinstance(p, int | str)], record)
        raise InvalidInput(path, json_path(loc), f"{first['msg']}{where}", line=number) from None


def dump_runs(runs: Iterable[Run]) -> str:
    """Render runs in the native JSONL format."""
    lines = []
    for run in runs:
        header = run.model_dump(mode="json", exclude={"steps"}, exclude_none=True)
        header.pop("schema_version")
        lines.append(json.dumps({"schema_version": 1, "kind": "run", **header}))
        for step in run.steps:
            body = step.model_dump(mode="json", exclude_none=True)
            lines.append(json.dumps({"run_id": run.run_id, **body}))
    return "\n".join(lines) + "\n"


def write_runs(runs: Iterable[Run], path: Path) -> None:
    """Write runs to ``path`` atomically in the native JSONL format."""
    write_atomic(path, dump_runs(runs))
