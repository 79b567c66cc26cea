"""The gate, start to finish, as one ordered list of stages.

    load inputs ─▶ run evals ─▶ run checks ─▶ decide ─▶ record

Each stage takes the previous stage's artefact and returns the next. Bad input stops
the gate in the first stage (exit 2, nothing written); a check that cannot run is an
``error`` result, never a pass.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite import Progress, Redactor, ReinstateError
from gates import (
    _logging_check,  # noqa: F401 - registers the logging check
    _ratchet,  # noqa: F401 - registers the regression_ratchet check
    _verification,  # noqa: F401 - registers the control_changes check
)
from gates._attestation import gate_signer, write_attestation
from gates._checks import CHECKS, Evidence
from gates._config import Workspace
from gates._evals import run_evals
from gates._inputs import GateInputs, load_inputs
from gates._state import open_store, require_store, standing
from gates._store import StateStore, verdict_digest
from gates._verdict import CheckResult, Verdict, combine
from regressions import utc_now

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner


def run_checks(inputs: GateInputs, evidence: Evidence) -> list[CheckResult]:
    """Every registered check, in order; a check that raises is an error result."""
    results = []
    for name, check in CHECKS.items():
        try:
            results.append(check(inputs, evidence))
        except Exception as exc:  # fail closed: a broken check must not read as a pass
            where = traceback.extract_tb(exc.__traceback__)[-1]
            results.append(CheckResult(
                name=name, outcome="error", summary=f"could not run: {exc!r}",
                findings=[f"{name} raised {exc!r} at {where.filename}:{where.lineno}"],
            ))
    return results


# What a later gate or report compares byte for byte, or opens: never redacted.
UNREDACTED = ("fingerprint", "terms", "run_file")


def decide(inputs: GateInputs, checks: list[CheckResult]) -> Verdict:
    """The verdict: pass only when every check passed.

    Findings may quote what the agent said or sent; the verdict is stored, written and
    reported, so it is redacted here, after every check has decided on the raw behaviour.
    """
    return Redactor().record(Verdict(
        agent=inputs.agent.name,
        outcome=combine(c.outcome for c in checks),
        created_at=utc_now(),
        fingerprint=inputs.fingerprint,
        checks=checks,
    ), keep=UNREDACTED)


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
) -> Verdict:
    """Gate ``agent``: run every check, store the verdict with its fingerprint, return it.

    With ``against`` (a git ref such as ``origin/main``), the regression ratchet also
    compares the regression set, incidents and baselines with those at that ref. A missing
    state store is started only when the workspace shows no history, or with ``new_store``
    (a CI job that starts from an empty store by design). With a signing key (``signer``,
    else ``$REINSTATE_SIGNING_KEY``, which leaves the environment before any agent starts)
    the stored verdict is also signed: its envelope goes to
    ``.reinstate/attestations/<agent>/`` and to ``attestation`` when given.
    """
    signer = gate_signer(workspace, signer, attestation)
    # A store given by the caller (a test, an embedding process) serves every check too.
    inputs = load_inputs(workspace, agent, against=against)  # bad input first: exit 2
    if store is None:
        require_store(workspace, new_store=new_store)
    # Incidents as the audit log vouches for them: one restored only by a hand edit is
    # open, and its changes are verified again.
    vouched = standing(workspace, agent, store or open_store(workspace)).incidents
    inputs = replace(inputs, store=store, incidents=vouched)
    evidence = run_evals(inputs, trials, progress=progress)
    checks = run_checks(inputs, evidence)
    verdict = decide(inputs, checks)
    (store or open_store(workspace)).save_verdict(verdict, actor)
    if signer is not None:  # signed once stored: the envelope names the stored verdict
        write_attestation(workspace, verdict, signer, also=attestation)
    return verdict


def stored_by_this_run(workspace: Workspace, verdict: Verdict,
                       store: StateStore | None = None) -> bool:
    """Whether the store's latest verdict for the agent is exactly ``verdict``: the gate
    exits 0 only then, whatever the code it ran did to the objects in its memory."""
    try:
        latest = (store or open_store(workspace)).latest_verdict(verdict.agent)
    except ReinstateError:
        return False
    return latest is not None and verdict_digest(latest) == verdict_digest(verdict)
