"""The committed JSON Schemas match the models, and the bundled files conform to them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from gates import SCHEMAS, schema_text
from gates._demo import EXAMPLE

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_is_current(name: str) -> None:
    """schemas/<name>.json is what the model generates; run `nox -s schemas` when it fails."""
    committed = (ROOT / "schemas" / f"{name}.json").read_text()
    assert committed == schema_text(name)


def test_no_stray_schema_files() -> None:
    """Every file in schemas/ belongs to a model."""
    assert sorted(p.stem for p in (ROOT / "schemas").glob("*.json")) == sorted(SCHEMAS)


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((ROOT / "schemas" / f"{name}.json").read_text()))


KINDS = {"permissions.yaml": "permissions", "acceptance.yaml": "acceptance",
         "review.yaml": "review", "checklist.yaml": "checklist", "agent.yaml": "agent"}


def test_bundled_example_conforms_to_the_published_schemas() -> None:
    """Every YAML file of the example validates against its schema with jsonschema."""
    checked = 0
    for path in sorted(EXAMPLE.rglob("*.yaml")):
        kind = KINDS.get(path.name, "eval-case" if "evals" in path.parts else None)
        assert kind is not None, f"no schema for {path}"
        errors = list(_validator(kind).iter_errors(yaml.safe_load(path.read_text())))
        assert errors == [], f"{path}: {errors[0].message if errors else ''}"
        checked += 1
    assert checked == 9 + 20 + 3  # two control sets (the fix keeps the checklist), all cases


def test_schema_rejects_what_the_model_rejects() -> None:
    """An unknown field in a permission entry is invalid by the schema too."""
    document = {"schema_version": 1, "agent": "a",
                "tools": {"t": {"allowed": True, "risk": "low", "alowed": True}}}
    assert not _validator("permissions").is_valid(document)
