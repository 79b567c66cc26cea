"""The gate, declared: its stages in order, and its built-in checks in data-flow order.

    load inputs ─▶ run evals ─▶ run checks ─▶ decide ─▶ record

Each stage takes the gate run so far and returns it with its own artefact added (the
inputs, the evidence, the check results, the verdict), as nox's workflow passes each
task's return to the next. Bad input stops the gate in the first stage (exit 2, nothing
written); a check that cannot run is an ``error`` result, never a pass.

The built-in checks are :data:`BUILT_IN_CHECKS`, always all of them, in this order: evals
first (every later check reads its evidence), then the recorded harm replayed through
each control layer, then each control change verified, then the logs, then the ratchet
that remembers the regression set. Checks from outside (plugins, users) are added with
:func:`register` and run after them.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from evalsuite import Progress, Redactor, ReinstateError
from gates._config import Workspace
from gates._errors import ContainedMidGate
from gates._gate.checks import (
    Check,
    Evidence,
    acceptance_criteria,
    evals,
    evals_as_data,
    operating_checklist,
    permission_boundary,
    review_routing,
)
from gates._gate.control_changes import control_changes
from gates._gate.evals import run_evals
from gates._gate.inputs import GateInputs, load_inputs
from gates._gate.logging_check import logging
from gates._gate.ratchet import regression_ratchet
from gates._store.access import open_store, require_store, standing
from gates._store.attestation import (
    gate_signer,
    keep_key_from_agent,
    write_attestation,
)
from gates._store.audit import one_decision
from gates._store.backends import AuditEntry, StateStore
from gates._verdict.check_results import (
    BUILT_IN,
    AnyCheckResult,
    CaseFigures,
    CheckResult,
    could_not_run,
)
from gates._verdict.verdict import Verdict, combine
from regressions import utc_now

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

    from gates._gate.ray_engine import EngineName

T = TypeVar("T")


@dataclass(frozen=True)
class GateCheck:
    """One built-in check of the gate: its name and the function that runs it."""

    name: str
    run: Callable[[GateInputs, Evidence], AnyCheckResult]
    as_data: Callable[[GateInputs, Evidence], dict[str, Any]] | None = None
    """The same result as JSON data, built without holding it whole as models (for the
    checks whose result grows with the cases); default: ``run``'s result dumped."""


BUILT_IN_CHECKS: tuple[GateCheck, ...] = (
    GateCheck("evals", evals, evals_as_data),
    GateCheck("permission_boundary", permission_boundary),
    GateCheck("acceptance_criteria", acceptance_criteria),
    GateCheck("review_routing", review_routing),
    GateCheck("operating_checklist", operating_checklist),
    GateCheck("control_changes", control_changes),
    GateCheck("logging", logging),
    GateCheck("regression_ratchet", regression_ratchet),
)
"""Every built-in check, in the order the gate runs them."""
assert [c.name for c in BUILT_IN_CHECKS] == list(BUILT_IN), "each built-in has its model"

CHECKS: dict[str, Callable[[GateInputs, Evidence], AnyCheckResult]] = {
    c.name: c.run for c in BUILT_IN_CHECKS}
"""Every check by name, in the order they run: the built-in ones, then registered ones."""


def register(name: str) -> Callable[[Check], Check]:
    """Add a check from outside the gate under ``name``; it runs after the built-in checks
    and those registered before it.

    Raises:
        ValueError: ``name`` is a built-in check's or already registered.
    """
    def add(function: Check) -> Check:
        if name in CHECKS or name in BUILT_IN:
            raise ValueError(f"a gate check named '{name}' is already registered")
        CHECKS[name] = function
        return function
    return add


def run_checks(inputs: GateInputs, evidence: Evidence) -> list[AnyCheckResult]:
    """Every built-in check, then every registered one; a check that raises is an error
    result, and so is a registered check's result that is not its own."""
    return list(_each_check(inputs, evidence, [(c.name, c.run) for c in BUILT_IN_CHECKS]))


