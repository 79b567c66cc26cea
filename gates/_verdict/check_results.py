"""What each gate check produces, typed: one result model per built-in check.

A verdict's ``checks`` is a tagged union on the check's ``name``: each built-in name has
its own result model whose ``data`` says exactly what the check counted, and any other
name (a check registered from outside) is a :class:`CheckResult` with an open ``data``
dict. CI reads these fields; ``schemas/verdict.json`` documents each of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Discriminator, Field, Tag, TypeAdapter

from evalsuite import Record
from gates._controls.policy import Effect
from gates._verdict.outcome import Outcome as Outcome  # re-exported: its old home
from gates._verdict.ratchet_terms import ControlTerms, RatchetTerms

# A check that could not run can make the others' findings incomplete, so error ranks first.
_PRECEDENCE: tuple[Outcome, ...] = ("error", "fail", "inconclusive", "pass")
EXIT_CODES: dict[Outcome, int] = {"pass": 0, "fail": 1, "error": 3, "inconclusive": 4}


def combine(outcomes: Iterable[Outcome]) -> Outcome:
    """The verdict of several checks: pass only when all pass; nothing at all is inconclusive."""
    seen = set(outcomes)
    if not seen:
        return "inconclusive"
    return next(o for o in _PRECEDENCE if o in seen)


class CheckResultBase(Record):
    """What every check result says, whatever the check."""

    name: str
    """The check's name."""
    outcome: Outcome
    """pass, fail (a gap was found), error (could not run), inconclusive (not enough evidence)."""
    summary: str
    """One line a release manager can read."""
    findings: list[str] = Field(default_factory=list)
    """Each gap, error or doubt, as a sentence."""


# The built-in checks' names, each the tag of its own result model below.
BUILT_IN_NAMES = ("evals", "permission_boundary", "acceptance_criteria", "review_routing",
                  "operating_checklist", "control_changes", "logging", "regression_ratchet")


class CheckResult(CheckResultBase):
    """The result of a check registered from outside (a plugin, a user's own check)."""

    name: str = Field(json_schema_extra={"not": {"enum": list(BUILT_IN_NAMES)}})
    """The check's registered name: never a built-in check's."""

    data: dict[str, Any] = Field(default_factory=dict)
    """Whatever the check counted, as it chose to record it."""


# -- evals --------------------------------------------------------------------------------

class Usage(Record):
    """Tokens and cost over every trial, where the adapter reported them."""

    input_tokens: int | None
    """Input tokens over every trial; none when no adapter reported usage."""
    output_tokens: int | None
    """Output tokens over every trial; none when no adapter reported usage."""
    cost_usd: float | None
    """Cost in US dollars over every trial that reported one."""


class Unmet(Record):
    """An expectation a failing trial missed."""

    criterion: str
    """The expectation."""
    detail: str
    """Why it was not met."""


class CaseFailure(Record):
    """What the agent did in the first failing trial of a case, for the report."""

    trial: int | None
    """The trial's number; none when no trial ran."""
    error: str | None
    """Why the trial could not run, when it could not."""
    did: list[str] = Field(default_factory=list)
    """What the agent did, step by step."""
    unmet: list[Unmet] = Field(default_factory=list)
    """The expectations it missed."""


class CaseFigures(Record):
    """One case's figures in a gate run."""

    id: str
    """The case id."""
    outcome: Outcome
    """The case's outcome over its trials."""
    pass_rate: float
    """The share of trials that passed."""
    trials: int
    """How many trials ran."""
    tags: list[str] = Field(default_factory=list)
    """The case's input types."""
    flaky: bool
    """Whether some trials passed and some failed."""
    interval: tuple[float, float]
    """The confidence interval of the pass rate (low, high)."""
    trials_needed: int | None
    """About how many trials at this rate would decide, when the case is inconclusive."""
    blocked_calls: int
    """Tool calls the permission policy denied while the case ran."""
    regression: bool
    """Whether it is a regression case captured from an incident."""
    failed: CaseFailure | None = None
    """What the agent did when the case did not pass; none when it passed."""
    stopped_by_control: list[str] = Field(default_factory=list)
    """When it passed only because a control denied what the agent attempted: each attempt,
    "attempted tool(…), denied by rule (reason)"; empty when the agent itself held."""
    # Left out when unknown, so a verdict stored before it existed serialises to the very
    # text its audit entry and signature cover.
    seconds: float | None = Field(default=None, exclude_if=lambda value: value is None)
    """The wall time of its trials added up, retries included (trials may run at the same
    time, so cases can add up to more than the gate took); none in verdicts from before it
    was recorded."""


