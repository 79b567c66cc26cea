"""The ratchet on the controls: a control rule a gate held the agent to is never dropped
or loosened without an approval on record.

A gate can pass on weakened controls: the fixed agent no longer attempts the calls a
deleted rule stopped, and another rule still stops the recorded harm. So each verdict's
``regression_ratchet`` check keeps, beside the regression set's terms, every control rule
of the agent as written (:class:`ControlTerms`, by the path decisions name it by), and the
next gate compares today's controls with them:

- a rule removed (a ``deny_when`` or ``review_when`` condition, a review rule, an
  acceptance criterion, a tool's argument schema), a tool newly allowed, or a tool rated
  less risky (review rules route on risk): loosened;
- a rule changed: every recorded step (each regression case's recorded run, each run of
  the gate's evals) is replayed through the rule as it was and as it is, each alone. A
  step the rule stopped before and lets through now is a loosening. A change passes only
  when some step of a vouched regression case's recorded run (one an incident's history
  records as captured, or one the last gate held; not the agent's own runs, which are
  what it chose to do, nor a case written by hand beside the change) is stopped now and
  was not before; a change no such step tells apart needs an approval, and so does any
  change to a rule that calls a predicate (code is not told tighter from looser);
- a rule added, a tool removed or denied, a tool rated riskier: taken as it is.

A loosening fails the gate until it is undone or approved (``reinstate ratchet approve
AGENT RULE``); an unapproved one keeps the old terms, so every later gate fails too.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evalsuite import History, InvalidInput, Output, Step, ToolCall
from gates._controls.conditions import Condition
from gates._controls.files import (
    RISKS,
    Acceptance,
    Controls,
    Permissions,
    ReviewRouting,
    ReviewRule,
)
from gates._controls.judge import STRENGTH, Judge, strongest
from gates._controls.rule import one_rule
from gates._verdict.ratchet_terms import REMOVED, ControlTerms, Loosening, digest_of

NOT_ALLOWED = ControlTerms(rule={"allowed": False})
"""What a tool newly allowed without approval is held to: as it was, unknown and denied."""


@dataclass(frozen=True)
class RecordedRun:
    """Steps recorded in one run, and the context the agent had: what a changed rule is
    replayed on."""

    steps: Sequence[Step]
    context: Mapping[str, Any]
    case: str | None
    """The regression case whose recorded run this is; None for a run of the agent under
    test, which never shows a change tightened (its runs are whatever it chose to do)."""


@dataclass(frozen=True)
class _Rule:
    path: str
    """Where decisions name the rule (an alias :func:`one_rule` accepts)."""
    kind: str
    """``allowed``, ``risk``, ``arguments``, ``deny_when``, ``review_when``, ``review`` or
    ``acceptance``."""
    tool: str
    terms: ControlTerms


def check_rule_paths(controls: Controls) -> None:
    """Refuse ``controls`` when two of their rules share a path (see :func:`_rules`), before
    a gate runs anything: the file named, as any other bad input."""
    for _ in _rules(controls.permissions, controls.review, controls.acceptance, "",
                    controls.directory):
        pass


def _rules(permissions: Permissions, review: ReviewRouting, acceptance: Acceptance,
           modules: str, directory: Path | None = None) -> Iterator[_Rule]:
    """Every rule of the three files, each at its own path; ``modules`` is the digest of
    the predicate modules' files, kept with each rule that calls a predicate.

    Raises:
        InvalidInput: two rules at one path (two conditions or review rules given one id,
            or a dotted tool name that spells another tool's rule): the memory keeps one
            rule per path, so the other could be taken out unseen by the next gate.
    """
    seen: dict[str, str] = {}
    for rule in _each_rule(permissions, review, acceptance, modules):
        if rule.path in seen:
            file = "review.yaml" if rule.kind == "review" else "permissions.yaml"
            place = "$.rules" if rule.kind == "review" else f"$.tools[{rule.tool!r}]"
            raise InvalidInput(
                directory / file if directory is not None else file, place,
                f"one rule per path, but two rules ({seen[rule.path]}, {rule.kind}) are at "
                f"{rule.path} (two rules with one id, or a tool named like another tool's "
                f"rule): the ratchet could hold only one of them; rename one")
        seen[rule.path] = rule.kind
        yield rule


def _each_rule(permissions: Permissions, review: ReviewRouting, acceptance: Acceptance,
               modules: str) -> Iterator[_Rule]:
    def terms(rule: dict[str, Any]) -> ControlTerms:
        return ControlTerms(rule=rule, code=modules if rule.get("predicate") else None)

    for tool, permission in permissions.tools.items():
        base = f"{_TOOLS}{tool}"
        yield _Rule(f"{base}.allowed", "allowed", tool, terms({"allowed": permission.allowed}))
        yield _Rule(f"{base}.risk", "risk", tool, terms({"risk": permission.risk}))
        if permission.arguments is not None:
            yield _Rule(f"{base}.arguments", "arguments", tool,
                        terms({"arguments": permission.arguments}))
        for field in ("deny_when", "review_when"):
            for condition in getattr(permission, field):
                yield _Rule(f"{base}.{field}.{condition.id}", field, tool, terms(
                    condition.model_dump(mode="json", exclude={"description"},
                                         exclude_none=True)))
    for rule in review.rules:
        yield _Rule(f"review.rules.{rule.id}", "review", "", terms(
            rule.model_dump(mode="json", exclude={"description"}, exclude_none=True)))
    for criterion in acceptance.criteria:
        yield _Rule(f"acceptance.{criterion.name}", "acceptance", "", terms(
            criterion.model_dump(mode="json", exclude={"description"}, exclude_none=True)))


def control_terms(permissions: Permissions, review: ReviewRouting, acceptance: Acceptance,
                  modules: str, directory: Path | None = None) -> dict[str, ControlTerms]:
    """Each rule of the three control files by its path, as the ratchet remembers it;
    ``modules`` is the digest of the predicate modules' files (kept with each rule that
    calls a predicate); ``directory`` names the files in an error (:func:`_rules`)."""
    return {rule.path: rule.terms
            for rule in _rules(permissions, review, acceptance, modules, directory)}


def terms_today(controls: Controls, modules: str) -> dict[str, ControlTerms]:
    """:func:`control_terms` of ``controls``."""
    return control_terms(controls.permissions, controls.review, controls.acceptance, modules)


def compare_controls(held: Mapping[str, ControlTerms], controls: Controls, modules: str,
                     runs: Iterable[RecordedRun], vouched: Collection[str]) -> list[Loosening]:
    """Every rule of ``held`` that ``controls`` dropped or loosened, and every tool they
    newly allow, each as a loosening an approval is bound to (its path as the case).

    Only the recorded runs of the regression cases in ``vouched`` (those the memory held,
    or an incident's history records as captured) show a changed rule tighter: a case
    written by hand beside the change is whatever its author wrote."""
    today = {rule.path: rule for rule in _rules(controls.permissions, controls.review,
                                                  controls.acceptance, modules)}
    recorded = list(runs)
    found = []
    # Whose rule a remembered path is, read from the path and the terms together: a dotted
    # tool name (``issue_refund.deny_when``) or a condition id (``allowed``) must not make
    # another tool's rules look like those of a tool that is denied now.
    owners = {path: _owner(path, then) for path, then in held.items()}
    known = {owner[1] for owner in owners.values() if owner and owner[0] == "allowed"}
    allowed = {tool for tool, permission in controls.permissions.tools.items()
               if permission.allowed}
    for path, then in sorted(held.items()):
        owner = owners[path]
        if owner and owner[1] in known and owner[1] not in allowed:
            continue  # the tool is gone or denied: every call to it is, whatever its rules
        rule = today.get(path)
        if rule is None or (path.startswith(_TOOLS) and (owner is None
                                                         or owner != (rule.kind, rule.tool))):
            # Gone, or another kind of rule (of another tool) at its path now.
            found.append(Loosening(path, "removed from the controls", f"{REMOVED}:{then.digest}",
                                   kind="removed"))
            continue
        now = rule.terms
        # Compared as JSON, never by Python's ==, for which true == 1 (enum: [true] is not
        # enum: [1]).
        if now.digest == then.digest or (now.code == then.code and digest_of(
                _canonical(now.rule)) == digest_of(_canonical(then.rule))):
            continue  # unchanged, or only reordered where order decides nothing
        what = _loosened(rule, then, controls, recorded, vouched)
        if what:
            # Allowing a tool again is approved for the tool as it is then, every rule of
            # it: the approval never covers allowing it later with fewer rules.
            key = _tool_key(today, rule.tool) if rule.kind == "allowed" else now.digest
            found.append(Loosening(path, what, key, since=then.digest))
    for path, rule in sorted(today.items()):
        if rule.kind == "allowed" and rule.tool not in known and rule.terms.rule["allowed"]:
            found.append(Loosening(path, f"tool {rule.tool} newly allowed",
                                   _tool_key(today, rule.tool), since=NOT_ALLOWED.digest))
    return found


def _owner(path: str, terms: ControlTerms) -> tuple[str, str] | None:
    """(kind, tool) of a remembered rule of a tool, from its path and its terms; None for a
    review rule, an acceptance criterion, or terms that fit no rule at that path."""
    if not path.startswith(_TOOLS):
        return None
    rule = terms.rule
    if "id" in rule:  # a condition: its path ends in its own id
        for field in ("deny_when", "review_when"):
            end = f".{field}.{rule['id']}"
            if path.endswith(end) and len(path) > len(_TOOLS) + len(end):
                return field, path[len(_TOOLS):-len(end)]
        return None
    for kind in ("allowed", "risk", "arguments"):
        if set(rule) == {kind} and path.endswith(f".{kind}"):
            return kind, path[len(_TOOLS):-len(kind) - 1]
    return None


def _tool_key(today: Mapping[str, _Rule], tool: str) -> str:
    """Digest of every rule of ``tool`` today: what allowing it is approved for."""
    return digest_of({path: rule.terms.digest for path, rule in sorted(today.items())
                      if path.startswith(_TOOLS) and rule.tool == tool})


_TOOLS = "permissions.tools."

_UNORDERED = ("required", "enum", "type")
"""JSON Schema keywords whose lists are sets: reordering them decides nothing."""
_SUBSCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
              "propertyNames", "unevaluatedProperties", "unevaluatedItems")
_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs",
                   "definitions")


def _canonical(rule: dict[str, Any]) -> dict[str, Any]:
    """``rule`` with the lists of its argument schema that are sets sorted, so that
    reordering ``required: [a, b]`` is not a change needing an approval. A schema with a
    ``$ref`` anywhere is left as written: a reference may point into a list by position."""
    schema = rule.get("arguments")
    text = json.dumps(schema)
    if schema is None or '"$ref"' in text or 'Ref"' in text:  # $dynamicRef, $recursiveRef
        return rule
    return {**rule, "arguments": _sorted_sets(schema)}


def _sorted_sets(schema: Any) -> Any:
    """A JSON Schema with the lists of :data:`_UNORDERED` sorted, read only where
    subschemas are (never inside ``const``, ``enum`` or ``default`` values)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _UNORDERED:
        if isinstance(out.get(key), list):
            out[key] = sorted(out[key], key=lambda v: json.dumps(v, sort_keys=True))
    for key in _SUBSCHEMA:
        if key in out:
            out[key] = (_sorted_sets(out[key]) if isinstance(out[key], dict)
                        else [_sorted_sets(s) for s in out[key]]
                        if isinstance(out[key], list) else out[key])
    for key in _SUBSCHEMAS:
        if isinstance(out.get(key), list):
            out[key] = [_sorted_sets(s) for s in out[key]]  # in order: each by position
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _sorted_sets(s) for name, s in out[key].items()}
    return out


