"""Reading user files into models, and writing files so that nothing is half-written.

Every user file is YAML (JSON is YAML too). A mistake is reported as one
:class:`InvalidInput` naming the file, the JSON path, the line and what was expected.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from evalsuite._errors import InvalidInput, did_you_mean

M = TypeVar("M", bound=BaseModel)


def json_path(loc: Sequence[int | str]) -> str:
    """Render a pydantic location tuple as a JSON path: ``$.tools[0].tool``."""
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def read_text(path: Path) -> str:
    """Read a user file, turning an unreadable one into a clear error."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(path, "", f"cannot read the file ({exc})") from None


def parse_yaml(text: str, path: Path) -> Any:
    """Parse YAML safely (no tags that build Python objects)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # A reader error (a control character) has no ``problem``, and its text spans lines.
        problem = (getattr(exc, "problem", None) or str(exc)).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        raise InvalidInput(path, "", f"malformed YAML: {problem}", line=line) from None


def line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """Find the line of the node at ``loc`` in a YAML text, or of its nearest parent."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = value
                    break
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(node.value)):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def validation_error(
    exc: ValidationError, model: type[BaseModel], path: Path, text: str | None,
    data: Any = None,
) -> InvalidInput:
    """Turn pydantic's report into one line about the first mistake.

    ``data`` is what was validated; with it, the tags pydantic adds for tagged unions
    (``$.expect[0].tool_called.tool``) are dropped so the path is the file's own.
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = strip_tags([p for p in first["loc"] if isinstance(p, int | str)], data)
    message = first["msg"]
    if first["type"] == "extra_forbidden" and loc:
        owner = model_at(model, loc[:-1], data)
        message = f"unknown field '{loc[-1]}'" + did_you_mean(
            str(loc[-1]), list(owner.model_fields) if owner else []
        )
    elif first["type"] == "missing":
        message = f"required field '{loc[-1]}' is missing" if loc else "required field missing"
    elif "input" in first and first["type"] not in ("value_error", "assertion_error"):
        message = f"{message}, got {_show(first['input'])}"
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    line = line_of(text, loc) if text is not None else None
    return InvalidInput(path, json_path(loc), f"{message}{more}", line=line)


def strip_tags(loc: Sequence[int | str], data: Any) -> list[int | str]:
    """Drop the union tags pydantic inserts into a location, following the data."""
    clean: list[int | str] = []
    value = data
    for part in loc:
        if isinstance(value, dict) and part not in value and value.get("kind") == part:
            continue
        clean.append(part)
        value = _child(value, part)
    return clean


def _child(value: Any, part: int | str) -> Any:
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None


def model_at(model: type[BaseModel], loc: Sequence[int | str], data: Any) -> Any:
    """The model class of the object at ``loc`` in ``data``, picking union members by kind."""
    annotation: Any = model
    value = data
    for part in loc:
        current = _resolve(annotation, value)
        if isinstance(part, str) and current is not None and part in current.model_fields:
            annotation = current.model_fields[part].annotation
        else:  # a list index or a mapping key: step into the element type
            annotation = _element(annotation)
        value = _child(value, part)
    return _resolve(annotation, value)


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _element(annotation: Any) -> Any:
    annotation = _unwrap(annotation)
    for arg in get_args(annotation) or ():
        inner = _unwrap(arg)
        if get_origin(inner) in (list, dict):
            annotation = inner
            break
    if get_origin(annotation) in (list, dict):
        return get_args(annotation)[-1]
    return None


def _resolve(annotation: Any, value: Any) -> Any:
    candidates = _models_in(annotation)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    kind = value.get("kind") if isinstance(value, dict) else None
    for candidate in candidates:
        field = candidate.model_fields.get("kind")
        if field is not None and kind in get_args(field.annotation):
            return candidate
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (list, dict):
        return []
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += _models_in(arg)
    return found


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_model(model: type[M], data: Any, path: Path, text: str | None = None) -> M:
    """Validate already-parsed data as ``model``; errors name the file and place."""
    if not isinstance(data, dict):
        kind = "empty file" if data is None else type(data).__name__
        raise InvalidInput(path, "$", f"expected a mapping of fields, got {kind}", line=1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model, path, text, data) from None


def load_model(path: Path, model: type[M]) -> M:
    """Read a YAML file and validate it as ``model``."""
    text = read_text(path)
    return parse_model(model, parse_yaml(text, path), path, text)


def dump_yaml(record: BaseModel) -> str:
    """Serialise a model as YAML, fields in declared order (``schema_version`` first)."""
    data = record.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new, never half.

    Temporary file in the same directory, fsync, rename, fsync of the directory.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, text)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_atomic_lines(path: Path, lines: Iterable[str]) -> int:
    """Like :func:`write_atomic`, for output too large to hold: streams ``lines`` to a
    temporary file and renames it over ``path`` only when every line was written.

    Returns how many lines were written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line)
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return count


def create_exclusive(path: Path, text: str) -> bool:
    """Write a new file atomically, only if ``path`` does not exist yet.

    Returns False when another writer got there first; used to hand out unique ids
    (``INC-7``) to concurrent writers without a lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _write_temp(path: Path, text: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
