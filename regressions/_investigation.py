"""The investigation an incident records: its runs as a timeline, the scope of impact,
and where the logs could not answer what happened.

Written by ``reinstate investigate`` in one atomic change of the incident file. The
``signature`` may be edited by hand and the investigation run again with it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, field_validator

from evalsuite import Record, as_utc, check_json_schema

EventKind = Literal["detection", "user_input", "reasoning", "tool_call", "tool_result", "output",
                    "containment", "mode_change"]
Question = Literal["goal", "context", "tools", "completion"]
LISTED_RUNS = 100
"""Matched runs a scope lists by name; the rest are counted in ``runs_not_listed``."""
QUESTIONS: dict[Question, str] = {
    "goal": "what goal the agent attempted",
    "context": "what context it used",
    "tools": "which tools it called, with arguments and results",
    "completion": "why it believed it was done",
}


class TimelineEvent(Record):
    """One thing that happened, where the record of it was found."""

    at: AwareDatetime | None = None
    """When, in UTC, if the source says."""
    kind: EventKind
    """What kind of event: a step of a run, the detection, the containment, a mode change."""
    summary: str
    """What happened, in one line."""
    run_id: str | None = None
    """The run the step belongs to."""
    step: int | None = None
    """The step's position in its run, from 0."""
    source: str
    """Where it was read: ``logs/a.jsonl:12``, ``incidents/INC-1.yaml``, ``audit log #3``."""
    trigger: str | None = None
    """The regression case whose trigger this step is (the input that caused the harm)."""

    # Every time here is printed as UTC: one with another offset (an investigation edited
    # by hand) is converted when read; its clock reading was printed as UTC, hours off.
    _utc = field_validator("at")(as_utc)


class CallPattern(Record):
    """Matches a call to one tool whose arguments satisfy a JSON Schema."""

    kind: Literal["tool_call"]
    tool: str
    """The tool called."""
    arguments: dict[str, Any] | None = None
    """A JSON Schema the arguments must satisfy; none matches every call to the tool."""
    description: str = ""
    """What the pattern looks for, in words."""

    _check = field_validator("arguments")(lambda v: None if v is None else check_json_schema(v))


class OutputPattern(Record):
    """Matches an output that fails one of the agent's acceptance criteria."""

    kind: Literal["output"]
    fails: str
    """The id of the acceptance criterion (in ``acceptance.yaml``) the output fails."""
    description: str = ""
    """What the pattern looks for, in words."""


Pattern = Annotated[CallPattern | OutputPattern, Field(discriminator="kind")]


class Signature(Record):
    """The harmful behaviour to look for in every run: any one pattern matching is a match."""

    derived_from: list[str] = Field(default_factory=list)
    """The regression cases the patterns were derived from (kept when edited by hand)."""
    match: list[Pattern] = Field(min_length=1)
    """The patterns; a run is in scope when one of its steps matches any of them."""


class MatchedRun(Record):
    """A run in the scope of impact."""

    run_id: str
    """The run."""
    first_match: str
    """Where its first matching step was read."""
    at: AwareDatetime | None = None
    """When that step happened, if the log says."""
    matches: int
    """How many of its steps matched."""

    _utc = field_validator("at")(as_utc)


