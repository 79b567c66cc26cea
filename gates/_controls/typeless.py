"""Bounds in the control files' JSON Schemas that hold for values of another type.

A JSON Schema keyword such as ``maximum`` constrains numbers only: written without
``type``, the text ``"1250"`` meets ``maximum: 500``, and an upstream that reads text as a
number then runs the call. Where a control refuses a call when its schema fails (a tool's
``arguments``, a ``tool_arguments`` criterion) such a bound lets text through; where a
control acts when its schema holds (``deny_when``, ``review_when``) it catches text too,
which is cautious, unless it sits under a ``not``. Said as warnings, never failed: teams'
files that rely on it keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from evalsuite import json_path
from gates._controls.files import Controls

_BOUNDS = {
    **dict.fromkeys(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                     "multipleOf"), "text"),
    **dict.fromkeys(("minLength", "maxLength", "pattern", "format"), "a number"),
    **dict.fromkeys(("minItems", "maxItems", "uniqueItems"), "a value that is no list"),
}
"""Each keyword that constrains one type only, and what passes it for being another."""

_SAME_SIDE = ("allOf", "anyOf", "oneOf")
_ONE_SCHEMA = ("additionalProperties", "items", "contains", "then", "else")
_BY_NAME = ("properties", "patternProperties", "$defs", "definitions")


def typeless_bounds(schema: Any, loc: list[str | int], refused_when_fails: bool = True,
                    ) -> Iterator[tuple[str, str, str]]:
    """(place, keyword, what passes it) for each bound that lets the wrong type through.

    ``refused_when_fails`` says which side of the schema refuses: True for an allow-list
    (the call is refused when the schema fails), False for a condition (it acts when the
    schema holds); a ``not`` turns the side over.
    """
    if not isinstance(schema, dict):
        return
    # `enum`/`const` constrain every type, and a `type` names the ones the author allows.
    if refused_when_fails and not {"type", "enum", "const"} & schema.keys():
        for keyword, passes in _BOUNDS.items():
            if keyword in schema:
                yield json_path(loc).removeprefix("$").lstrip("."), keyword, passes
    for keyword in (*_SAME_SIDE, "prefixItems"):
        for index, sub in enumerate(schema.get(keyword) or []):
            yield from typeless_bounds(sub, [*loc, keyword, index], refused_when_fails)
    for keyword in _ONE_SCHEMA:
        yield from typeless_bounds(schema.get(keyword), [*loc, keyword], refused_when_fails)
    for keyword in _BY_NAME:
        subs = schema.get(keyword)
        for name, sub in (subs.items() if isinstance(subs, dict) else ()):
            yield from typeless_bounds(sub, [*loc, keyword, name], refused_when_fails)
    yield from typeless_bounds(schema.get("not"), [*loc, "not"], not refused_when_fails)


def typeless_warnings(controls: Controls, permissions: str, acceptance: str,
                      ) -> tuple[list[str], list[str]]:
    """The warnings of ``permissions.yaml`` and of ``acceptance.yaml``, each naming the
    file as given (``permissions``, ``acceptance``), the place and the keyword."""
    found: list[tuple[str, Any, list[str | int], bool]] = []
    for tool, permission in controls.permissions.tools.items():
        found.append((permissions, permission.arguments, ["tools", tool, "arguments"], True))
        for field in ("deny_when", "review_when"):
            for index, condition in enumerate(getattr(permission, field)):
                found.append((permissions, condition.arguments,
                              ["tools", tool, field, index, "arguments"], False))
    for index, criterion in enumerate(controls.acceptance.criteria):
        if criterion.kind == "tool_arguments":
            found.append((acceptance, getattr(criterion, "arguments", None),
                          ["criteria", index, "arguments"], True))
    out: tuple[list[str], list[str]] = ([], [])
    for file, schema, loc, side in found:
        for place, keyword, passes in typeless_bounds(schema, loc, side):
            out[file == acceptance].append(
                f"{file}: {place}: {keyword} without type: {passes} passes it")
    return out
