"""Differences between two JSON-like values, as lines a person can read.

deepdiff finds them; this module only names each place the way the files do
(``tool_calls[0].arguments.amount``) and shows short values, so a failing test, a
verdict report and a postmortem all describe a change the same way.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from evalsuite import Record

ChangeKind = Literal["changed", "added", "removed"]
# deepdiff's report types, by what they mean to a reader.
_KINDS: dict[str, ChangeKind] = {
    "values_changed": "changed",
    "type_changes": "changed",
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}


class Change(Record):
    """One difference between two values."""

    kind: ChangeKind
    """changed, added or removed."""
    place: str
    """Where, as a dotted path: ``checks.evals.outcome``."""
    before: Any = None
    """The value before; none for an addition."""
    after: Any = None
    """The value after; none for a removal."""

    def line(self) -> str:
        """``place: before → after``, or ``place: added value``."""
        if self.kind == "added":
            return f"{self.place}: added {short(self.after)}"
        if self.kind == "removed":
            return f"{self.place}: removed {short(self.before)}"
        return f"{self.place}: {short(self.before)} → {short(self.after)}"


def differences(before: Any, after: Any, *, ignore_order: bool = False) -> list[Change]:
    """Every difference from ``before`` to ``after``, in a stable order."""
    # Imported on use: deepdiff imports pandas (and numpy, pyarrow) whenever it is
    # installed, which would weigh on every eval and gate that never compares.
    from deepdiff import DeepDiff

    tree = DeepDiff(before, after, view="tree", ignore_order=ignore_order)
    changes = []
    for report, levels in tree.items():
        kind = _KINDS.get(report)
        if kind is None:  # e.g. repetition changes under ignore_order: shown as changed
            kind = "changed"
        for level in levels:
            changes.append(Change(
                kind=kind, place=place(level.path(output_format="list")),
                before=None if kind == "added" else level.t1,
                after=None if kind == "removed" else level.t2,
            ))
    return sorted(changes, key=lambda c: (c.place, c.kind))


def place(parts: list[Any]) -> str:
    """``["a", 0, "b"]`` → ``a[0].b``; the root is ``(value)``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".") or "(value)"


def short(value: Any, limit: int = 160) -> str:
    """A value as compact JSON, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                          ensure_ascii=False)
    text = " ".join(str(text).split())
    if isinstance(value, str):
        text = json.dumps(text, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
