"""The base every reinstate model shares."""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from collections.abc import Callable
from typing import Any, Self

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


# Each model's fields whose default comes from a factory taking no argument, by class.
_FACTORIES: dict[type[BaseModel], tuple[tuple[str, Callable[[], Any]], ...]] = {}


class Record(BaseModel):
    """A strict model: unknown fields are mistakes, and field docstrings document the schema."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        defer_build=True,
        json_schema_extra=_document_fields,
    )

    @classmethod
    def model_construct(  # type: ignore[override]  # the pydantic plugin types each model's own
            cls, _fields_set: set[str] | None = None, **values: Any) -> Self:
        """Pydantic's ``model_construct``, calling default factories itself.

        Pydantic (2.11 and later) asks ``inspect.signature`` of a default factory each time
        ``model_construct`` calls it, to see whether it takes the validated data: that
        costs fifty times the rest of building the model, on paths (replaying a step,
        running a trial) that build models by the thousand. The answer never changes for a
        class, so it is found once here; the fields set are those given, as pydantic has it.
        """
        factories = _FACTORIES.get(cls)
        if factories is None:
            factories = _FACTORIES[cls] = tuple(
                (name, field.default_factory)  # type: ignore[misc]
                for name, field in cls.__pydantic_fields__.items()
                if field.default_factory is not None and field.alias is None
                and not field.default_factory_takes_validated_data)
        missing = [(name, factory) for name, factory in factories if name not in values]
        if missing:
            if _fields_set is None:
                _fields_set = {name for name, field in cls.__pydantic_fields__.items()
                               if name in values or (field.alias and field.alias in values)}
            for name, factory in missing:
                values[name] = factory()
        return super().model_construct(_fields_set, **values)
