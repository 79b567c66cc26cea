"""The native JSONL run format: one JSON object a line.

A line is either a run header (``{"kind": "run", "run_id": …}``) or a step that names
its run (``{"run_id": …, "kind": "tool_call", …}``). A file may hold many runs, and
their lines may interleave; runs come back in the order they first appear.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from evalsuite._documents import json_path, validation_error, write_atomic
from evalsuite._errors import InvalidInput
from evalsuite._run import STEP_KINDS, Run, Step

_STEP = TypeAdapter[Step](Step)
_HEADER_FIELDS = ("run_id", "agent", "agent_version", "started_at", "context")


def read_runs(path: Path) -> list[Run]:
    """Read every run in a native JSONL file."""
    runs: dict[str, dict[str, Any]] = {}
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the run log ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            _read_line(line, number, path, runs)
    if not runs:
        raise InvalidInput(path, "", "no runs in this file: expected JSON lines with a run_id")
    out = []
    for data in runs.values():
        try:
            out.append(Run.model_validate(data))
        except ValidationError as exc:  # pragma: no cover - lines were validated one by one
            raise validation_error(exc, Run, path, None) from None
    return out


def _read_line(line: str, number: int, path: Path, runs: dict[str, dict[str, Any]]) -> None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(path, "", f"not valid JSON: {exc.msg}", line=number) from None
    if not isinstance(record, dict):
        raise InvalidInput(path, "$", "expected a JSON object on each line", line=number)
    run_id = record.pop("run_id", None)
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput(path, "$.run_id", "expected the run's id as a string", line=number)
    run = runs.setdefault(run_id, {"run_id": run_id, "steps": []})
    kind = record.get("kind")
    if kind == "run":
        record.pop("kind")
        version = record.pop("schema_version", 1)
        if version != 1:
            raise InvalidInput(
                path, "$.schema_version", f"expected 1, got {version!r}", line=number
            )
        unknown = set(record) - set(_HEADER_FIELDS)
        if unknown:
            raise InvalidInput(
                path, f"$.{sorted(unknown)[0]}", "unknown field in a run header", line=number
            )
        run.update(record)
        return
    if kind not in STEP_KINDS:
        raise InvalidInput(
            path, "$.kind", f"expected 'run' or one of {', '.join(STEP_KINDS)}, got {kind!r}",
            line=number,
        )
    try:
        run["steps"].append(_STEP.validate_python(record))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = [p for p in first["loc"] if isinstance(p, int | str)]
        if loc and loc[0] == kind:  # pydantic puts the union's tag first; the file has none
            loc = loc[1:]
        raise InvalidInput(
            path, json_path(loc), f"{first['msg']} (in a {kind} step)", line=number
        ) from None


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
