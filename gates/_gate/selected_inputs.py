"""What ``reinstate eval AGENT --cases GLOB`` reads: every input, but only the chosen cases.

:func:`~gates._gate.inputs.load_inputs` validates every case file, which a gate must (it
runs every case). An eval that selects cases by id needs only theirs: the id of every
case file comes from :func:`evalsuite.case_index` (its bytes and a cache of ids by digest),
and only the files whose id matches are parsed and validated, with every check the full
load makes of them (schema, agent, duplicate ids, a clash with the other folder, known
tools, bound predicates, a regression case's incident). A file whose id the index cannot
tell is read in full too, so its error is reported, never skipped.

The fingerprint still covers every file: the unchosen case files are digested from the
bytes the index read, so it is the very fingerprint a gate would take of the same files.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalsuite import (
    EvalCase,
    InvalidInput,
    PackedCases,
    case_files,
    case_index,
    read_cases,
)
from gates._config import Workspace
from gates._controls.files import PredicateBinder
from gates._gate.inputs import (
    _LISTED,
    _READS,
    GateInputs,
    _agent_spec,
    _changed,
    _check_case,
    _check_incidents,
    _read_names,
    _reading_lock,
    _refuse_shared_ids,
)
from gates._verdict.fingerprint import fingerprint
from regressions import RegressionCase


@dataclass(frozen=True)
class SelectedInputs:
    """The inputs of an eval that runs only some cases, and those cases."""

    inputs: GateInputs
    """Everything but the cases as a gate reads it; its cases are only the chosen ones."""
    chosen: PackedCases[EvalCase]
    """The chosen eval and regression cases, in the gate's order."""


def matches(case_id: str, patterns: Sequence[str]) -> bool:
    """Whether ``case_id`` matches any of the globs (case-sensitive, as ids are)."""
    return any(fnmatch.fnmatchcase(case_id, p) for p in patterns)


def load_selected(workspace: Workspace, agent: str,
                  patterns: Sequence[str]) -> SelectedInputs:
    """Read ``agent``'s inputs with only the case files whose id matches a glob parsed.

    Raises :class:`InvalidInput` for a bad chosen case file or any other bad input, as the
    full load does, and when a glob matches no case id (naming the first such glob).
    """
    workspace.require_agent(agent)
    folders = (workspace.evals_dir(agent), workspace.regressions_dir(agent))
    for _ in range(_READS):
        with _reading_lock(workspace, agent):
            listed = {p: _LISTED for d in folders for p in case_files(d)}
            before = fingerprint(workspace, agent, read=listed)
            index = case_index(folders)
            read = {entry.path: entry.digest for entry in index}
            only = {e.path for e in index if e.id is None or matches(e.id, patterns)}
            selected = _load(workspace, agent, read, only, patterns)
        changed = _changed(before, selected.inputs.fingerprint,
                           _read_names(workspace, agent, read))
        if not changed:
            break
    else:
        raise InvalidInput(None, "", f"the files of {agent} kept changing while they were "
                                     f"read ({', '.join(changed[:3]) or 'unknown'}); "
                                     f"run it again")
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(i, p)
                                                 for i in selected.chosen.ids)]
    if unmatched:  # a typo in one of several globs would otherwise go unnoticed
        raise InvalidInput(None, "--cases", f"no case id matches {unmatched[0]!r}")
    return selected


def _load(workspace: Workspace, agent: str, read: dict[Path, str], only: set[Path],
          patterns: Sequence[str]) -> SelectedInputs:
    """The full load's checks, made of the files in ``only``; ``read`` holds every case
    file's digest and takes the parsed bytes' digest of each file read here."""
    agent_file, spec = _agent_spec(workspace, agent)
    controls = workspace.controls(agent)
    bind = PredicateBinder(workspace.root, workspace.config.rules.predicate_modules)
    evals: PackedCases[EvalCase] = PackedCases()
    for path, case in read_cases(workspace.evals_dir(agent), EvalCase, agent, digests=read,
                                 only=only):
        _check_case(path, case, controls, bind)
        evals.append(case)
    regressions = dict(read_cases(workspace.regressions_dir(agent), RegressionCase, agent,
                                  digests=read, only=only))
    _refuse_shared_ids(evals.ids, regressions)
    incidents = workspace.incidents().all(agent)
    _check_incidents(workspace, regressions, {i.id for i in incidents})
    for path, case in regressions.items():
        _check_case(path, case, controls, bind)
    inputs = GateInputs(
        workspace=workspace, agent=spec, agent_file=agent_file, controls=controls,
        eval_cases=evals, regression_cases=list(regressions.values()), incidents=incidents,
        fingerprint=fingerprint(workspace, agent, read=read))
    # A file read for want of an id (and valid after all) runs only when its id matches.
    chosen = inputs.cases.select(lambda key: matches(key.id, patterns))
    return SelectedInputs(inputs=inputs, chosen=chosen)