def _checks_as_data(inputs: GateInputs, evidence: Evidence) -> list[dict[str, Any]]:
    """:func:`run_checks`' results as JSON data, each dumped as its check finished (the
    model goes at once; a built-in check with ``as_data`` builds its data itself)."""
    built_in: list[tuple[str, Callable[[GateInputs, Evidence],
                                       AnyCheckResult | dict[str, Any]]]]
    built_in = [(c.name, c.as_data or c.run) for c in BUILT_IN_CHECKS]
    return [result if isinstance(result, dict) else result.model_dump(mode="json")
            for result in _each_check(inputs, evidence, built_in)]


R = TypeVar("R")


def _each_check(inputs: GateInputs, evidence: Evidence,
                built_in: list[tuple[str, Callable[[GateInputs, Evidence], R]]]
                ) -> Iterator[R | AnyCheckResult]:
    """The built-in checks' results, then every registered one's, each as soon as its
    check has run."""
    table: list[tuple[str, Callable[[GateInputs, Evidence], R | AnyCheckResult]]] = [
        *built_in, *((name, check) for name, check in CHECKS.items() if name not in BUILT_IN)]
    for name, check in table:
        try:
            result = check(inputs, evidence)
        except Exception as exc:  # fail closed: a broken check must not read as a pass
            where = traceback.extract_tb(exc.__traceback__)[-1]
            yield could_not_run(name, f"could not run: {exc!r}", [
                f"{name} raised {exc!r} at {where.filename}:{where.lineno}"])
            continue
        if name not in BUILT_IN and not (isinstance(result, CheckResult)
                                         and result.name == name):
            yield could_not_run(name, "could not run: returned no CheckResult named "
                                      f"'{name}'", [f"{name} returned {result!r:.200}"])
            continue
        yield result


# What a later gate or report compares byte for byte, or opens: never redacted.
UNREDACTED = ("fingerprint", "terms", "control_terms", "run_file")


def decide(inputs: GateInputs, checks: list[AnyCheckResult]) -> Verdict:
    """The verdict: pass only when every check passed.

    Findings may quote what the agent said or sent; the verdict is stored, written and
    reported, so it is redacted here, after every check has decided on the raw behaviour.
    """
    return _decided(inputs, [check.model_dump(mode="json") for check in checks])


def _decided(inputs: GateInputs, checks: list[dict[str, Any]]) -> Verdict:
    """:func:`decide` on the checks' results as JSON data (each result's ``model_dump``).

    The gate hands its results over as data, each dumped as its check finished: at
    thousands of cases the results as models, their dump and the redacted verdict side by
    side were the gate's peak. The dump is this function's own: redacted in place, in the
    order a dump of the whole verdict walks (so placeholders are numbered the same), then
    validated as the verdict, the eval case rows one at a time, each row's data let go as
    its model is made (no text of the whole verdict and no parse of it beside the models:
    that pair was the gate's peak).
    """
    data = Verdict(
        agent=inputs.agent.name,
        outcome=combine(c["outcome"] for c in checks),
        created_at=utc_now(),
        fingerprint=inputs.fingerprint,
        checks=[],
    ).model_dump(mode="json")
    data["checks"] = checks  # in its own place among the fields, as the dump put it
    Redactor().value_in_place(data, keep=UNREDACTED)
    _case_rows_as_models(checks)
    verdict = Verdict.model_validate(data)  # the rows already made are taken as they are
    # The caller's list is emptied: the verdict holds it all now.
    checks.clear()
    return verdict


def _case_rows_as_models(checks: list[dict[str, Any]]) -> None:
    """Replace each eval case row (as data) in the ``evals`` result with its model, in
    place, each row's data let go as its model is made.

    Pydantic gives each validated instance its own set of the fields it was given: at
    10,000 case rows that was 7 MB of the same thirteen names. Every row that has them all
    shares one set; that is safe for a set that already holds every field: an assignment
    only adds a name it has.
    """
    evals = next((c for c in checks if c.get("name") == "evals"), None)
    data = None if evals is None else evals.get("data")
    rows = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return
    every = set(CaseFigures.model_fields)
    for index, row in enumerate(rows):
        case = CaseFigures.model_validate(row)
        if case.__pydantic_fields_set__ == every:
            case.__pydantic_fields_set__ = every
        rows[index] = case