class Scope(Record):
    """How far the harm reaches in the logs searched."""

    runs_searched: int
    """Runs read from the logs, each once however many parts or files it is in."""
    steps_searched: int
    """Steps read from the logs."""
    runs_matched: int
    """Runs with at least one matching step."""
    calls_matched: int
    """Tool calls that matched a call pattern."""
    outputs_matched: int
    """Outputs that matched an output pattern."""
    first_at: AwareDatetime | None = None
    """The earliest matching step, if the logs have times."""
    last_at: AwareDatetime | None = None
    """The latest matching step, if the logs have times."""
    runs: list[MatchedRun] = Field(default_factory=list)
    """The matched runs, in the order found, up to the listing limit."""
    runs_not_listed: int = 0
    """Matched runs beyond the listing limit (counted above, not listed)."""

    _utc = field_validator("first_at", "last_at")(as_utc)

    def problems(self) -> list[tuple[list[str | int], str]]:
        """Figures that cannot all be true of one search: (location, what was expected).

        The backtest labels the listed runs harmful and the reports print the counts, so a
        run deleted from the list by hand (or a count lowered) must not read as a smaller
        scope of impact.
        """
        problems: list[tuple[list[str | int], str]] = []
        listed = min(self.runs_matched, LISTED_RUNS)
        if len(self.runs) != listed:
            problems.append((["runs"], f"expected the first {listed} of the {self.runs_matched} "
                                       f"runs_matched listed, got {len(self.runs)}"))
        if self.runs_not_listed != self.runs_matched - len(self.runs):
            problems.append((["runs_not_listed"],
                             f"expected runs_matched ({self.runs_matched}) less the runs "
                             f"listed ({len(self.runs)}), got {self.runs_not_listed}"))
        seen: set[str] = set()
        for i, run in enumerate(self.runs):
            if run.run_id in seen:
                problems.append((["runs", i, "run_id"], f"duplicate run '{run.run_id}'"))
            seen.add(run.run_id)
            if run.matches < 1:
                problems.append((["runs", i, "matches"],
                                 f"expected at least 1 matching step, got {run.matches}"))
        steps = self.calls_matched + self.outputs_matched
        if self.runs_matched > self.runs_searched:
            problems.append((["runs_matched"], f"expected at most the {self.runs_searched} "
                                              f"runs_searched, got {self.runs_matched}"))
        if steps > self.steps_searched:
            problems.append((["calls_matched"],
                             f"expected calls_matched and outputs_matched ({steps}) to be at "
                             f"most the {self.steps_searched} steps_searched"))
        if steps < self.runs_matched:
            problems.append((["runs_matched"],
                             f"expected at most calls_matched and outputs_matched ({steps}) "
                             f"runs, each with a matching step, got {self.runs_matched}"))
        counted = sum(run.matches for run in self.runs)
        if counted > steps or (counted != steps and not self.runs_not_listed):
            problems.append((["calls_matched"],
                             f"expected calls_matched and outputs_matched ({steps}) to "
                             f"{'be' if not self.runs_not_listed else 'be at least'} the "
                             f"matching steps of the runs listed ({counted})"))
        if (self.first_at is not None and self.last_at is not None
                and self.last_at < self.first_at):
            problems.append((["last_at"], f"expected a time no earlier than first_at "
                                          f"({self.first_at.isoformat()}), got "
                                          f"{self.last_at.isoformat()}"))
        return problems


class LoggingGap(Record):
    """A question about a run in scope that its logs cannot answer."""

    run_id: str
    """The run."""
    question: Question
    """goal, context, tools or completion."""
    detail: str
    """What is missing."""
    source: str
    """Where the run was read."""


class LogFile(Record):
    """A log the investigation read."""

    path: str
    """The file, relative to the workspace when inside it."""
    sha256: str
    """Its SHA-256 when read."""
    format: str
    """The format it was read as."""


class Investigation(Record):
    """What the investigation found, as of its last run."""

    investigated_at: AwareDatetime
    """When it last ran, in UTC."""
    investigated_by: str
    """Who ran it."""
    logs: list[LogFile] = Field(min_length=1)
    """The logs searched."""
    runs: list[str] = Field(default_factory=list)
    """The incident's own runs, attached from the logs (the runs its cases were captured from)."""
    signature: Signature
    """What the harmful behaviour looks like; edit it and investigate again to widen or narrow."""
    scope: Scope
    """How far the harm reaches."""
    timeline: list[TimelineEvent] = Field(default_factory=list)
    """The incident's runs, detection, containment and mode changes, in time order."""
    runs_checked: int = 0
    """Runs in scope whose logs were checked for the four questions."""
    logging_gaps: list[LoggingGap] = Field(default_factory=list)
    """Every question a run in scope cannot answer; empty when the logs are complete."""
    skipped_records: int = 0
    """Invalid log records left out (``--skip-invalid``)."""

    _utc = field_validator("investigated_at")(as_utc)

    @property
    def gap_runs(self) -> list[str]:
        """The runs with at least one logging gap, in order."""
        return list(dict.fromkeys(g.run_id for g in self.logging_gaps))
