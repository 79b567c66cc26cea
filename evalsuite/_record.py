"""The base every reinstate model shares."""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from typing import Any

from pydantic import BaseModel, ConfigDict


def field_docstrings(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of ``cls`` itself (not its bases).

    Args:
        cls: A model class whose source can be read.

    Returns:
        Field name to its docstring, cleaned as ``inspect.cleandoc`` cleans one.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined where no source is kept (a REPL, a frozen app)
        return {}
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for field, after in itertools.pairwise(body):
            if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                found[field.target.id] = inspect.cleandoc(after.value.value)
    return found


def _document_fields(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Give each property of a model's JSON Schema its field's docstring as its description.

    Pydantic's ``use_attribute_docstrings`` does this by reading every model's source when
    the class is defined, which cost every command most of its start-up; only the JSON
    Schemas use the text, so it is read here, when a schema is generated.
    """
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    documented: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring wins over its base's
        if isinstance(klass, type) and issubclass(klass, BaseModel) and klass is not BaseModel:
            documented.update(field_docstrings(klass))
    for name, field in cls.model_fields.items():
        prop = properties.get(field.alias or name)
        doc = documented.get(name)
        if not isinstance(prop, dict) or doc is None or "description" in prop or field.description:
            continue
        # As pydantic does: a reference keeps no description that only repeats its target's.
        target = field.annotation
        if ("$ref" in prop and isinstance(target, type) and target.__doc__
                and inspect.cleandoc(target.__doc__) == doc):
            continue
        prop["description"] = doc


class Record(BaseModel):
    """A strict model: unknown fields are mistakes, and field docstrings document the schema."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        defer_build=True,
        json_schema_extra=_document_fields,
    )
