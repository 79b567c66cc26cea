"""JSON Schemas that users write (argument constraints), checked and compiled once.

``pattern`` and ``patternProperties`` are matched with RE2 (:mod:`evalsuite._regex`), not
Python's backtracking ``re``: the strings they are matched against come from the agent.
A pattern RE2 cannot compile is refused when the schema is checked, with its place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from evalsuite._known_schemas import known_valid, remember_valid
from evalsuite._regex import user_regex

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import ValidationError


def _is_re2(instance: object) -> bool:
    if isinstance(instance, str):
        user_regex(instance)
    return True


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and user_regex(pattern).search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        compiled = user_regex(pattern)
        for key, value in instance.items():
            if compiled.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any,
                           schema: Any) -> Iterator[ValidationError]:
    """jsonschema's ``additionalProperties``, with ``patternProperties`` keys matched by RE2."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = [user_regex(p) for p in schema.get("patternProperties", {})]
    extras = sorted((k for k in instance if k not in known
                     and not any(p.search(k) for p in patterns)), key=str)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:  # jsonschema's own wording
        shown = ", ".join(repr(e) for e in extras)
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            regexes = ", ".join(repr(p) for p in sorted(schema["patternProperties"]))
            yield ValidationError(f"{shown} {verb} not match any of the regexes: {regexes}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({shown} {verb} "
                                  f"unexpected)")


@cache
def _jsonschema() -> tuple[Any, FormatChecker]:
    """Draft 2020-12 with every regular expression matched by RE2, and the format checker
    that checks a ``regex`` with RE2; built on first use, since importing jsonschema is a
    large part of the start-up of a command that checks no schema (``reinstate mode``)."""
    from jsonschema import Draft202012Validator, FormatChecker, validators

    regex_format = FormatChecker(formats=())
    regex_format.checks("regex", raises=ValueError)(_is_re2)
    re2_validator = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, validators={
            "pattern": _pattern, "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        })
    return re2_validator, regex_format


def check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Raise ``ValueError`` naming the problem when ``schema`` is not a valid JSON Schema.

    Every ``pattern`` and ``patternProperties`` key must compile with RE2; a schema that
    would match property names with Python's ``re`` (``unevaluatedProperties`` beside
    ``patternProperties``) is refused.
    """
    if known_valid(schema):  # passed this very check before: no jsonschema to import
        return schema
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema, format_checker=_jsonschema()[1])
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.absolute_path) or "the schema"
        message = str(exc.cause) if isinstance(exc.cause, ValueError) else exc.message
        raise ValueError(f"invalid JSON Schema at {where}: {message}") from None
    unresolved = _unresolved_ref(schema)
    if unresolved is not None:
        where, ref = unresolved
        raise ValueError(f"invalid JSON Schema at {where}: $ref {ref!r} resolves to nothing "
                         f"in the schema (no other schema is ever fetched)")
    if _uses(schema, "unevaluatedProperties") and _uses(schema, "patternProperties"):
        raise ValueError("invalid JSON Schema: unevaluatedProperties cannot be combined with "
                         "patternProperties (use additionalProperties)")
    remember_valid(schema)
    return schema


# Keywords whose values are data, not schemas: a "$ref" key there is no reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def _unresolved_ref(schema: dict[str, Any]) -> tuple[str, str] | None:
    """The place and value of the first ``$ref`` that resolves to nothing, if any.

    Such a schema passes the metaschema, and then raised out of every judgement that
    reached it (a traceback, never an answer): a ``$ref`` to another document is never
    fetched, and a pointer may lead nowhere in this one.
    """
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    def walk(node: Any, resolver: Any, place: str) -> tuple[str, str] | None:
        if isinstance(node, list):
            return next((found for i, item in enumerate(node)
                         if (found := walk(item, resolver, f"{place}[{i}]")) is not None), None)
        if not isinstance(node, dict):
            return None
        if isinstance(node.get("$id"), str) and place:
            resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                resolver.lookup(ref)
            except Unresolvable:
                return place or "the schema", ref
        return next((found for key, value in node.items() if key not in _DATA_KEYWORDS
                     and (found := walk(value, resolver, f"{place}[{key!r}]")) is not None),
                    None)

    root = DRAFT202012.create_resource(schema)
    found = schema.get("$id")
    base = found if isinstance(found, str) else ""
    return walk(schema, Registry().with_resource(base, root).resolver(base), "")


def _uses(schema: Any, keyword: str) -> bool:
    if isinstance(schema, dict):
        return keyword in schema or any(_uses(v, keyword) for v in schema.values())
    if isinstance(schema, list):
        return any(_uses(v, keyword) for v in schema)
    return False


# Validators by the identity of the schema object they were built for. The entry keeps the
# schema alive, so its id cannot be reused by another object while it is cached; rules
# hold their schemas for their whole life, so a lookup is one dict access.
_BY_ID: dict[int, tuple[dict[str, Any], Any]] = {}


@lru_cache(maxsize=4096)
def _validator(key: str) -> Any:
    return _jsonschema()[0](json.loads(key))


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A compiled validator for ``schema`` (RE2 for its patterns), shared by every rule
    that uses the same schema."""
    hit = _BY_ID.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]  # type: ignore[no-any-return]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if len(_BY_ID) > 8192:
        _BY_ID.clear()
    _BY_ID[id(schema)] = (schema, validator)
    return validator  # type: ignore[no-any-return]


def schema_violation(schema: dict[str, Any], value: Any) -> str | None:
    """The first way ``value`` breaks ``schema``, or None when it conforms."""
    error = next(iter(schema_validator(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    return f"{where.lstrip('.') or 'value'}: {error.message}"