def _loosened(rule: _Rule, then: ControlTerms, controls: Controls,
              runs: list[RecordedRun], vouched: Collection[str]) -> str:
    """How ``rule`` (changed since ``then``) loosened, in words; empty when it only
    tightened."""
    if rule.kind == "allowed":
        return f"tool {rule.tool} allowed again" if rule.terms.rule["allowed"] else ""
    if rule.kind == "risk":
        before, now = then.rule["risk"], rule.terms.rule["risk"]
        lowered = RISKS.index(now) < RISKS.index(before)
        return f"tool {rule.tool} rated {now}, was {before}" if lowered else ""
    if then.rule.get("predicate") or rule.terms.rule.get("predicate"):
        return ("changed, and it calls a predicate: code is not told tighter from looser, so "
                "any change needs an approval")
    was = _with_rule(controls, rule, then.rule)
    stricter = looser = 0
    example = ""
    then_judge = Judge.of(was, one_rule(was, rule.path))
    now_judge = Judge.of(controls, one_rule(controls, rule.path))
    for run in runs:
        history = History()
        for step in run.steps:
            if isinstance(step, (ToolCall, Output)):
                before = strongest(then_judge.decide(step, history, run.context)).effect
                after = strongest(now_judge.decide(step, history, run.context)).effect
                if STRENGTH[after] < STRENGTH[before]:
                    looser += 1
                    example = example or f"{_described(step)}: {before} before, {after} now"
                elif STRENGTH[after] > STRENGTH[before] and run.case in vouched:
                    stricter += 1
            history.append(step)
    if looser:
        return (f"changed, and lets through {looser} recorded step(s) it stopped before "
                f"(e.g. {example})")
    if not stricter:
        return ("changed, and no step of a regression case's recorded run is stopped by it "
                "now and was not before (a case an incident records as captured, or one the "
                "last gate held), so the gate cannot show it is not looser; capture a case it "
                "decides, or approve it")
    return ""


