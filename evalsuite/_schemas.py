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


@lru_cache(maxsize=4096)
def _validator(key: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(key))


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A compiled validator for ``schema``, shared by every rule that uses the same schema."""
    return _validator(json.dumps(schema, sort_keys=True))


def schema_violation(schema: dict[str, Any], value: Any) -> str | None:
    """The first way ``value`` breaks ``schema``, or None when it conforms."""
    error = next(iter(schema_validator(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    return f"{where.lstrip('.') or 'value'}: {error.message}"
