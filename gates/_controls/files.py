"""The agent's control layers, as files a team keeps in git under ``agents/<agent>/``.

``permissions.yaml`` (the tool permission boundary), ``acceptance.yaml`` (acceptance
criteria), ``review.yaml`` (what reaches a human first) and ``checklist.yaml`` (the
operating checklist).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from evalsuite import (
    Criterion,
    InvalidInput,
    Record,
    check_expression,
    check_json_schema,
    check_regex,
    did_you_mean,
    json_path,
    line_of,
    load_model,
    load_predicate,
    parse_model,
    parse_yaml,
    predicates_named,
    read_text,
    tools_named,
)
from gates._controls.conditions import CALL_VARIABLES, OUTPUT_VARIABLES, RULE_ID, Condition

Risk = Literal["low", "medium", "high", "critical"]
RISKS: tuple[Risk, ...] = ("low", "medium", "high", "critical")
CONTROL_FILES = ("permissions.yaml", "acceptance.yaml", "review.yaml", "checklist.yaml")


def _schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else check_json_schema(value)


class ToolPermission(Record):
    """What the agent may do with one tool.

    A call is denied when the tool is not allowed, its arguments break ``arguments``, or
    a ``deny_when`` condition holds; otherwise it goes to review when a ``review_when``
    condition holds; otherwise it is allowed.
    """

    allowed: bool
    """Whether the agent may call the tool at all."""
    risk: Risk
    """How much harm one wrong call can do."""
    description: str = ""
    """What the tool does."""
    arguments: dict[str, Any] | None = None
    """JSON Schema every call's arguments must satisfy; a call outside it is denied."""
    deny_when: list[Condition] = Field(default_factory=list)
    """Conditions under which a call is denied, e.g. a refund above the looked-up total."""
    review_when: list[Condition] = Field(default_factory=list)
    """Conditions under which an allowed call goes to a human first."""

    _check = field_validator("arguments")(_schema)


class Permissions(Record):
    """``permissions.yaml``: the tool permission boundary. Tools not listed are denied."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    agent: str
    """The agent these permissions are for."""
    tools: dict[str, ToolPermission]
    """Every tool the agent knows, by name."""


class Acceptance(Record):
    """``acceptance.yaml``: what every output and tool call of the agent must meet."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    agent: str
    """The agent these criteria are for."""
    criteria: list[Criterion] = Field(default_factory=list)
    """The criteria; each needs an id so verdicts and review rules can name it."""

    @model_validator(mode="after")
    def _ids(self) -> Acceptance:
        seen = set()
        for criterion in self.criteria:
            if criterion.id is None:
                raise ValueError("every acceptance criterion needs an id")
            if criterion.id in seen:
                raise ValueError(f"duplicate criterion id '{criterion.id}'")
            seen.add(criterion.id)
        return self


