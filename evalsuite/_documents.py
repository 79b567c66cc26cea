"""Reading user files into models, and writing files so that nothing is half-written.

Every user file is YAML (JSON is YAML too). A mistake is reported as one
:class:`InvalidInput` naming the file, the JSON path, the line and what was expected.

A hostile file is a mistake like any other: reading is bounded in the file's size
(:data:`MAX_USER_FILE_BYTES`), in how much its YAML aliases may expand
(:data:`MAX_ALIAS_EXPANSION`), in the length of its numbers and in its nesting, so no
file can make a command hang, exhaust memory or end in a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, BinaryIO, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from evalsuite._errors import InvalidInput, did_you_mean
from evalsuite._files import read_regular

M = TypeVar("M", bound=BaseModel)

MAX_USER_FILE_BYTES = 4 * 1024 * 1024
"""The largest YAML file reinstate reads: pure-Python YAML parsing reads about a megabyte
a second, so this keeps any one file to seconds. Logs are read as streams and not bounded."""
MAX_ALIAS_EXPANSION = 100_000
"""How many nodes YAML aliases (``*name``) may add to a document when expanded. An alias is
a reference, so a few lines can stand for billions of nodes ("billion laughs")."""
MAX_YAML_DEPTH = 250
"""How deeply a YAML file may nest lists and mappings: deeper than the 200 levels a log
may nest (pydantic's JSON limit), so a case captured from any log reads back."""
MAX_NUMBER_CHARS = 1000
"""The longest integer a YAML file may hold. Python refuses to print integers of more than
4300 digits, and a hexadecimal one of a thousand characters already has 1200."""


def json_path(loc: Sequence[int | str]) -> str:
    """Render a pydantic location tuple as a JSON path: ``$.tools[0].tool``."""
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def refuse_link(path: Path) -> Path:
    """``path``, unless it is a symbolic link, which is refused.

    A link in the workspace could lead a read or a write outside it; every link is
    refused, even one that stays inside, so no command has to decide where one leads.
    """
    if path.is_symlink():
        raise InvalidInput(path, "", "expected a file or folder, got a symbolic link "
                                     "(reinstate does not follow links in the workspace)")
    return path


def read_text(path: Path) -> str:
    """Read a user file, turning an unreadable, oversized or not regular one (a named pipe,
    a folder: :func:`read_regular`) into a clear error."""
    try:
        data = read_regular(path, MAX_USER_FILE_BYTES)
    except FileNotFoundError:
        raise InvalidInput(path, "", "file not found") from None
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the file ({exc})") from None
    if len(data) > MAX_USER_FILE_BYTES:
        raise InvalidInput(path, "", f"file too large: expected at most "
                                     f"{MAX_USER_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InvalidInput(path, "", f"cannot read the file: not UTF-8 text ({exc.reason})",
                           line=line) from None


def _bounded_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if len(node.value) > MAX_NUMBER_CHARS:
        raise yaml.constructor.ConstructorError(
            None, None, f"number too long: {len(node.value)} characters, expected at most "
                        f"{MAX_NUMBER_CHARS}", node.start_mark)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


class _UserFileLoader(yaml.SafeLoader):
    """The safe loader (no tags that build Python objects), with numbers and nesting bounded."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose one node, refusing nesting deeper than :data:`MAX_YAML_DEPTH` (the
        composer recurses, so a deep document would otherwise end in a RecursionError)."""
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested too deeply (expected at most {MAX_YAML_DEPTH} levels)",
                    self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_UserFileLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)


class _CUserFileLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader with the same number bound; nesting is checked on its nodes."""


_CUserFileLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)


@functools.cache
def _libyaml_usable() -> bool:
    """Whether PyYAML has libyaml's loader and that libyaml bounds nesting itself.

    libyaml's composer recurses in C, where Python's recursion limit does not reach; since
    0.2.5 libyaml refuses documents nested over a thousand levels, so the recursion stays
    shallow. A libyaml without that bound is not used at all: every file takes the
    pure-Python path, which counts its depth as it goes.
    """
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    probe = _CUserFileLoader("[" * 2000 + "]" * 2000)
    try:
        probe.get_single_node()
    except yaml.YAMLError:
        return True
    finally:
        probe.dispose()
    return False


def parse_yaml(text: str, path: Path) -> Any:
    """Parse YAML safely: no tags that build Python objects, aliases and numbers bounded.

    libyaml's C loader reads the file when PyYAML has it (several times faster); whenever
    it refuses a file, or the file nests deeper than :data:`MAX_YAML_DEPTH` or is
    refused afterwards, the pure-Python loader reads it again and decides, so every error
    names the same line and says the same as it always has.
    """
    if _libyaml_usable():
        loader = _CUserFileLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if not _nested_deeper(node, MAX_YAML_DEPTH):
                _bound_aliases(node, path)
                _refuse_repeated_keys(loader, node, path)
                return loader.construct_document(node)
        except (yaml.YAMLError, InvalidInput, RecursionError):
            pass  # the pure-Python loader below says what is wrong, and where
        finally:
            loader.dispose()
    return _parse_yaml_python(text, path)


def _nested_deeper(root: yaml.Node, limit: int) -> bool:
    """Whether a composed document nests more than ``limit`` levels, counted as the
    pure-Python composer counts them (each node once, where it is first written: an
    alias adds no depth)."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in reversed(_children(node)))
    return False


