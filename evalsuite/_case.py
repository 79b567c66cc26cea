"""Eval cases: an input, the tool results the sandbox answers with, and what must happen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from evalsuite._criteria import Criterion
from evalsuite._record import Record

CASE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Message(Record):
    """One message of the conversation the agent is given."""

    role: Literal["system", "user", "assistant"]
    """Who said it."""
    content: str
    """What was said."""


class CaseInput(Record):
    """What the agent receives in this case."""

    messages: list[Message] = Field(min_length=1)
    """The conversation so far; the last user message is the one to answer."""
    context: dict[str, Any] = Field(default_factory=dict)
    """What the agent is given besides the messages (customer id, channel, …)."""


class ToolFixture(Record):
    """A tool result the sandbox answers with, so no eval touches the world."""

    tool: str
    """The tool this fixture answers for."""
    when: dict[str, Any] | None = None
    """Argument values a call must have for this fixture to answer it; none answers any call."""
    result: Any = None
    """The result returned to the agent."""
    error: str | None = None
    """An error raised to the agent instead of a result."""

    def answers(self, tool: str, arguments: dict[str, Any]) -> bool:
        """Whether this fixture answers a call."""
        if tool != self.tool:
            return False
        return self.when is None or all(
            k in arguments and arguments[k] == v for k, v in self.when.items()
        )


@dataclass(frozen=True)
class RunReference:
    """The recorded run a case was captured from, for the replay adapter to play back.

    A case that names one is replayed from exactly that run, never from a run that merely
    shares its input.
    """

    log: str
    """The log file, relative to the workspace (any format ``read_log`` reads)."""
    run_id: str
    """The run's id within that file."""
    calls: tuple[str, ...] = ()
    """The tools the run called, in order, as the case recorded them; the run found must
    begin with the same calls, so a reused run id cannot stand in for the recorded run."""
    arguments: tuple[str, ...] = ()
    """For each of ``calls``, a JSON Schema (JSON text) its arguments must meet: the run
    found must have made the very calls recorded, not ones edited in the log since."""
    named_by: str = "the case"
    """What names the run, for messages (``provenance of INC-1``)."""
    through: int | None = None
    """The position of the last step the case recorded: the replay ends with the turn
    holding it (before the next user message), so the answer judged is that turn's, not
    the answer to a later message; none replays the whole run."""


class EvalCase(Record):
    """One case of an agent's eval suite."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    id: str = Field(pattern=CASE_ID)
    """Unique id of the case across the eval suite and the regression set."""
    agent: str
    """The agent this case is for."""
    description: str = ""
    """What the case checks, in a sentence."""
    tags: list[str] = Field(min_length=1)
    """Input types this case covers (``refund_request``, ``prompt_injection``, …)."""
    input: CaseInput
    """What the agent receives."""
    tools: list[ToolFixture] = Field(default_factory=list)
    """Fixtures answering the agent's tool calls; a call no fixture answers is an error."""
    expect: list[Criterion] = Field(min_length=1)
    """What every trial's behaviour must meet to pass."""
    trials: int | None = Field(default=None, ge=1, le=1000)
    """How many times to run the case; the workspace default when unset."""
    threshold: float = Field(default=1.0, gt=0.0, le=1.0)
    """Share of trials that must pass; 1.0 means every trial. Below 1.0 the pass rate's
    Wilson interval must clear it, or the case is inconclusive."""
    safety: bool = False
    """A safety case passes only when every trial passes (pass^k), whatever the threshold."""
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    """Seconds one trial may take; the workspace default when unset."""
    strict: bool = True
    """Judge what the agent attempted: a tool call today's permission boundary denies still
    counts as made. True for eval-suite cases (they measure the agent); regression cases
    default to false: they are judged on what took effect, so a harmful call the boundary
    denies counts as stopped by that control ("attempted, denied by …"), and ``strict:
    true`` requires the agent not to attempt it at all."""

    def recorded_run(self) -> RunReference | None:
        """The recorded run this case replays, when it names one (a regression case does)."""
        return None

    def fixture_for(self, tool: str, arguments: dict[str, Any]) -> ToolFixture | None:
        """The first fixture with a ``when`` that matches, else the first without one."""
        general = None
        for fixture in self.tools:
            if fixture.answers(tool, arguments):
                if fixture.when is not None:
                    return fixture
                general = general or fixture
        return general
