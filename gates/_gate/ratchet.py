"""The regression ratchet: an agent's regression set only ever tightens.

Removing a regression case, or loosening one (a lower threshold, fewer trials, an
expectation dropped or changed, a predicate's code changed, its input, fixtures or
recorded harm edited), fails the gate unless an approval (who, why) is on record for
exactly that change. The trials are those the case runs with in the gate (its own, else
``--trials``, else ``[gate] trials``), counted as the engine counts them.

Where the ratchet remembers: every verdict's ``regression_ratchet`` check keeps the terms
(threshold, trials, a digest of each expectation, of each predicate's module and of the
rest of the case) of every case it held the set to, and the next gate compares today's
set with the latest verdict's. An unapproved loosening keeps the old terms, so it fails
every gate until it is undone or approved. The incident files (in git) add what survives
a fresh state store: every case an incident's history says was captured must still exist.
Approvals are ``ratchet-approval`` entries of the audit log: appended, hash-chained, never
edited, each bound to the case's terms as approved, so a later loosening needs its own.

A CI job that starts from a fresh store has no such memory: there the gate runs with
``--against REF`` and git is the memory (:mod:`gates._gate.ratchet_git`), with approvals in a
file committed with the change (:mod:`gates._verdict.ratchet_approvals`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from evalsuite import InvalidInput, load_cases
from gates._config import Workspace
from gates._controls.files import Controls
from gates._errors import StoreUnavailable
from gates._gate.checks import Evidence
from gates._gate.control_ratchet import (
    NOT_ALLOWED,
    RecordedRun,
    compare_controls,
    recorded_runs,
    terms_today,
)
from gates._gate.inputs import GateInputs, regression_set_lock
from gates._gate.ratchet_git import (
    compare_with_ref,
    ratchet_against,
    today_terms,
    workspace_modules,
)
from gates._store.access import open_store, store_exists
from gates._store.audit import last_verdict_problems, recorded, verify_audit
from gates._store.backends import AuditEntry, StateStore
from gates._verdict.check_results import (
    AgainstRef,
    ApprovedLoosening,
    Loosened,
    LostSince,
    RegressionRatchetData,
    RegressionRatchetResult,
)
from gates._verdict.ratchet_approvals import RatchetApproval, append_approvals, approvals_path
from gates._verdict.ratchet_terms import (
    Loosening,
    approval_of,
    captured_cases,
    compare,
)
from gates._verdict.stored import read_ratchet_terms
from regressions import RegressionCase, utc_now

NAME = "regression_ratchet"
APPROVAL = "ratchet-approval"


def approvals(store: StateStore, agent: str) -> dict[tuple[str, str, str], AuditEntry]:
    """The latest approval for each (case, key, terms loosened from) of ``agent``, from the
    audit log."""
    return {(e.detail.get("case", ""), e.detail.get("terms", ""), e.detail.get("from", "")): e
            for e in recorded(store, agent, (APPROVAL,))}


def _approval(approved: dict[tuple[str, str, str], AuditEntry],
              loosening: Loosening) -> AuditEntry | None:
    """The approval of ``loosening`` in the audit log (:func:`approval_of`).

    A loosening's approval is bound to the terms it loosened from as well as to those it
    loosened to: bound to the latter alone, an approval of a lower threshold also passed,
    unasked, an expectation added later and then removed (the terms were again those
    approved), and was listed as approving that removal."""
    return approval_of(loosening, approved.get((loosening.case, loosening.key, loosening.since)),
                       ((case, terms, entry) for (case, terms, _), entry in approved.items()))


_READS = 5
"""How often the ratchet reads the last verdict again while other gates keep storing theirs
between its two reads (then it errs: never a memory the log does not vouch for)."""


_NOTHING = RegressionRatchetData(terms={})
"""The memory of an agent never gated, or gated only before the ratchet."""


def _remembered(store: StateStore | None, agent: str) -> RegressionRatchetData:
    """What the agent's last stored verdict held its regression set and controls to.

    The text must be the one the audit log's last verdict entry of the agent records (its
    SHA-256), and that entry the one the store wrote last (:func:`last_verdict_problems`):
    terms edited in the stored verdict behind the log, or a verdict entry written in place
    of another to vouch for edited terms, would let a case be forgotten or loosened unseen,
    so a mismatch is an error, never a smaller memory; so is a log that records a verdict
    of the agent when none is stored (the verdicts removed).
    """
    if store is None:
        return _NOTHING
    # The text and the log are two reads: another gate may store its verdict between
    # them, so a log that moved past the text is asked again with the newer text. A text
    # that stays the same while the log records another is the store changed behind it.
    problems: list[str] = []
    vouched, digest, recorded = False, "", None  # as when every read raced another gate
    for _ in range(_READS):
        text = store.latest_verdict_text(agent)
        if text is None:
            problems = last_verdict_problems(store, agent, None)
            if not problems:
                return _NOTHING
            if store.latest_verdict_text(agent) is None:
                raise StoreUnavailable(
                    f"no verdict of {agent} is stored, but the audit log records one "
                    f"({problems[0]}): the verdicts table was changed behind the log, so the "
                    f"regression set's remembered terms cannot be trusted; run `reinstate "
                    f"audit verify` to see what changed")
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        read = read_ratchet_terms(text)
        # The verdict's own entry follows the head it was stamped with; without a readable
        # head every verdict entry of the agent is read to find the last.
        entries = store.audit(agent, actions=("verdict",), after=read[0] if read else 0)
        recorded = entries[-1].detail.get("sha256") if entries else None
        vouched = not (read is not None and not entries) and recorded in (None, digest)
        problems = last_verdict_problems(store, agent, entries[-1]) if entries else []
        if (vouched and not problems) or store.latest_verdict_sha256(agent) == digest:
            break
    if not vouched:
        raise StoreUnavailable(
            f"the last stored verdict of {agent} (sha256 {digest[:12]}…) is not the one "
            f"the audit log's last verdict entry records"
            + (f" (sha256 {str(recorded)[:12]}…)" if recorded is not None else "")
            + ": the verdicts table was changed behind the log, so the regression set's "
              "remembered terms cannot be trusted; run `reinstate audit` to see what changed")
    if problems:
        raise StoreUnavailable(
            f"the audit log's verdict entry that vouches for the last stored verdict of "
            f"{agent} is not one the store wrote ({problems[0]}), so the regression set's "
            f"remembered terms cannot be trusted; run `reinstate audit verify` to see what "
            f"changed")
    assert text is not None  # vouched: a text was read
    held = read[1] if read is not None else _held_in(store, agent, text)
    del text
    return held if held is not None else _held_before(store, agent)


def _held_in(store: StateStore, agent: str, text: str) -> RegressionRatchetData | None:
    """What a stored verdict's text remembers: nothing for a verdict from before the
    ratchet, None when its ratchet check recorded nothing (it could not run)."""
    read = read_ratchet_terms(text)
    if read is not None:
        return read[1]
    # A verdict stored before entries recorded digests, or one whose ratchet check erred:
    # read whole, as it was written.
    from gates._verdict.verdict import read_verdict

    try:
        verdict = read_verdict(text)
    except (ValueError, RecursionError) as exc:
        raise StoreUnavailable(f"a stored verdict of {agent} cannot be read ({exc}), so the "
                               f"regression set's remembered terms are unknown") from None
    check = verdict.result(RegressionRatchetResult)
    if check is None:
        return _NOTHING
    return check.data


def _held_before(store: StateStore, agent: str) -> RegressionRatchetData:
    """The terms of the last verdict before the agent's latest whose ratchet check recorded
    them: the latest one's check could not run (a store that failed mid-gate, a memory the
    log did not vouch for) and recorded none.

    Taking no terms from it would let the next gate drop or loosen any case unseen (an
    erring gate made the ratchet forget). Older verdicts are read only while the whole log
    vouches for every stored verdict (as ``reinstate audit verify`` checks them).
    """
    problems = verify_audit(store, [agent])
    if problems:
        raise StoreUnavailable(
            f"the last gate of {agent} recorded no regression set (its regression_ratchet "
            f"check could not run), and the audit log does not verify ({problems[0]}), so "
            f"the terms an earlier verdict remembers cannot be trusted; run `reinstate audit "
            f"verify` to see what changed")
    recorded = {e.detail.get("sha256") for e in store.audit(agent, actions=("verdict",))}
    back = 1
    while (text := store.latest_verdict_text(agent, back)) is not None:
        if None not in recorded and hashlib.sha256(text.encode()).hexdigest() not in recorded:
            raise StoreUnavailable(
                f"a stored verdict of {agent} is not one the audit log records: the verdicts "
                f"table was changed behind the log, so the regression set's remembered terms "
                f"cannot be trusted; run `reinstate audit verify` to see what changed")
        held = _held_in(store, agent, text)
        if held is not None:
            return held
        back += 1
    return _NOTHING


def _captured(workspace: Workspace, agent: str) -> set[str]:
    """Case ids the agent's incident histories record as captured."""
    return {case for incident in workspace.incidents().all(agent)
            for case in captured_cases(incident)}