def _described(step: ToolCall | Output) -> str:
    if isinstance(step, ToolCall):
        return step.describe()
    return f"output {step.content[:60]!r}"


def _with_rule(controls: Controls, rule: _Rule, written: dict[str, Any]) -> Controls:
    """``controls`` with the rule at ``rule.path`` as ``written`` (the terms kept of it)."""
    if rule.kind in ("arguments", "deny_when", "review_when"):
        permission = controls.permissions.tools[rule.tool]
        if rule.kind == "arguments":
            changed = permission.model_copy(update={"arguments": written["arguments"]})
        else:
            condition = Condition.model_validate(written)
            changed = permission.model_copy(update={rule.kind: [
                condition if c.id == condition.id else c
                for c in getattr(permission, rule.kind)]})
        tools = {**controls.permissions.tools, rule.tool: changed}
        return replace(controls, permissions=controls.permissions.model_copy(
            update={"tools": tools}))
    if rule.kind == "review":
        kept = ReviewRule.model_validate(written)
        return replace(controls, review=controls.review.model_copy(update={"rules": [
            kept if r.id == kept.id else r for r in controls.review.rules]}))
    criterion = Acceptance.model_validate({"agent": controls.acceptance.agent,
                                           "criteria": [written]}).criteria[0]
    return replace(controls, acceptance=controls.acceptance.model_copy(update={"criteria": [
        criterion if c.name == criterion.name else c for c in controls.acceptance.criteria]}))


def recorded_runs(cases: Iterable[Any], results: Iterable[Any] = ()) -> list[RecordedRun]:
    """The runs a changed rule is replayed on: each regression case's recorded run, and
    each run of the gate's evals (``CaseResult`` trials)."""
    runs = [RecordedRun(case.recorded.steps, case.input.context, case.id) for case in cases]
    runs += [RecordedRun(trial.run.steps, trial.run.context, None)
             for result in results for trial in result.trials if trial.run is not None]
    return runs

