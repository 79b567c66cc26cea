"""What a regression case holds an agent to, and how to tell that it was loosened.

Both memories of the ratchet (the state store's latest verdict, and a git ref) compare
through :func:`compare`, so a loosening means the same thing wherever it is found.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SerializerFunctionWrapHandler, model_serializer

from evalsuite import Record, predicate_module_file, predicates_named, trials_of
from gates._verdict.ratchet_approvals import RatchetApproval, RatchetKind

if TYPE_CHECKING:  # only annotated: the verdict's result models import these terms (and a
    # deploy job's `check`, which reads verdicts, parses no regression case)
    from gates._store.backends import AuditEntry
    from regressions import Incident, RegressionCase

REMOVED = "removed"


class RatchetTerms(Record):
    """What one regression case holds the agent to, as the ratchet remembers it."""

    threshold: float
    """Share of trials that must pass."""
    trials: int
    """Trials run: the case's own, else the gate's (``--trials``, else ``[gate] trials``)."""
    expect: dict[str, str]
    """Digest of each expectation (its description aside) → its name."""
    content: str
    """Digest of the input, fixtures, recorded harm and provenance."""
    predicates: dict[str, str] | None = None
    """SHA-256 of the module source each ``predicate`` expectation runs, by predicate
    (``module:function``); none when the case calls no predicate, and on terms stored
    before the code was kept (compared on what they recorded; the next gate keeps it)."""
    predicate_code: str | None = None
    """Digest of every file of the modules ``[rules] predicate_modules`` lists, when the
    case calls a predicate: the code a predicate may import (a helper beside it in its
    package, another listed module), which its own module's digest leaves out. None when
    the case calls no predicate, and on terms stored before it was kept (compared on what
    they recorded; the next gate keeps it)."""

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Terms without predicates dump as they did before the fields existed: the same
        # digest, so approvals bound to them and stored verdicts' digests still match.
        data: dict[str, Any] = handler(self)
        for field in ("predicates", "predicate_code"):
            if data.get(field, "") is None:
                del data[field]
        return data

    @property
    def digest(self) -> str:
        """Digest of these terms, which an approval is bound to."""
        return digest_of(self.model_dump(mode="json"))


class ControlTerms(Record):
    """What one control rule holds the agent to, as the ratchet remembers it."""

    rule: dict[str, Any]
    """The rule as written, its description aside: ``{"allowed": …}`` or ``{"risk": …}``
    for a tool's own settings, the JSON Schema of its arguments, a condition, a review rule
    or an acceptance criterion. Kept whole so a later gate can replay the rule as it was."""
    code: str | None = None
    """Digest of every file of the modules ``[rules] predicate_modules`` lists, when the
    rule calls a predicate: code cannot be replayed as it was, so any change to it is a
    change of the rule."""

    @property
    def digest(self) -> str:
        """Digest of these terms, which an approval is bound to."""
        return digest_of(self.model_dump(mode="json"))


def digest_of(data: Any) -> str:
    """SHA-256 of ``data`` as canonical JSON."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def terms_of(case: RegressionCase, default_trials: int,
             source: Callable[[str], str], modules: Callable[[], str]) -> RatchetTerms:
    """The terms ``case`` sets today when run with ``default_trials`` per case that sets
    none (:func:`evalsuite.trials_of`, as the engine counts), its predicates' code read
    through ``source`` (a module file from the workspace root → its SHA-256, ``missing``
    when there is none) and ``modules`` (the digest of every file of the listed predicate
    modules), asked only when the case calls a predicate."""
    rest = case.model_dump(mode="json", exclude={"description", "tags", "expect", "threshold",
                                                 "trials"})
    # Fields added since the first cases were captured leave the digest alone at their
    # defaults, so upgrading reinstate never makes an unchanged case look changed.
    if not case.strict:
        rest.pop("strict", None)
    if case.trigger is None:
        rest.pop("trigger", None)
    for step in rest.get("recorded", {}).get("steps", []):
        # A result logged as JSON text is digested as logged, not as the value it is read as.
        text = step.pop("result_text", None) if step.get("kind") == "tool_result" else None
        if text is not None:
            step["result"] = text
    called = sorted({c.predicate for _, c in predicates_named(case.expect)})
    return RatchetTerms(
        threshold=case.threshold,
        trials=trials_of(case, default_trials),
        expect={digest_of(c.model_dump(mode="json", exclude={"description"})): c.name
                for c in case.expect},
        content=digest_of(rest),
        predicates={p: source(predicate_module_file(p)) for p in called} or None,
        predicate_code=modules() if called else None,
    )