def _store(workspace: Workspace, store: StateStore | None) -> StateStore | None:
    """The given store, else the workspace's; None while it was never written (no memory)."""
    if store is not None:
        return store
    found = open_store(workspace)
    return found if store_exists(found) else None


def ratchet_status(workspace: Workspace, agent: str, cases: list[RegressionCase] | None = None,
                   store: StateStore | None = None, trials: int | None = None,
                   controls: Controls | None = None, runs: list[RecordedRun] | None = None,
                   ) -> tuple[list[Loosening], RegressionRatchetData]:
    """Every removal and loosening since the ratchet last held ``agent``'s regression set
    and controls, each with its approval if one is recorded; and what the next verdict
    should remember.

    The cases are compared as a gate run with ``trials`` (``--trials``; default ``[gate]
    trials``) runs them, so fewer trials by any route is a loosening; each predicate
    expectation is held to its module's source today. What is remembered is never more
    trials than the workspace gives a case: one gate run with more does not raise what
    every later gate is held to. ``controls`` are the agent's as the gate loaded them
    (default: read now), compared rule by rule (:mod:`gates._gate.control_ratchet`) on
    the recorded ``runs`` (default: the regression cases' recorded runs).
    """
    workspace.require_agent(agent)
    if cases is None:
        cases = list(load_cases(workspace.regressions_dir(agent), RegressionCase, agent).values())
    today = today_terms(workspace, cases, trials)
    configured = workspace.config.gate.trials
    kept = (today if trials is None or trials <= configured
            else today_terms(workspace, cases, configured))
    controls = controls or workspace.controls(agent)
    modules = workspace_modules(workspace)
    held = _store(workspace, store)
    remembered = _remembered(held, agent)
    held_controls = remembered.control_terms or {}
    approved = approvals(held, agent) if held is not None else {}
    # No memory of the controls (never gated, or only before the ratchet held them): they
    # are recorded, nothing compared. A memory of no rule at all is one: a tool allowed
    # since is newly allowed.
    captured = _captured(workspace, agent)
    loosened = ([] if remembered.control_terms is None
                else compare_controls(held_controls, controls, modules,
                                      recorded_runs(cases) if runs is None else runs,
                                      set(remembered.terms) | captured))
    found = [replace(f, approval=_approval(approved, f))
             for f in [*compare(dict(remembered.terms), captured, today), *loosened]]
    if held is not None and any(f.approval is not None for f in found):
        # An approval lets a case or a rule be loosened: it counts only as the log vouches
        # for it (one of the agent's approvals as the store tallied them, the log whole up
        # to them), never one written in by hand.
        problems = verify_audit(held, [agent], incremental=True)
        if problems:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            raise StoreUnavailable(
                f"the audit log does not verify ({problems[0]}{more}), so the approvals "
                f"that would let {agent}'s regression set or controls loosen cannot be "
                f"trusted; run `reinstate audit verify` to see what changed")
    memory = dict(kept)
    rules = terms_today(controls, modules)
    for loosening in found:
        if loosening.approval is None and loosening.case in remembered.terms:
            memory[loosening.case] = remembered.terms[loosening.case]  # hold the old terms
        elif loosening.approval is None and loosening.case in held_controls:
            rules[loosening.case] = held_controls[loosening.case]  # hold the old rule
        elif loosening.approval is None and loosening.case in rules:
            rules[loosening.case] = NOT_ALLOWED  # a tool newly allowed: held as it was
        elif loosening.kind == "removed":
            memory.pop(loosening.case, None)
    return found, RegressionRatchetData(terms=dict(sorted(memory.items())),
                                        control_terms=dict(sorted(rules.items())))


