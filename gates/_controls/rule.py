"""One rule alone: ``--rule PATH`` narrows the controls to the rule it names.

Every rule has the path replays name it by (``permissions.tools.issue_refund.deny_when.
too-large``, ``review.rules[1].large-refund``, ``acceptance.no-card-numbers``); an author
may also write it by position (``deny_when[0]``, ``review.rules[1]``, ``acceptance.
criteria[0]``) or by id (``review.rules.large-refund``). The narrowed controls keep only
that rule (and, for a review rule, the acceptance criteria it may ask about); whatever
else still decides is masked to allow, so only the named rule ever stops a step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from evalsuite import Criterion, InvalidInput, did_you_mean
from gates._controls.files import Controls, ReviewRule, ToolPermission
from gates._controls.policy import Decision


@dataclass(frozen=True)
class OneRule:
    """The controls narrowed to one rule, and how to read what they decide."""

    rule: str
    """The rule's path, as decisions name it."""
    controls: Controls
    rename: dict[str, str]
    """Paths the narrowed controls give, mapped to the rule's path in the full controls."""

    def only(self, decision: Decision) -> Decision:
        """The decision if the rule made it; otherwise allow."""
        rule = self.rename.get(decision.rule, decision.rule)
        if decision.effect == "allow" or rule == self.rule:
            return decision if rule == decision.rule else decision.model_copy(
                update={"rule": rule})
        return Decision(effect="allow", rule=decision.rule.split(".")[0],
                        reason=f"only {self.rule} decides")


def rule_paths(controls: Controls) -> dict[str, str]:
    """Every way to name each rule of ``controls``, mapped to the path decisions give."""
    return {alias: canonical for canonical, (aliases, _) in _rules(controls).items()
            for alias in aliases}


# What a rule is: ("permission", tool, field, condition id), ("review", index),
# ("acceptance", criterion name) or ("unknown_tool",).
_Where = tuple[str, ...]


def _rules(controls: Controls) -> dict[str, tuple[list[str], _Where]]:
    rules: dict[str, tuple[list[str], _Where]] = {
        "permissions.unknown_tool": (["permissions.unknown_tool"], ("unknown_tool",))}
    for tool, permission in controls.permissions.tools.items():
        base = f"permissions.tools.{tool}"
        rules[f"{base}.allowed"] = ([f"{base}.allowed"], ("permission", tool, "allowed", ""))
        if permission.arguments is not None:
            rules[f"{base}.arguments"] = ([f"{base}.arguments"],
                                          ("permission", tool, "arguments", ""))
        for field in ("deny_when", "review_when"):
            for index, condition in enumerate(getattr(permission, field)):
                canonical = f"{base}.{field}.{condition.id}"
                rules[canonical] = ([canonical, f"{base}.{field}[{index}]",
                                     f"{base}.{field}[{index}].{condition.id}"],
                                    ("permission", tool, field, condition.id))
    for index, review in enumerate(controls.review.rules):
        canonical = f"review.rules[{index}].{review.id}"
        rules[canonical] = ([canonical, f"review.rules[{index}]", f"review.rules.{review.id}"],
                            ("review", str(index)))
    for index, criterion in enumerate(controls.acceptance.criteria):
        canonical = f"acceptance.{criterion.name}"
        rules[canonical] = ([canonical, f"acceptance.criteria[{index}]",
                             f"acceptance.criteria.{criterion.name}",
                             f"acceptance.criteria[{index}].{criterion.name}"],
                            ("acceptance", criterion.name))
    return rules


def _blank(controls: Controls) -> dict[str, ToolPermission]:
    return {tool: permission.model_copy(update={
        "allowed": True, "arguments": None, "deny_when": [], "review_when": []})
        for tool, permission in controls.permissions.tools.items()}


def same_rule(controls: Controls, rule: str) -> OneRule:
    """``controls`` narrowed to the rule another set of controls calls ``rule`` (a path as
    decisions give it); where these controls lack it, nothing decides: everything allows."""
    if rule in rule_paths(controls):
        return one_rule(controls, rule)
    narrowed = dataclasses.replace(
        controls,
        permissions=controls.permissions.model_copy(update={"tools": _blank(controls)}),
        review=controls.review.model_copy(update={"rules": []}),
        acceptance=controls.acceptance.model_copy(update={"criteria": []}),
    )
    return OneRule(rule=rule, controls=narrowed, rename={})


def one_rule(controls: Controls, path: str) -> OneRule:
    """``controls`` narrowed to the rule at ``path``.

    Raises:
        InvalidInput: no rule has that path; the message lists the paths there are.
    """
    rules = _rules(controls)
    paths = rule_paths(controls)
    canonical = paths.get(path)
    if canonical is None:
        raise InvalidInput(None, "--rule", f"no rule '{path}' in the controls of "
                           f"{controls.permissions.agent}" + did_you_mean(path, list(paths))
                           + f"; rules: {', '.join(sorted(rules))}")
    where = rules[canonical][1]
    blank = _blank(controls)
    review_rules: list[ReviewRule] = []
    criteria: list[Criterion] = []
    rename: dict[str, str] = {}
    if where[0] == "permission":
        _, tool, field, condition_id = where
        full = controls.permissions.tools[tool]
        if field in ("allowed", "arguments"):
            blank[tool] = blank[tool].model_copy(update={field: getattr(full, field)})
        else:
            blank[tool] = blank[tool].model_copy(update={
                field: [c for c in getattr(full, field) if c.id == condition_id]})
    elif where[0] == "review":
        kept = controls.review.rules[int(where[1])]
        review_rules = [kept]
        criteria = list(controls.acceptance.criteria)  # a rule may route on a failed one
        rename[f"review.rules[0].{kept.id}"] = canonical
    elif where[0] == "acceptance":
        criteria = [c for c in controls.acceptance.criteria if c.name == where[1]]
    narrowed = dataclasses.replace(
        controls,
        permissions=controls.permissions.model_copy(update={"tools": blank}),
        review=controls.review.model_copy(update={"rules": review_rules}),
        acceptance=controls.acceptance.model_copy(update={"criteria": criteria}),
    )
    return OneRule(rule=canonical, controls=narrowed, rename=rename)