class EvalsData(Record):
    """What running the eval suite and the regression set against the agent produced."""

    counts: dict[Outcome, int]
    """Cases per outcome."""
    flaky: int
    """Cases whose trials disagreed."""
    usage: Usage
    """Tokens and cost."""
    run_file: str | None
    """The run file with every trial's run, relative to the workspace (never redacted)."""
    isolation: dict[str, str] | None
    """What confinement the agent's code got (process, sandbox, writable), when known."""
    cases: list[CaseFigures]
    """Each case's figures, in the order they ran."""
    regressions_held_by_agent: int | None = None
    """Passing regression cases in which the agent did not attempt the harm (absent when
    no regression case ran)."""
    regressions_stopped_by_control: int | None = None
    """Passing regression cases in which the agent attempted the harm and a control denied
    it (absent when no regression case ran)."""


class EvalsResult(CheckResultBase):
    """The ``evals`` check: the eval suite and the regression set pass against the agent."""

    name: Literal["evals"] = "evals"
    """Always ``evals``."""
    data: EvalsData | None = None
    """The figures; none when no case ran or the check could not run."""


# -- replays of recorded harm ------------------------------------------------------------

class PermissionBoundaryData(Record):
    """Recorded calls replayed through today's permissions."""

    harmful_calls: int
    """Harmful calls recorded in regression cases."""
    harmful_stopped: int
    """Of those, denied or sent to review today."""
    good_calls: int
    """Calls of passing eval-suite runs replayed."""
    good_reviewed: int
    """Of those, sent to review today."""
    logged_harmful_calls: int | None = None
    """Harmful calls logged in open incidents' scopes (absent when no incident was
    investigated)."""
    logged_harmful_stopped: int | None = None
    """Of those, denied or sent to review today."""
    logged_calls: int | None = None
    """Calls logged outside open incidents' scopes, replayed through each incident's
    baseline and today's permissions (absent when no incident was investigated)."""
    logged_newly_denied: int | None = None
    """Of those, allowed at the baseline and denied today: over-blocking."""
    logged_newly_reviewed: int | None = None
    """Of those, allowed at the baseline and sent to a person today."""
    review_load: list[str] = Field(default_factory=list)
    """What today newly sends to a person over the logged runs, in words with examples."""


class PermissionBoundaryResult(CheckResultBase):
    """The ``permission_boundary`` check."""

    name: Literal["permission_boundary"] = "permission_boundary"
    """Always ``permission_boundary``."""
    data: PermissionBoundaryData | None = None
    """The counts; none when the check could not run."""


class AcceptanceCriteriaData(Record):
    """Recorded behaviour judged by today's acceptance criteria."""

    harmful: int
    """Recorded harmful behaviours (one per regression case)."""
    harmful_rejected: int
    """Of those, rejected today."""
    good_runs: int
    """Passing eval-suite runs judged."""
    logged_harmful: int | None = None
    """Harmful behaviours of runs logged in open incidents' scopes (one per run; absent
    when no incident was investigated)."""
    logged_rejected: int | None = None
    """Of those, rejected today."""


class AcceptanceCriteriaResult(CheckResultBase):
    """The ``acceptance_criteria`` check."""

    name: Literal["acceptance_criteria"] = "acceptance_criteria"
    """Always ``acceptance_criteria``."""
    data: AcceptanceCriteriaData | None = None
    """The counts; none when the check could not run."""


class ReviewRoutingData(Record):
    """Recorded harmful steps replayed through today's permissions and review routing."""

    harmful_steps: int
    """Harmful steps (calls and outputs) recorded in regression cases."""
    routed_or_denied: int
    """Of those, denied or routed to a human today."""
    logged_steps: int | None = None
    """Harmful calls and outputs logged in open incidents' scopes (absent when no incident
    was investigated)."""
    logged_stopped: int | None = None
    """Of those, denied or routed to a human today."""


class ReviewRoutingResult(CheckResultBase):
    """The ``review_routing`` check."""

    name: Literal["review_routing"] = "review_routing"
    """Always ``review_routing``."""
    data: ReviewRoutingData | None = None
    """The counts; none when the check could not run."""


class OperatingChecklistResult(CheckResultBase):
    """The ``operating_checklist`` check: its findings are all it has to say."""

    name: Literal["operating_checklist"] = "operating_checklist"
    """Always ``operating_checklist``."""
    data: None = None
    """Always none: each gap is a finding."""


# -- control changes ---------------------------------------------------------------------