def _parse_yaml_python(text: str, path: Path) -> Any:
    """:func:`parse_yaml` with PyYAML's pure-Python loader, which counts nesting as it
    composes and knows every error's line."""
    loader: _UserFileLoader | None = None
    try:
        loader = _UserFileLoader(text)  # the reader refuses control characters right here
        node = loader.get_single_node()
        if node is None:
            return None
        _bound_aliases(node, path)
        _refuse_repeated_keys(loader, node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # A reader error (a control character) has no ``problem``, and its text spans lines.
        problem = (getattr(exc, "problem", None) or str(exc)).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        raise InvalidInput(path, "", f"malformed YAML: {problem}", line=line) from None
    except RecursionError:
        raise InvalidInput(path, "", f"malformed YAML: nested too deeply (expected at most "
                                     f"{MAX_YAML_DEPTH} levels)", line=_deep_line(text)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _bound_aliases(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose aliases would expand past :data:`MAX_ALIAS_EXPANSION` extra
    nodes, or that refers to itself. PyYAML shares an aliased node, so the document is
    cheap to build, but everything that walks it afterwards (validation, hashing,
    printing) pays for the expansion; this walks the shared graph once instead."""
    expanded: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in _children(node))
            continue
        if key in expanded:
            continue
        if key in open_nodes:
            raise InvalidInput(path, "", "an alias refers to the node that contains it: "
                                         "expected a document without cycles",
                               line=node.start_mark.line + 1)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in expanded)
    extra = expanded[id(root)] - len(expanded)
    if extra > MAX_ALIAS_EXPANSION:
        raise InvalidInput(path, "", f"YAML aliases expand to {expanded[id(root)]:,} nodes: "
                                     f"expected aliases to add at most "
                                     f"{MAX_ALIAS_EXPANSION:,}", line=_alias_line(root))


_MERGE = "tag:yaml.org,2002:merge"


def _refuse_repeated_keys(loader: Any, root: yaml.Node, path: Path) -> None:
    """Refuse a mapping that sets one key twice. YAML keeps the last silently, so a
    reviewer reading a file's first ``issue_refund:`` (a deny) would not see the one
    further down (an allow) that the tool obeys. Keys are compared as loaded (``yes`` and
    ``true`` are one key); a merge (``<<``) may still override what it merges."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
                    continue
                name = loader.construct_object(key)
                line = key.start_mark.line + 1
                earlier = first.get(name)  # a scalar loads as a hashable value
                if earlier is None:
                    first[name] = line
                else:
                    raise InvalidInput(
                        path, "", f"key {name!r} is set twice in one mapping (first at line "
                                  f"{earlier}): expected each key once (YAML would keep the "
                                  f"last without a word)", line=line)
        stack.extend(_children(node))


def _alias_line(root: yaml.Node) -> int | None:
    """The line of the first node used more than once (where the expansion starts)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return node.start_mark.line + 1
        seen.add(id(node))
        stack.extend(reversed(_children(node)))
    return None


_DEEP = re.compile(r"(?:[\[{]\s*){100}")


def _deep_line(text: str) -> int | None:
    """The line where brackets first nest a hundred deep, if they do."""
    match = _DEEP.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _long_number_at(text: str) -> int:
    """Where the first integer longer than Python will convert starts (0 if none)."""
    limit = sys.get_int_max_str_digits() or 4300
    match = re.search(rf"\d{{{limit + 1}}}", text)
    return match.start() if match else 0


def load_json(raw: str | bytes) -> Any:
    """``json.loads`` whose every refusal is a :class:`json.JSONDecodeError`.

    Python's own parser also raises ``ValueError`` for an integer longer than
    ``sys.get_int_max_str_digits()`` and ``RecursionError`` for deep nesting; both become
    decode errors with a position, so callers name the file and line as for any other.
    """
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except RecursionError:
        text = _as_text(raw)
        match = _DEEP.search(text)
        raise json.JSONDecodeError("nested too deeply (expected at most a few hundred "
                                   "levels)", text, match.start() if match else 0) from None
    except ValueError:
        text = _as_text(raw)
        limit = sys.get_int_max_str_digits() or 4300
        raise json.JSONDecodeError(f"number too long (expected at most {limit} digits)",
                                   text, _long_number_at(text)) from None
    # Only an escape spells a surrogate (UTF-8 bytes cannot): looked for only where one is.
    if (_SURROGATE if isinstance(raw, str) else _SURROGATE_BYTES).search(raw):  # type: ignore[arg-type]
        _refuse_lone_surrogate(value, _as_text(raw))
    return value


# A \uD800–\uDFFF escape: half of a pair, or a lone surrogate, which is no character.
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogate(value: Any, text: str) -> None:
    """Refuse a value holding a lone surrogate, as the native and OTLP readers' parsers
    refuse its escape: it cannot be written as UTF-8 (a run holding one could be neither
    ingested with ``--out`` nor stored), and would crash whatever serialises it."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        match = _SURROGATE.search(text)
        raise json.JSONDecodeError("a lone surrogate escape (\\uD800–\\uDFFF without its "
                                   "pair) is no Unicode character", text,
                                   match.start() if match else 0) from None


def _as_text(raw: str | bytes) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


def line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """Find the line of the node at ``loc`` in a YAML text, or of its nearest parent."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
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
    try:
        text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):  # an integer too long to print, or a deep value
        text = f"a {type(value).__name__} too large to show"
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


@contextlib.contextmanager
def atomic_output(path: Path, *, private: bool = False) -> Iterator[BinaryIO]:
    """Write ``path`` through a binary handle so a reader sees the old file or the new,
    never half of one.

    The handle writes a temporary file beside ``path``. When the block ends without an
    error the file is flushed, fsynced and renamed over ``path``, and the folder is fsynced
    so the rename itself survives a crash. When the block raises, the temporary file is
    removed and ``path`` is left as it was. The file gets the mode a plain ``open()`` would
    give it (0666 less the umask), so a CI artifact reader or a web server running as
    another user can read it; ``private`` keeps it 0600.

    Args:
        path: The file to replace (its folder is created if missing).
        private: Keep the file readable by this user only.

    Yields:
        The open binary handle of the temporary file; a writer may close it itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temporary_beside(path, private=private) as (handle, tmp):
        yield handle
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new, never half.

    The text is written as UTF-8 through :func:`atomic_output`, which says how.
    """
    with atomic_output(path, private=private) as handle:
        handle.write(text.encode("utf-8"))


def write_atomic_lines(path: Path, lines: Iterable[str]) -> int:
    """Like :func:`write_atomic`, for output too large to hold: streams ``lines`` to a
    temporary file and renames it over ``path`` only when every line was written.

    Returns how many lines were written.
    """
    count = 0
    with atomic_output(path) as handle:
        for line in lines:
            handle.write(line.encode("utf-8"))
            count += 1
    return count


def create_exclusive(path: Path, text: str, *, private: bool = False) -> bool:
    """Write a new file atomically, only if ``path`` does not exist yet.

    Returns False when another writer got there first; used to hand out unique ids
    (``INC-7``) to concurrent writers without a lock. Modes as :func:`write_atomic`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temporary_beside(path, private=private) as (handle, tmp):
        handle.write(text.encode("utf-8"))
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


@contextlib.contextmanager
def _temporary_beside(path: Path, *, private: bool) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file in ``path``'s folder, open for writing, and its name; flushed and
    fsynced when the block ends, removed when it raises."""
    # mkstemp creates the file 0600 (so nothing is readable before it is whole); the final
    # mode is set on the descriptor before the rename makes the file visible. The handle
    # works on a copy of the descriptor, so the data can be fsynced even when the writer
    # closed its handle (as some writers do when they finish).
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        if not private:
            os.fchmod(fd, _shared_mode())
        with os.fdopen(os.dup(fd), "wb") as handle:
            yield handle, tmp
        os.fsync(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _shared_mode() -> int:
    """0666 less the process's umask: the mode ``open()`` gives a new file."""
    try:  # Linux shows the umask without changing it (no race with other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
