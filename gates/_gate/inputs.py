"""Everything a gate run reads, loaded and cross-checked before anything runs.

Bad input stops the gate here with exit 2 and nothing written.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock

from evalsuite import (
    AgentSpec,
    EvalCase,
    InvalidInput,
    PackedCases,
    case_files,
    did_you_mean,
    json_path,
    line_of,
    load_cases,
    load_model,
    predicates_named,
    read_cases,
    read_text,
    tools_named,
)
from gates._config import Workspace
from gates._controls.files import Controls, PredicateBinder
from gates._gate.control_ratchet import check_rule_paths
from gates._gate.ratchet_git import RefSnapshot, read_ref
from gates._store.backends import StateStore
from gates._verdict.fingerprint import Fingerprint, fingerprint
from regressions import Incident, RegressionCase


@dataclass(frozen=True)
class GateInputs:
    """The agent, its controls, its cases and its incidents, as read at the start of a gate."""

    workspace: Workspace
    agent: AgentSpec
    agent_file: Path
    controls: Controls
    eval_cases: PackedCases[EvalCase]
    """The eval suite, held packed: read a case by iterating or indexing (each read
    unpacks a fresh model), its id and tags through ``keys``."""
    regression_cases: list[RegressionCase]
    incidents: list[Incident]
    fingerprint: Fingerprint
    store: StateStore | None = None
    """The state store the gate was given, when not the workspace's own."""
    against: RefSnapshot | None = None
    """The regression set, incidents and baselines at the git ref the ratchet compares with
    (``--against``), read before anything runs."""

    @property
    def cases(self) -> PackedCases[EvalCase]:
        """The eval suite and the regression set together (the regression cases are added
        packed too, so iterating unpacks one case at a time)."""
        return self.eval_cases + self.regression_cases


# Reads of a workspace that another process keeps changing, before giving up.
_READS = 3


def regression_set_lock(workspace: Workspace, agent: str) -> FileLock:
    """The lock a capture holds while it changes ``agent``'s regression set, and a gate
    while it reads it."""
    workspace.lock_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(_lock_path(workspace, agent), timeout=30)


def _lock_path(workspace: Workspace, agent: str) -> Path:
    return workspace.lock_dir / f"{agent}.regressions.lock"


def _reading_lock(workspace: Workspace, agent: str) -> AbstractContextManager[object]:
    """The regression-set lock for a reader, once a writer has made it; reading writes
    nothing, and before any capture there is no writer to wait for (a capture that makes
    the lock while the gate reads is caught by the fingerprint check, and the next read
    waits for it)."""
    path = _lock_path(workspace, agent)
    return FileLock(path, timeout=30) if path.exists() else nullcontext()


def load_inputs(workspace: Workspace, agent: str, *, against: str | None = None) -> GateInputs:
    """Read and validate everything the gate needs for ``agent``.

    The fingerprint is taken before and after reading: when another process changed a
    file in between (a capture, a merge), the inputs are read again, so a verdict is
    never bound to files it did not read. With ``against`` (a git ref), the regression
    set, incidents and baselines at that ref are read too, for the ratchet.
    """
    workspace.require_agent(agent)
    reference = read_ref(workspace, agent, against) if against is not None else None
    for _ in range(_READS):
        with _reading_lock(workspace, agent):
            # Case files are hashed once, from the bytes the loading parses: before the
            # load they are only listed, so what changed in between is every other file's
            # digest, or which case files there are.
            listed = {p: _LISTED for d in (workspace.evals_dir(agent),
                                           workspace.regressions_dir(agent))
                      for p in case_files(d)}
            before = fingerprint(workspace, agent, read=listed)
            read: dict[Path, str] = {}
            inputs = _load(workspace, agent, read)
        changed = _changed(before, inputs.fingerprint, _read_names(workspace, agent, read))
        if not changed:
            return replace(inputs, against=reference)
    raise InvalidInput(None, "", f"the files of {agent} kept changing while the gate read them "
                                 f"({', '.join(changed[:3]) or 'unknown'}); run it again")


# The digest a case file listed but not yet read stands in with, before the load.
_LISTED = "listed, not read"


def _read_names(workspace: Workspace, agent: str, read: dict[Path, str]) -> set[str]:
    """The workspace paths of the case files the load read, named as fingerprints name
    them (``case_digests``)."""
    names: set[str] = set()
    for folder in (workspace.evals_dir(agent), workspace.regressions_dir(agent)):
        prefix = workspace.relative(folder)
        names |= {f"{prefix}/{p.name}" for p in read if p.parent == folder}
    return names


def _changed(before: Fingerprint, after: Fingerprint, read: set[str]) -> list[str]:
    """Workspace paths that differ between the fingerprint taken before the load (case
    files listed only) and the one taken after (case files as parsed): a case file counts
    as unchanged only when the load read it and both fingerprints list it."""
    paths = sorted(set(before.files) | set(after.files))
    return [p for p in paths if before.files.get(p) != after.files.get(p)
            and not (before.files.get(p) == _LISTED and p in after.files and p in read)]