@dataclass(frozen=True)
class GateRun:
    """One gate run on its way through the stages: what was asked, and what each stage
    made so far."""

    workspace: Workspace
    agent: str
    actor: str
    trials: int | None = None
    store: StateStore | None = None
    progress: Progress | None = None
    against: str | None = None
    new_store: bool = False
    signer: CryptoSigner | None = None
    attestation: Path | None = None
    engine: EngineName = "local"
    """Where the evals run: this process, or Ray tasks."""
    workers: int | None = None
    """Ray tasks in flight at once (default: the cluster's CPUs)."""
    inputs: GateInputs | None = None
    """Made by ``load inputs``; let go by ``decide``."""
    evidence: Evidence | None = None
    """Made by ``run evals``; let go by ``run checks`` once every check has read it."""
    checks: list[dict[str, Any]] | None = None
    """Made by ``run checks``: each result as JSON data, dumped as its check finished; let
    go by ``decide``, whose verdict holds them redacted."""
    verdict: Verdict | None = None
    """Made by ``decide``; stored (and signed) by ``record``."""
    entry: AuditEntry | None = None
    """Made by ``record``: the verdict's audit entry, whose ``detail["sha256"]`` is the
    stored text's digest (what ``check`` and ``restore`` compare the store against)."""
    contained: datetime | None = None
    """The agent's last containment when the inputs were loaded (``load inputs``)."""


def _made(artefact: T | None, stage: str) -> T:
    if artefact is None:
        raise RuntimeError(f"the gate's stages are out of order: {stage} has not run")
    return artefact


def _load_inputs(run: GateRun) -> GateRun:
    signer = gate_signer(run.workspace, run.signer, run.attestation)
    inputs = load_inputs(run.workspace, run.agent, against=run.against)  # bad input: exit 2
    if signer is not None:  # before any agent runs
        inputs = replace(inputs, workspace=keep_key_from_agent(inputs.workspace, inputs.agent,
                                                               inputs.agent_file))
    if run.store is None:
        require_store(run.workspace, new_store=run.new_store)
    # Incidents as the audit log vouches for them: one restored only by a hand edit is
    # open, and its changes are verified again. A store given by the caller (a test, an
    # embedding process) serves every check too.
    vouched = standing(run.workspace, run.agent, run.store or open_store(run.workspace))
    return replace(run, signer=signer, contained=vouched.last_contained_at(),
                   inputs=replace(inputs, store=run.store, incidents=vouched.incidents))


def _run_evals(run: GateRun) -> GateRun:
    inputs = _made(run.inputs, "load inputs")
    return replace(run, evidence=run_evals(inputs, run.trials, progress=run.progress,
                                           engine_name=run.engine, workers=run.workers))


def _run_checks(run: GateRun) -> GateRun:
    inputs, evidence = _made(run.inputs, "load inputs"), _made(run.evidence, "run evals")
    # Each result is kept as data once its check has run (the model goes), and the
    # evidence is let go once every check has read it: at thousands of cases both are
    # more than the verdict.
    return replace(run, checks=_checks_as_data(inputs, evidence), evidence=None)


def _decide(run: GateRun) -> GateRun:
    inputs, checks = _made(run.inputs, "load inputs"), _made(run.checks, "run checks")
    # The verdict holds the checks' results redacted; the raw ones are let go, and so are
    # the inputs (at thousands of cases, their files' paths, digests and packed cases
    # were some 15 MiB beside the verdict while it was stored).
    return replace(run, verdict=_decided(inputs, checks), checks=None, inputs=None)


