"""The controls as they were at containment: copied beside the incident, hashed, read back."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from evalsuite import (
    EvalCase,
    InvalidInput,
    ReinstateError,
    case_keys,
    load_cases,
    refuse_link,
)
from gates._config import Workspace
from gates._controls.files import CONTROL_FILES, Controls
from gates._verdict.fingerprint import file_digest, fingerprint
from regressions import Baseline, Incident, RegressionCase


def snapshot(workspace: Workspace, incident: Incident) -> Baseline:
    """Copy the agent's control files beside the incident and record their hashes.

    Containment must never be blocked by a broken file: files are copied as bytes
    whatever they hold, and a suite that cannot be read counts no input types.
    """
    folder = f"{incident.id}.baseline"
    target = refuse_link(workspace.incidents_dir / folder)  # a copy must not land outside
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in CONTROL_FILES:
        source = workspace.agent_dir(incident.agent) / name
        if source.is_file():
            shutil.copyfile(source, refuse_link(target / name))
        files[name] = file_digest(target / name)
    try:
        stamp = fingerprint(workspace, incident.agent)
        stamps = stamp.model_dump(exclude={"files"})
    except ReinstateError:
        stamps = {}
    return Baseline(
        directory=folder, files=files, fingerprint=stamps,
        eval_tags=_tag_counts(workspace, incident.agent),
    )


def tag_counts(cases: Sequence[EvalCase]) -> dict[str, int]:
    """How many cases cover each input type (read from packed cases without unpacking)."""
    return dict(Counter(tag for key in case_keys(cases) for tag in key.tags))


def _tag_counts(workspace: Workspace, agent: str) -> dict[str, int]:
    try:
        cases: list[EvalCase] = [
            *load_cases(workspace.evals_dir(agent), EvalCase, agent).values()
        ]
        cases += load_cases(workspace.regressions_dir(agent), RegressionCase, agent).values()
    except ReinstateError:
        return {}
    return tag_counts(cases)


def load_baseline(workspace: Workspace, incident: Incident) -> Controls:
    """The controls an incident was contained under; a copy that changed is an error."""
    if incident.containment is None:
        raise InvalidInput(workspace.incidents().path(incident.id), "$.containment",
                           "the incident was never contained, so it has no baseline")
    baseline = incident.containment.baseline
    folder = refuse_link(workspace.incidents_dir / baseline.directory).resolve()
    if not folder.is_relative_to(workspace.incidents_dir.resolve()):
        raise InvalidInput(workspace.incidents().path(incident.id),
                           "$.containment.baseline.directory",
                           "expected a folder inside the incidents folder")
    for name, digest in baseline.files.items():
        if name not in CONTROL_FILES:  # a name from a file never reaches outside the copy
            raise InvalidInput(workspace.incidents().path(incident.id),
                               f"$.containment.baseline.files.{name}",
                               f"expected one of {', '.join(CONTROL_FILES)}")
        if file_digest(refuse_link(folder / name)) != digest:
            raise InvalidInput(
                folder / name, "",
                f"the baseline copy does not match the hash recorded at containment of "
                f"{incident.id}; it was changed or removed",
            )
    return workspace.controls(incident.agent, Path(folder))