def _agent_spec(workspace: Workspace, agent: str) -> tuple[Path, AgentSpec]:
    """The agent's agent.yaml and its spec, which must name that agent."""
    agent_file = workspace.agent_dir(agent) / "agent.yaml"
    spec = load_model(agent_file, AgentSpec)
    if spec.name != agent:
        raise InvalidInput(agent_file, "$.name", f"expected '{agent}', got '{spec.name}'",
                           line=line_of(read_text(agent_file), ["name"]))
    return agent_file, spec


def _refuse_shared_ids(eval_ids: Iterable[str],
                       regressions: dict[Path, RegressionCase]) -> None:
    """A regression case may not share its id with an eval case (the first one named)."""
    clash = set(eval_ids) & {c.id for c in regressions.values()}
    if clash:
        case_id = sorted(clash)[0]
        path = next(p for p, c in regressions.items() if c.id == case_id)
        raise InvalidInput(path, "$.id", f"case id '{case_id}' is also used in the eval suite")


def _load(workspace: Workspace, agent: str, read: dict[Path, str]) -> GateInputs:
    workspace.require_agent(agent)
    agent_file, spec = _agent_spec(workspace, agent)
    controls = workspace.controls(agent)
    check_rule_paths(controls)  # the ratchet holds each rule by its path: one rule a path
    bind = PredicateBinder(workspace.root, workspace.config.rules.predicate_modules)
    # Each eval case is checked while it is a model, then packed: at thousands of case
    # files their models held at once were a third of the gate's memory.
    # A case's tools and predicates are still reported after every file's parse errors,
    # the clash of ids and the incidents, as when the cases were checked after loading.
    evals: PackedCases[EvalCase] = PackedCases()
    unchecked: InvalidInput | None = None
    for path, case in read_cases(workspace.evals_dir(agent), EvalCase, agent, digests=read):
        if unchecked is None:
            try:
                _check_case(path, case, controls, bind)
            except InvalidInput as exc:
                unchecked = exc
        evals.append(case)
    regressions = load_cases(workspace.regressions_dir(agent), RegressionCase, agent,
                             digests=read)
    _refuse_shared_ids(evals.ids, regressions)
    incidents = workspace.incidents().all(agent)
    _check_incidents(workspace, regressions, {i.id for i in incidents})
    if unchecked is not None:
        raise unchecked
    for path, case in regressions.items():
        _check_case(path, case, controls, bind)
    return GateInputs(
        workspace=workspace,
        agent=spec,
        agent_file=agent_file,
        controls=controls,
        eval_cases=evals,
        regression_cases=list(regressions.values()),
        incidents=incidents,
        fingerprint=fingerprint(workspace, agent, read=read),
    )


def _check_incidents(workspace: Workspace, cases: dict[Path, RegressionCase],
                     known: set[str]) -> None:
    """Every regression case's incident is on file: without it, its RCA and changes would
    silently stop counting."""
    for path, case in cases.items():
        incident = case.provenance.incident
        if incident not in known:
            where = workspace.relative(workspace.incidents().path(incident))
            raise InvalidInput(path, "$.provenance.incident",
                               f"incident {incident} has no record ({where} is missing or is "
                               f"another agent's); restore it from version control")


def _check_case(path: Path, case: EvalCase, controls: Controls, bind: PredicateBinder) -> None:
    """The tools a case names are known; its predicates are bound to their functions; a
    regression case gives the agent the input it recorded."""
    if isinstance(case, RegressionCase):
        problem = case.captured_input_problem()
        if problem is not None:
            loc, expected = problem
            raise InvalidInput(path, json_path(loc), f"expected {expected}: a regression "
                               f"case's input is the recorded run's, up to its trigger",
                               line=line_of(read_text(path), loc))
    _check_tools(path, case, controls)
    for index, criterion in predicates_named(case.expect):
        bind(criterion, criterion.predicate, path, ["expect", index, "predicate"])


def _check_tools(path: Path, case: EvalCase, controls: Controls) -> None:
    """A case may only name tools the permissions know: a typo there would never match."""
    known = controls.permissions.tools
    named: list[tuple[list[str | int], str]] = [
        (["expect", i, "tool"], tool) for i, tool in tools_named(case.expect)
    ]
    named += [(["tools", i, "tool"], f.tool) for i, f in enumerate(case.tools)]
    for loc, tool in named:
        if tool not in known:
            raise InvalidInput(
                path, json_path(loc),
                f"unknown tool '{tool}': not in permissions.yaml" + did_you_mean(tool, known),
                line=line_of(read_text(path), loc),
            )