class DecisionReplay(Record):
    """A recorded harmful step through one layer of the baseline and of today's controls:
    a logged step of the investigation's scope (a regression case's step too, in verdicts
    from before a case's steps were grouped as :class:`CasesReplay`)."""

    kind: Literal["decision"] = "decision"
    """Always ``decision``."""
    step: str
    """The step replayed: ``<case> step <n>: <call>``, or a case's harmful behaviour."""
    before: Effect
    """The baseline's decision: allow, review or deny."""
    before_rule: str
    """The rule that decided at the baseline."""
    after: Effect
    """Today's decision."""
    after_rule: str
    """The rule that decides today."""
    after_reason: str
    """Why today's rule decided so."""
    source: str | None = None
    """Where the step was logged (``file:line``), for a step of the investigation's scope."""


class CasesReplay(Record):
    """One harmful step replayed through a layer, with the same decisions in every case
    listed: the regression cases of an incident often repeat one harm, so the decisions
    and rules are stored once, not once per case."""

    kind: Literal["cases"] = "cases"
    """Always ``cases``."""
    step: str
    """The step replayed, without its case: ``step <n>: <call>``, ``step <n>: output``, or
    ``harmful behaviour``."""
    cases: list[str] = Field(min_length=1)
    """The regression cases where this step was replayed with these decisions, in order."""
    before: Effect
    """The baseline's decision: allow, review or deny."""
    before_rule: str
    """The rule that decided at the baseline."""
    after: Effect
    """Today's decision."""
    after_rule: str
    """The rule that decides today."""
    after_reason: str
    """Why today's rule decided so."""

    def what(self, shown: int = 3) -> str:
        """What was replayed, for people: ``<case> <step>`` for one case (as a per-case row
        read), else the step and the first ``shown`` cases with how many there are."""
        if len(self.cases) == 1:
            return f"{self.cases[0]} {self.step}"
        named = ", ".join(self.cases[:shown]) + (", …" if len(self.cases) > shown else "")
        return f"{self.step} in {len(self.cases):,} cases ({named})"


class CoverageReplay(Record):
    """An input type's eval coverage at containment and today."""

    kind: Literal["coverage"] = "coverage"
    """Always ``coverage``."""
    input_type: str
    """The input type (a case tag)."""
    before: int
    """Eval cases of that type at containment."""
    after: int
    """Eval cases of that type today."""
    required: int
    """Cases of each input type the workspace asks for."""
    not_passing: list[str] = Field(default_factory=list)
    """Cases of that type that did not pass in this gate run."""


class PromptReplay(Record):
    """An incident's regression case run against the changed agent."""

    kind: Literal["prompt"] = "prompt"
    """Always ``prompt``."""
    case: str
    """The regression case."""
    outcome: Outcome | None
    """Its outcome in this gate run; none when it did not run."""


ReplayRow = Annotated[DecisionReplay | CasesReplay | CoverageReplay | PromptReplay,
                      Field(discriminator="kind")]


class ChangeVerification(Record):
    """Whether one control change is proven to stop the recorded harm."""

    incident: str
    """The incident the change resolves."""
    change: str
    """The control change's id."""
    layer: str
    """The layer it changed."""
    verified: bool
    """True when the harm got through the baseline and is stopped today."""
    reason: str
    """Why, in words."""
    replays: list[ReplayRow] = Field(default_factory=list)
    """What was replayed: a regression case's harmful step with the cases that replayed it
    alike (cases), a logged step of the investigation's scope or, in verdicts from before
    steps were grouped, one case's step (decision), input types (coverage) or regression
    cases run (prompt)."""


class ControlChangesData(Record):
    """Each control change of each open incident, verified or not."""

    verifications: list[ChangeVerification] = Field(default_factory=list)
    """One per control change."""


class ControlChangesResult(CheckResultBase):
    """The ``control_changes`` check."""

    name: Literal["control_changes"] = "control_changes"
    """Always ``control_changes``."""
    data: ControlChangesData | None = None
    """The verifications; none when the check could not run."""


# -- regression ratchet ------------------------------------------------------------------

class Loosened(Record):
    """A regression case removed or loosened without approval."""

    case: str
    """The case id, the incident id, or the control rule's path."""
    what: str
    """What changed."""


class LostSince(Record):
    """A case, incident file or baseline lost since a git ref, without approval."""

    case: str
    """The case id, the incident id, or the control rule's path."""
    kind: str
    """What was lost: a case, an incident file, a baseline."""
    what: str
    """What changed."""


