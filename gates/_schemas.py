"""The JSON Schemas of every file reinstate reads or writes, generated from the models.

``schemas/`` in the repository holds them for editors and other tools; a test fails when
a committed schema no longer matches its model.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from evalsuite import AgentSpec, EvalCase, Run, write_atomic
from gates._backtest.model import Backtest
from gates._config import Config
from gates._controls.files import Acceptance, Checklist, Permissions, ReviewRouting
from gates._response.verify import Verification
from gates._verdict.ratchet_approvals import RatchetApprovals
from gates._verdict.verdict import Verdict
from regressions import Incident, RegressionCase

SCHEMAS: dict[str, type[BaseModel]] = {
    "reinstate-config": Config,
    "agent": AgentSpec,
    "permissions": Permissions,
    "acceptance": Acceptance,
    "review": ReviewRouting,
    "checklist": Checklist,
    "eval-case": EvalCase,
    "regression-case": RegressionCase,
    "ratchet-approvals": RatchetApprovals,
    "incident": Incident,
    "run": Run,
    "verdict": Verdict,
    "verification": Verification,
    "backtest": Backtest,
}


def schema_text(name: str) -> str:
    """The JSON Schema of one file kind, as committed."""
    schema = SCHEMAS[name].model_json_schema(mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into ``directory``."""
    written = []
    for name in SCHEMAS:
        path = directory / f"{name}.json"
        write_atomic(path, schema_text(name))
        written.append(path)
    return written