def regression_ratchet(inputs: GateInputs, evidence: Evidence) -> RegressionRatchetResult:
    """No regression case was removed or loosened without a recorded approval (and, with
    ``--against REF``, no case, incident file or baseline file was lost since REF)."""
    agent = inputs.agent.name
    # The trials each case ran for in this gate (``--trials`` included), never a default
    # the engine did not use.
    trials = evidence.trials
    runs = recorded_runs(inputs.regression_cases, evidence.results)
    found, memory = ratchet_status(inputs.workspace, agent, inputs.regression_cases,
                                   inputs.store, trials, inputs.controls, runs)
    open_ = [f for f in found if f.approval is None]
    given = ("" if trials is None or trials == inputs.workspace.config.gate.trials
             else f" --trials {trials}")
    findings = [f"{f.case}: {f.what}; undo it, or approve it with `reinstate ratchet approve "
                f"{agent} {f.case}{given} --reason …`" for f in open_]
    done = [f for f in found if f.approval is not None]
    summary = (f"regression cases held: {len(memory.terms)}; control rules held: "
               f"{len(memory.control_terms or {})}; {len(open_)} removed or loosened "
               f"without approval" + (f", {len(done)} approved" if done else ""))
    data = memory.model_copy(update={
        "loosened": [Loosened(case=f.case, what=f.what) for f in open_],
        "approved": [_approved(f) for f in done]})
    against = inputs.against
    if against is not None:
        lost = compare_with_ref(against, inputs.workspace, agent, inputs.regression_cases,
                                inputs.incidents, trials, inputs.controls, runs)
        lost_open = [f for f in lost if f.approval is None]
        lost_done = [f for f in lost if f.approval is not None]
        approvals = inputs.workspace.relative(approvals_path(inputs.workspace, agent))
        findings += [f"{f.case}: {f.what} since {against.ref}; undo it, or approve it with "
                     f"`reinstate ratchet approve {agent} {f.case} --against {against.ref}"
                     f"{given} --reason …` and commit {approvals}" for f in lost_open]
        summary += (f"; against {against.ref} ({against.commit[:12]}): {len(against.terms)} "
                    f"cases, {len(against.incidents)} incidents, {len(lost_open)} removed, "
                    f"loosened or deleted without approval"
                    + (f", {len(lost_done)} approved" if lost_done else ""))
        data.against = AgainstRef(
            ref=against.ref, commit=against.commit,
            loosened=[LostSince(case=f.case, kind=f.kind, what=f.what) for f in lost_open],
            approved=[_approved(f) for f in lost_done],
        )
        open_ += lost_open
    return RegressionRatchetResult(outcome="fail" if open_ else "pass", summary=summary,
                                   findings=findings, data=data)