def _record(run: GateRun) -> GateRun:
    verdict = _made(run.verdict, "decide")
    store = run.store or open_store(run.workspace)
    # A containment while the gate ran: its checks read the incidents from before it, and
    # a pass stored now would be dated after it, on controls the incident may show wrong
    # (the runtime guard takes a pass after the last containment as proof of them).
    contained = standing(run.workspace, run.agent, store).last_contained_at()
    if contained is not None and contained != run.contained:
        raise ContainedMidGate(
            f"{run.agent} was contained while its gate ran (at "
            f"{contained:%Y-%m-%d %H:%M:%S UTC}), so no verdict is stored; run the gate "
            f"again once the incident's changes are recorded")
    entry = store.save_verdict(verdict, run.actor)
    if run.signer is not None:  # signed once stored: the envelope names the stored verdict
        write_attestation(run.workspace, verdict, run.signer, also=run.attestation)
    return replace(run, entry=entry)


STAGES: tuple[tuple[str, Callable[[GateRun], GateRun]], ...] = (
    ("load inputs", _load_inputs),
    ("run evals", _run_evals),
    ("run checks", _run_checks),
    ("decide", _decide),
    ("record", _record),
)
"""The gate's stages, in order: each takes the run so far and returns it with its artefact."""


def run_gate(
    workspace: Workspace,
    agent: str,
    *,
    actor: str,
    trials: int | None = None,
    store: StateStore | None = None,
    progress: Progress | None = None,
    against: str | None = None,
    new_store: bool = False,
    signer: CryptoSigner | None = None,
    attestation: Path | None = None,
    engine: EngineName = "local",
    workers: int | None = None,
) -> Verdict:
    """Gate ``agent``: run every check, store the verdict with its fingerprint, return it.

    With ``against`` (a git ref such as ``origin/main``), the regression ratchet also
    compares the regression set, incidents and baselines with those at that ref. A missing
    state store is started only when the workspace shows no history, or with ``new_store``
    (a CI job that starts from an empty store by design). With a signing key (``signer``,
    else ``$REINSTATE_SIGNING_KEY``, which leaves the environment before any agent starts)
    the stored verdict is also signed: its envelope goes to
    ``.reinstate/attestations/<agent>/`` and to ``attestation`` when given. With
    ``engine="ray"`` the evals run as Ray tasks (at most ``workers`` at once); the verdict
    is the one the local engine gives.
    """
    workspace.require_notify()  # a verdict takes the configuration whole, [notify] included
    return recorded_run(GateRun(
        workspace=workspace, agent=agent, actor=actor, trials=trials, store=store,
        progress=progress, against=against, new_store=new_store, signer=signer,
        attestation=attestation, engine=engine, workers=workers))[0]


def recorded_run(run: GateRun) -> tuple[Verdict, AuditEntry]:
    """Run the gate's stages on ``run`` (its options: see :func:`run_gate`), returning the
    verdict and its audit entry as the store wrote it.

    The entry's ``detail["sha256"]`` is the stored text's digest: the gate's closing line
    and exit code compare the store against it instead of serialising a verdict of
    thousands of cases again.
    """
    with one_decision():  # the audit log's checkpoint tested once a gate, not once a reader
        for _, stage in STAGES:
            run = stage(run)
    return _made(run.verdict, "decide"), _made(run.entry, "record")


def stored_by_this_run(workspace: Workspace, verdict: Verdict, entry: AuditEntry,
                       store: StateStore | None = None) -> bool:
    """Whether the store's latest verdict for the agent is exactly the one this run stored
    (``entry``, its audit entry) and says what ``verdict`` says: the gate exits 0 only then.

    The stored text's digest as the save recorded it, not the verdict serialised again:
    at thousands of cases that was megabytes of text made twice more at the gate's end.
    """
    recorded = entry.detail.get("sha256")
    if not isinstance(recorded, str) or entry.detail.get("outcome") != verdict.outcome:
        return False
    try:
        stored = (store or open_store(workspace)).latest_verdict_sha256(verdict.agent)
    except ReinstateError:
        return False
    return stored == recorded
