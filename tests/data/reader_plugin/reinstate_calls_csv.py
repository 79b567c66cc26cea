"""A reader plugin as a team would write one, for the plugin tests: CSV call logs.

Each line is ``run_id,kind,text``: ``input`` and ``output`` carry text, ``call`` carries
``tool {json arguments}``, ``result`` carries the result text. It is declared under the
``reinstate.readers`` entry points by the ``.dist-info`` beside it (as ``pip install``
would write it), and claims ``*.calls.csv`` files for ``--format auto``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from evalsuite import InvalidInput, Output, RunPart, Skips, ToolCall, ToolResult, UserInput


def read_calls(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    """One part per line of the file, as the reader contract asks."""
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            try:
                yield _part(row, number, path)
            except InvalidInput as error:
                if skips is None:
                    raise
                skips.add(error)


def _part(row: list[str], number: int, path: Path) -> RunPart:
    if len(row) != 3 or not row[0]:
        raise InvalidInput(path, "row", "expected run_id,kind,text", line=number)
    run_id, kind, text = row
    if kind == "input":
        step: object = UserInput(content=text)
    elif kind == "output":
        step = Output(content=text)
    elif kind == "call":
        tool, _, arguments = text.partition(" ")
        try:
            step = ToolCall(tool=tool, arguments=json.loads(arguments or "{}"))
        except (ValueError, TypeError):
            raise InvalidInput(path, "column 3", "expected tool {json arguments}",
                               line=number) from None
    elif kind == "result":
        step = ToolResult(result=text)
    else:
        raise InvalidInput(path, "column 2", f"expected input, output, call or result, "
                                             f"got {kind!r}", line=number)
    return RunPart(run_id=run_id, source=path, place=number, steps=[step],  # type: ignore[list-item]
                   places=[number])


def _detect(path: Path) -> bool:
    return path.name.endswith(".calls.csv")


read_calls.detect = _detect  # type: ignore[attr-defined]


def crashes(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    """A reader with a bug in it: the error is its own, not the log's."""
    raise RuntimeError("the plugin's own bug")
    yield  # pragma: no cover