def _approved(loosening: Loosening) -> ApprovedLoosening:
    approval = loosening.approval
    assert approval is not None
    return ApprovedLoosening(case=loosening.case, kind=loosening.kind, what=loosening.what,
                             by=approval.actor, why=approval.reason, at=approval.at)


def approve_loosening(workspace: Workspace, agent: str, case_id: str, *, reason: str,
                      actor: str, store: StateStore | None = None,
                      trials: int | None = None) -> AuditEntry:
    """Record who approves removing or loosening ``case_id`` today, and why.

    The approval is bound to the case as it is now, run with ``trials`` per case that sets
    none (a gate's ``--trials``; default ``[gate] trials``), and to the terms the last gate
    held it to: loosening it further, or loosening it to the same terms from other ones
    later (an expectation added since, removed again), needs another.
    """
    if not reason.strip():
        raise InvalidInput(None, "--reason", "expected why the regression set may loosen")
    store = store or open_store(workspace)
    found, _ = ratchet_status(workspace, agent, store=store, trials=trials)
    pending = {f.case: f for f in found}
    loosening = pending.get(case_id)
    if loosening is None:
        listed = ", ".join(sorted(pending)) or "none"
        raise InvalidInput(None, "CASE_ID", f"{case_id} was not removed or loosened since the "
                                            f"last gate of {agent}: nothing to approve "
                                            f"(removed or loosened: {listed})")
    detail = {"case": case_id, "terms": loosening.key, "change": loosening.what}
    if loosening.since:  # a loosening: bound to the terms it loosens from too
        detail["from"] = loosening.since
    return store.append(actor=actor, action=APPROVAL, agent=agent, reason=reason.strip(),
                        detail=detail)


def approve_against(workspace: Workspace, agent: str, case_id: str, *, reason: str,
                    actor: str, ref: str, trials: int | None = None) -> list[RatchetApproval]:
    """Approve, in the repository, what ``case_id`` lost since git ``ref``.

    Appends one entry per unapproved change of ``case_id`` (a case id, or an incident id
    for its deleted file or changed baseline) to ``regressions/<agent>.ratchet-approvals
    .yaml``, atomically; commit that file with the change so the pull request's reviewers
    see it. Each entry is bound to the terms as they are now (run with ``trials`` per case
    that sets none, as :func:`approve_loosening`): a further loosening needs another.

    Raises:
        InvalidInput: no reason, nothing of ``case_id`` to approve, or see
            :func:`ratchet_against`.
    """
    if not reason.strip():
        raise InvalidInput(None, "--reason", "expected why the regression set may loosen")
    pending = [f for f in ratchet_against(workspace, agent, ref, trials)
               if f.approval is None]
    mine = [f for f in pending if f.case == case_id]
    if not mine:
        listed = ", ".join(sorted({f.case for f in pending})) or "none"
        raise InvalidInput(None, "CASE_ID", f"{case_id} lost nothing since {ref} that is not "
                                            f"approved: nothing to approve (not approved: "
                                            f"{listed})")
    at = utc_now().replace(microsecond=0)
    entries = [RatchetApproval(case=f.case, kind=f.kind, terms=f.key, loosened_from=f.since or None,
                               change=f.what, actor=actor, reason=reason.strip(), at=at)
               for f in mine]
    with regression_set_lock(workspace, agent):
        append_approvals(workspace, agent, entries)
    return entries