def removal_key(then: RatchetTerms | None) -> str:
    """What approving a case's removal is bound to: the terms removed, so an approval never
    covers removing another case given the same id later (an incident id opened again after
    its file was deleted captures ``INC-1-1`` anew). ``removed`` alone where the memory
    holds no terms (a case only an incident's history names, or removed before)."""
    return REMOVED if then is None else f"{REMOVED}:{then.digest}"


A = TypeVar("A")  # an approval: an audit entry, or an approvals file's record


def approval_of(loosening: Loosening, exact: A | None,
                approved: Iterable[tuple[str, str, A]]) -> A | None:
    """The approval of ``loosening``: ``exact`` (the one bound to its very key); for a case
    the memory holds no terms of any more (``removed`` alone), the latest approved removal
    of the case among ``approved`` (case, terms, approval), as the approval that let it
    go."""
    if exact is not None or loosening.key != REMOVED:
        return exact
    return next((approval for case, terms, approval in reversed(list(approved))
                 if case == loosening.case and terms.startswith(REMOVED)), None)


def captured_cases(incident: Incident) -> set[str]:
    """Case ids ``incident``'s history records as captured: each must still exist."""
    return {event.case for event in incident.history
            if event.action == "capture" and event.case is not None}


@dataclass(frozen=True)
class Loosening:
    """A regression case removed or loosened (or, against a git ref, an incident file or its
    baseline deleted or changed) since the ratchet last held it."""

    case: str
    """The case id; the incident id for ``incident-deleted`` and ``baseline-changed``."""
    what: str
    """What changed, in words."""
    key: str
    """``removed:<digest>`` (``deleted:<SHA-256>``), or the digest of the case's terms (the
    baseline's files) today: what an approval is bound to; ``removed`` alone for a case
    the memory holds no terms of (:func:`removal_key`)."""
    approval: AuditEntry | RatchetApproval | None = None
    """The approval on record for exactly this change, if any."""
    kind: RatchetKind = "loosened"
    """``removed``, ``loosened``, ``incident-deleted`` or ``baseline-changed``."""
    since: str = ""
    """For ``loosened``: the digest of the terms the case was held to before (the memory's),
    which an approval in the audit log is bound to as well as to ``key``; empty otherwise."""


def compare(remembered: dict[str, RatchetTerms], captured: set[str],
            today: dict[str, RatchetTerms]) -> list[Loosening]:
    """Every case in ``remembered`` or ``captured`` that is gone or looser ``today``."""
    found = []
    for case_id in sorted(set(remembered) | captured):
        now, then = today.get(case_id), remembered.get(case_id)
        if now is None:
            found.append(Loosening(case_id, "removed from the regression set",
                                   removal_key(then), kind="removed"))
            continue
        if then is None:
            continue
        what = []
        if now.threshold < then.threshold:
            what.append(f"threshold lowered from {then.threshold:g} to {now.threshold:g}")
        if now.trials < then.trials:
            what.append(f"trials lowered from {then.trials} to {now.trials}")
        what += [f"expectation {name} removed or changed"
                 for digest, name in sorted(then.expect.items(), key=lambda i: i[1])
                 if digest not in now.expect]
        if now.content != then.content:
            what.append("input, tool fixtures or recorded harm changed")
        # Code cannot be told tighter from looser: any change to what a remembered
        # predicate runs is a change of the case's terms. Terms stored before the code
        # was kept (None) are compared on what they recorded.
        code = now.predicates or {}
        changed = [f"code of predicate {name} changed ({predicate_module_file(name)}; code "
                   f"is not told tighter from looser, so any change needs an approval)"
                   for name, digest in sorted((then.predicates or {}).items())
                   if name in code and code[name] != digest]
        # What a predicate runs is its module and whatever that imports: any listed module
        # (a helper beside it in its package), read from the workspace. A helper edited to
        # answer otherwise changes the case as surely as the predicate's own file.
        if not changed and then.predicate_code is not None \
                and now.predicate_code not in (None, then.predicate_code):
            names = ", ".join(sorted(then.predicates or {}))
            changed.append(f"code that predicate {names} may import changed (a file of [rules] "
                           f"predicate_modules; code is not told tighter from looser, so any "
                           f"change needs an approval)")
        what += changed
        if what:
            found.append(Loosening(case_id, "; ".join(what), now.digest, since=then.digest))
    return found