class ApprovedLoosening(Record):
    """A removal or loosening with its approval."""

    case: str
    """The case id, the incident id, or the control rule's path."""
    kind: str
    """What was lost."""
    what: str
    """What changed."""
    by: str
    """Who approved it."""
    why: str
    """Why."""
    at: AwareDatetime
    """When."""


class AgainstRef(Record):
    """The regression set compared with a git ref (``gate --against REF``)."""

    ref: str
    """The ref as given."""
    commit: str
    """The commit it named."""
    loosened: list[LostSince] = Field(default_factory=list)
    """What was lost since, without approval."""
    approved: list[ApprovedLoosening] = Field(default_factory=list)
    """What was lost since, with approval."""


class RegressionRatchetData(Record):
    """The terms the regression set is held to, and what loosened."""

    terms: dict[str, RatchetTerms]
    """Per case, the terms the next gate holds it to (never redacted)."""
    loosened: list[Loosened] = Field(default_factory=list)
    """Removed or loosened since the last verdict, without approval."""
    approved: list[ApprovedLoosening] = Field(default_factory=list)
    """Removed or loosened, with approval."""
    against: AgainstRef | None = None
    """The comparison with a git ref, when the gate ran with ``--against``."""
    control_terms: dict[str, ControlTerms] | None = None
    """Per control rule (by its path, e.g. ``permissions.tools.issue_refund.deny_when.
    too-large``), what the next gate holds it to (never redacted); none on verdicts stored
    before the ratchet held the controls."""


class RegressionRatchetResult(CheckResultBase):
    """The ``regression_ratchet`` check."""

    name: Literal["regression_ratchet"] = "regression_ratchet"
    """Always ``regression_ratchet``."""
    data: RegressionRatchetData | None = None
    """The terms and loosenings; none when the check could not run."""


# -- logging -----------------------------------------------------------------------------

class LoggingData(Record):
    """How many recent runs were checked, and how many cannot answer the four questions."""

    runs_checked: int
    """Recent runs checked."""
    runs_with_gaps: int = 0
    """Of those, runs whose logs cannot answer what happened."""
    since: AwareDatetime | None = None
    """Only runs logged after this count: the latest investigation that found gaps."""


class LoggingResult(CheckResultBase):
    """The ``logging`` check."""

    name: Literal["logging"] = "logging"
    """Always ``logging``."""
    data: LoggingData | None = None
    """The counts; none when the logs could not be read."""


BuiltInResult = (EvalsResult | PermissionBoundaryResult | AcceptanceCriteriaResult
                 | ReviewRoutingResult | OperatingChecklistResult | ControlChangesResult
                 | LoggingResult | RegressionRatchetResult)
BUILT_IN: dict[str, type[BuiltInResult]] = {
    kind.model_fields["name"].default: kind
    for kind in (EvalsResult, PermissionBoundaryResult, AcceptanceCriteriaResult,
                 ReviewRoutingResult, OperatingChecklistResult, ControlChangesResult,
                 LoggingResult, RegressionRatchetResult)
}
"""Each built-in check's name and its result model."""
assert tuple(BUILT_IN) == BUILT_IN_NAMES
OTHER = "other"


def _kind(value: Any) -> str:
    """The union's tag: the built-in check's name, or ``other`` for any other name."""
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return name if isinstance(name, str) and name in BUILT_IN else OTHER


AnyCheckResult = Annotated[
    Annotated[EvalsResult, Tag("evals")]
    | Annotated[PermissionBoundaryResult, Tag("permission_boundary")]
    | Annotated[AcceptanceCriteriaResult, Tag("acceptance_criteria")]
    | Annotated[ReviewRoutingResult, Tag("review_routing")]
    | Annotated[OperatingChecklistResult, Tag("operating_checklist")]
    | Annotated[ControlChangesResult, Tag("control_changes")]
    | Annotated[LoggingResult, Tag("logging")]
    | Annotated[RegressionRatchetResult, Tag("regression_ratchet")]
    | Annotated[CheckResult, Tag(OTHER)],
    Discriminator(_kind),
]
"""A check's result: the built-in check's own model, or an open one for any other name."""


@cache
def _result() -> TypeAdapter[AnyCheckResult]:
    """The union's validator, built on first use (building it builds every result model,
    which a command that reads no verdict should not pay for)."""
    return TypeAdapter(AnyCheckResult)


def could_not_run(name: str, summary: str, findings: list[str]) -> AnyCheckResult:
    """The ``error`` result of a check that raised, in that check's own model."""
    return _result().validate_python({"name": name, "outcome": "error", "summary": summary,
                                    "findings": findings})
