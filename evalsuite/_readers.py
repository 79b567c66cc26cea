"""Readers a team adds without forking: the ``reinstate.readers`` entry points and
``--format module:callable``.

A reader is ``reader(path, skips) -> Iterator[RunPart]`` (the contract is in the README's
log-format section, and :func:`evalsuite.check_reader` tests it). It may carry a
detector, ``reader.detect(path) -> bool``, that ``--format auto`` asks about a file none
of the bundled formats recognises. A format is named three ways:

- a bundled format (``jsonl``, ``otel``, …), which always wins;
- the name of an entry point in the group ``reinstate.readers`` of an installed package;
- ``package.module:callable``, imported from ``sys.path`` (install the module, or put its
  folder on ``PYTHONPATH``).

The name, never the function, is what is recorded (an investigation's ``logs[].format``),
so a gate reads a log again with the same reader, and a worker process can load it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from evalsuite._errors import EvalsuiteError, InvalidInput, ReinstateError, display_path
from evalsuite._parts import RunPart, Skips
from evalsuite._run import Output, Reasoning, ToolCall, ToolResult, UserInput

READER_GROUP = "reinstate.readers"
Reader = Callable[[Path, Skips | None], Iterable[RunPart]]
_STEP_TYPES = (UserInput, Reasoning, ToolCall, ToolResult, Output)


class ReaderFailed(EvalsuiteError):
    """A plugin reader broke its contract or crashed: the log could not be read by it."""

    exit_code = 3


@cache
def installed_readers() -> dict[str, EntryPoint]:
    """The readers installed packages declare under ``reinstate.readers``, by name."""
    return {ep.name: ep for ep in sorted(entry_points(group=READER_GROUP),
                                         key=lambda e: e.name)}


def is_plugin_format(name: str) -> bool:
    """Whether ``name`` names a plugin reader: an installed one, or ``module:callable``."""
    return name in installed_readers() or _is_spec(name)


def _is_spec(name: str) -> bool:
    module, colon, attr = name.partition(":")
    return bool(colon) and all(p.isidentifier() for p in (*module.split("."), *attr.split(".")))


@cache
def load_reader(name: str) -> Reader:
    """The plugin reader ``name`` names, loaded; a name that names none is bad usage."""
    from evalsuite._logs import LOG_FORMATS as bundled  # here: _logs imports this module
    found = installed_readers().get(name)
    if found is None and not _is_spec(name):
        raise InvalidInput(None, "--format", f"no reader named {name!r}: expected auto, a "
                                             f"bundled format ({', '.join(bundled)}), a "
                                             f"reader installed under the {READER_GROUP} "
                                             f"entry points, or module:callable")
    try:
        reader: Any = found.load() if found is not None else _import(name)
    except ReinstateError:
        raise
    except Exception as exc:  # a plugin's own import error, whatever it is
        raise InvalidInput(None, "--format", f"cannot load the reader {name!r}: "
                                             f"{type(exc).__name__}: {exc}") from None
    if not callable(reader):
        raise InvalidInput(None, "--format", f"expected {name!r} to be a callable "
                                             f"reader(path, skips), got {type(reader).__name__}")
    return reader  # type: ignore[no-any-return]


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def detect_plugin(path: Path) -> str | None:
    """The first installed reader (by name) whose detector claims the file, if any."""
    for name in installed_readers():
        reader = load_reader(name)
        detect = getattr(reader, "detect", None)
        if detect is None:
            continue
        try:
            claimed = detect(path)
        except Exception as exc:  # a plugin's detector must not crash auto-detection
            raise ReaderFailed(f"{display_path(path)}: the {name!r} reader's detector failed: "
                               f"{type(exc).__name__}: {exc}") from None
        if claimed is True:
            return name
    return None


def plugin_parts(name: str, path: Path, skips: Skips | None) -> Iterator[RunPart]:
    """The parts a plugin reader yields, each checked against the contract as it passes.

    An error that is not :class:`InvalidInput` (a crash in the plugin), or something that
    is not a run part, stops the read with :class:`ReaderFailed` naming the reader.
    """
    reader = load_reader(name)
    try:
        for index, part in enumerate(reader(path, skips)):
            problem = broken_part(part)
            if problem:
                raise ReaderFailed(f"{display_path(path)}: the {name!r} reader broke its "
                                   f"contract at the "
                                   f"part #{index + 1} it yielded: {problem}")
            yield part
    except ReinstateError:
        raise
    except Exception as exc:
        raise ReaderFailed(f"{display_path(path)}: the {name!r} reader failed: "
                           f"{type(exc).__name__}: {exc}") from None


def broken_part(part: Any) -> str | None:
    """What is wrong with a part a reader yielded, checked cheaply (every part of a plugin's
    read passes here): enough to keep the commands that use it sound; ``None`` if nothing."""
    if not isinstance(part, RunPart):
        return f"expected a RunPart, got {type(part).__name__}"
    if not isinstance(part.run_id, str) or not part.run_id:
        return "expected a run_id that is a non-empty string"
    if len(part.places) != len(part.steps):
        return (f"expected one place per step, got {len(part.places)} places for "
                f"{len(part.steps)} steps")
    wrong = next((s for s in part.steps if not isinstance(s, _STEP_TYPES)), None)
    if wrong is not None:
        return f"expected steps of the run record, got {type(wrong).__name__}"
    if part.header is not None and part.header.run_id != part.run_id:
        return f"the header's run_id {part.header.run_id!r} is not the part's {part.run_id!r}"
    return None
