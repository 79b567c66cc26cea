"""The sandbox an agent runs in during an eval: tools answer from fixtures; calls are kept."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from evalsuite._case import EvalCase
from evalsuite._errors import EvalsuiteError
from evalsuite._run import Reasoning, Step, ToolCall, ToolResult


class MissingFixture(EvalsuiteError):
    """The agent called a tool the case has no fixture for: an error of the case, not a result."""

    exit_code = 3

    def __init__(self, case_id: str, tool: str, arguments: dict[str, Any]) -> None:
        self.case_id = case_id
        self.tool = tool
        self.arguments = arguments
        super().__init__(
            f"case {case_id}: no fixture answers {tool}({arguments}); "
            f"add one under 'tools' in the case file"
        )


class ToolFailed(Exception):
    """Raised to the agent when a fixture answers with an error, as a real tool would."""


class AgentSession:
    """What an agent under eval sees: the conversation, its context, and sandboxed tools.

    An agent is a function ``respond(session) -> str``. It reads ``session.messages`` and
    ``session.context``, calls ``session.call_tool(name, arguments)`` and may record its
    reasoning with ``session.think(text)``.
    """

    def __init__(self, case: EvalCase) -> None:
        self._case = case
        self.messages: list[dict[str, str]] = [m.model_dump() for m in case.input.messages]
        # Copies, so an agent that edits what it is given cannot change the case's fixtures.
        self.context: dict[str, Any] = copy.deepcopy(case.input.context)
        self.steps: list[Step] = []
        self.missing_fixture: MissingFixture | None = None
        self._ids = itertools.count(1)

    def call_tool(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call a tool; the answer comes from the case's fixtures, and the call is recorded."""
        arguments = copy.deepcopy(arguments or {})
        call_id = f"call-{next(self._ids)}"
        self.steps.append(ToolCall(tool=tool, arguments=arguments, call_id=call_id))
        fixture = self._case.fixture_for(tool, arguments)
        if fixture is None:
            self.missing_fixture = MissingFixture(self._case.id, tool, arguments)
            raise self.missing_fixture
        self.steps.append(ToolResult(tool=tool, call_id=call_id,
                                     result=copy.deepcopy(fixture.result), error=fixture.error))
        if fixture.error is not None:
            raise ToolFailed(fixture.error)
        return copy.deepcopy(fixture.result)

    def think(self, text: str) -> None:
        """Record a step of reasoning, as a model's thinking would appear in a log."""
        self.steps.append(Reasoning(content=text))
