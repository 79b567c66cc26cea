"""JSON Schemas that users write (argument constraints), checked and compiled once."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Raise ``ValueError`` naming the problem when ``schema`` is not a valid JSON Schema."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.absolute_path) or "the schema"
        raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
    return schema


# Validators by the identity of the schema object they were built for. The entry keeps the
# schema alive, so its id cannot be reused by another object while it is cached; rules
# hold their schemas for their whole life, so a lookup is one dict access.
_BY_ID: dict[int, tuple[dict[str, Any], Draft202012Validator]] = {}


@lru_cache(maxsize=4096)
def _validator(key: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(key))


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A compiled validator for ``schema``, shared by every rule that uses the same schema."""
    hit = _BY_ID.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if len(_BY_ID) > 8192:
        _BY_ID.clear()
    _BY_ID[id(schema)] = (schema, validator)
    return validator


def schema_violation(schema: dict[str, Any], value: Any) -> str | None:
    """The first way ``value`` breaks ``schema``, or None when it conforms."""
    error = next(iter(schema_validator(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    return f"{where.lstrip('.') or 'value'}: {error.message}"