class ReviewRule(Record):
    """One reason a tool call or an output must reach a human before it takes effect.

    A rule matches when every condition it sets holds.
    """

    id: str = Field(pattern=RULE_ID)
    """Name of the rule, shown as the deciding rule."""
    description: str = ""
    """Why these need a human."""
    applies_to: Literal["tool_call", "output"]
    """Whether the rule routes tool calls or outputs."""
    tool: str | None = None
    """Only calls to this tool (tool_call rules)."""
    min_risk: Risk | None = None
    """Only calls to tools rated at least this risky (tool_call rules)."""
    arguments: dict[str, Any] | None = None
    """Only calls whose arguments match this JSON Schema (tool_call rules)."""
    output_matches: str | None = None
    """Only outputs matching this regular expression, in RE2 syntax (no backreferences or
    lookaround) (output rules)."""
    failed_criterion: str | None = None
    """Only when this acceptance criterion fails, or ``any`` of them."""
    expression: str | None = None
    """Only when this CEL expression holds; tool_call rules see ``tool``, ``args``,
    ``history``, ``context``, ``user_inputs``; output rules see ``output`` instead of the
    call."""

    _check = field_validator("arguments")(_schema)

    @field_validator("output_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else check_regex(value)

    @model_validator(mode="after")
    def _conditions_fit(self) -> ReviewRule:
        call_only = [n for n in ("tool", "min_risk", "arguments") if getattr(self, n) is not None]
        if self.applies_to == "output" and call_only:
            raise ValueError(f"an output rule cannot set {', '.join(call_only)}")
        if self.applies_to == "tool_call" and self.output_matches is not None:
            raise ValueError("a tool_call rule cannot set output_matches")
        if not call_only and all(getattr(self, n) is None for n in (
                "output_matches", "failed_criterion", "expression")):
            raise ValueError("a review rule needs at least one condition")
        if self.expression is not None:
            check_expression(self.expression, CALL_VARIABLES if self.applies_to == "tool_call"
                             else OUTPUT_VARIABLES)
        return self


class ReviewRouting(Record):
    """``review.yaml``: which calls and outputs reach a human before taking effect."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    agent: str
    """The agent this routing is for."""
    rules: list[ReviewRule] = Field(default_factory=list)
    """The rules; any match sends the call or output to review."""


class Checklist(Record):
    """``checklist.yaml``: the operating checklist that full operation requires."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    agent: str
    """The agent this checklist is for."""
    owner: str = ""
    """Who answers for the agent in production."""
    allowed_tools: list[str] = Field(default_factory=list)
    """The tools the agent may use (must agree with permissions.yaml)."""
    tool_risk: dict[str, Risk] = Field(default_factory=dict)
    """Risk rating per tool (must agree with permissions.yaml)."""
    data_sources: list[str] = Field(default_factory=list)
    """The data the agent reads."""
    completion_criteria: list[str] = Field(default_factory=list)
    """How the agent, and its reviewers, know a task is done."""
    review_path: str = ""
    """Where reviewed calls and outputs go, and who answers them."""
    rollback_plan: str = ""
    """How to take the agent out of operation and undo its actions."""


@dataclass(frozen=True)
class Controls:
    """All four control layers of one agent, read from one folder."""

    permissions: Permissions
    acceptance: Acceptance
    review: ReviewRouting
    checklist: Checklist
    directory: Path

    def risk_of(self, tool: str) -> Risk | None:
        """The tool's risk rating, or None for a tool the permissions do not know."""
        permission = self.permissions.tools.get(tool)
        return permission.risk if permission else None


def load_controls(directory: Path, agent: str, *, root: Path | None = None,
                  predicate_modules: Sequence[str] = (),
                  texts: Mapping[str, str] | None = None,
                  sources: Mapping[Path, bytes] | None = None) -> Controls:
    """Read and cross-check the four control files in ``directory``.

    Python predicates are loaded from the workspace ``root``, only from the modules
    ``predicate_modules`` allows. ``texts`` holds files the caller already read (by name,
    as in :data:`CONTROL_FILES`), so a file is parsed as it was read, not read twice;
    ``sources`` the predicate modules' files (bytes by path), so predicate code runs as it
    was read and digested, even a module first imported when a predicate is called.
    """
    given = texts or {}
    permissions = _load(directory / "permissions.yaml", Permissions, agent, given)
    acceptance = _load(directory / "acceptance.yaml", Acceptance, agent, given)
    review = _load(directory / "review.yaml", ReviewRouting, agent, given)
    checklist = _load(directory / "checklist.yaml", Checklist, agent, given)
    tools = permissions.tools
    for index, tool in tools_named(acceptance.criteria):
        _known_tool(directory / "acceptance.yaml", ["criteria", index, "tool"], tool, tools)
    criteria = {c.id for c in acceptance.criteria}
    for index, rule in enumerate(review.rules):
        if rule.tool is not None:
            _known_tool(directory / "review.yaml", ["rules", index, "tool"], rule.tool, tools)
        name = rule.failed_criterion
        if name is not None and name != "any" and name not in criteria:
            path = directory / "review.yaml"
            raise InvalidInput(
                path, f"$.rules[{index}].failed_criterion",
                f"no acceptance criterion '{name}' in acceptance.yaml"
                + did_you_mean(name, [c for c in criteria if c]),
                line=line_of(read_text(path), ["rules", index, "failed_criterion"]),
            )
    bind = PredicateBinder(root, predicate_modules, sources)
    for tool, permission in tools.items():
        for field in ("deny_when", "review_when"):
            for index, condition in enumerate(getattr(permission, field)):
                if condition.predicate is not None:
                    bind(condition, condition.predicate, directory / "permissions.yaml",
                         ["tools", tool, field, index, "predicate"])
    for index, criterion in predicates_named(acceptance.criteria):
        bind(criterion, criterion.predicate, directory / "acceptance.yaml",
             ["criteria", index, "predicate"])
    return Controls(permissions, acceptance, review, checklist, directory)


class PredicateBinder:
    """Loads predicates for one workspace and attaches them, or names the file and place."""

    def __init__(self, root: Path | None, allowed: Sequence[str],
                 sources: Mapping[Path, bytes] | None = None) -> None:
        self._root = root
        self._allowed = allowed
        self._sources = sources

    def __call__(self, target: Condition | Any, predicate: str, path: Path,
                 loc: list[str | int]) -> None:
        try:
            if self._root is None:
                raise ValueError("predicates can only be loaded inside a workspace")
            target.bind(load_predicate(predicate, self._root, self._allowed, self._sources))
        except ValueError as exc:
            raise InvalidInput(path, json_path(loc), str(exc),
                               line=line_of(read_text(path), loc)) from None


_ControlFile = TypeVar("_ControlFile", Permissions, Acceptance, ReviewRouting, Checklist)


def _load(path: Path, model: type[_ControlFile], agent: str,
          texts: Mapping[str, str]) -> _ControlFile:
    text = texts.get(path.name)
    record = (load_model(path, model) if text is None
              else parse_model(model, parse_yaml(text, path), path, text))
    if record.agent != agent:
        raise InvalidInput(
            path, "$.agent", f"expected '{agent}', got '{record.agent}'",
            line=line_of(read_text(path), ["agent"]),
        )
    return record


def _known_tool(path: Path, loc: list[str | int], tool: str, tools: dict[str, Any]) -> None:
    if tool not in tools:
        raise InvalidInput(
            path, json_path(loc),
            f"unknown tool '{tool}': not in permissions.yaml" + did_you_mean(tool, tools),
            line=line_of(read_text(path), loc),
        )
