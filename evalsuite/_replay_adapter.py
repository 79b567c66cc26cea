"""The replay adapter: a recorded run answers as the agent did.

Its tool calls go through today's sandbox again, so a logged production run can be
judged by today's expectations and permission policy without the agent.
"""

from __future__ import annotations

from pathlib import Path

from evalsuite._agent import AgentCrashed, AgentSpec, ReplayAdapterSpec, register_adapter
from evalsuite._case import EvalCase
from evalsuite._run import Output, Reasoning, Run, ToolCall, UserInput
from evalsuite._sandbox import Isolation
from evalsuite._session import AgentSession, MissingFixture, ToolFailed


class ReplayAdapter:
    """Finds each case's recorded run and plays it back through the session."""

    def __init__(self, spec: ReplayAdapterSpec, agent_file: Path, agent: AgentSpec,
                 isolation: Isolation | None = None) -> None:
        # No agent code runs here, so there is nothing to confine: isolation is unused.
        self._spec = spec
        self.agent = agent
        self._log = (agent_file.parent / spec.log).resolve()
        self._runs: list[Run] | None = None

    def _find(self, case: EvalCase) -> Run:
        if self._runs is None:
            # Imported here: the JSONL reader builds its validators on import, and evalsuite
            # imports every adapter (to register its kind) whether or not it is used.
            from evalsuite._jsonl import read_runs

            self._runs = read_runs(self._log)
        if self._spec.match == "run_id":
            found = [r for r in self._runs if r.run_id == case.id]
        else:
            asked = next(m.content for m in reversed(case.input.messages) if m.role == "user")
            found = [r for r in self._runs
                     if any(isinstance(s, UserInput) and s.content == asked for s in r.steps)]
        if not found:
            raise AgentCrashed(f"no recorded run in {self._log.name} for case {case.id}")
        return found[0]

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str:
        """Replay the recorded steps; the last output is the answer."""
        run = self._find(case)
        answer = None
        for step in run.steps:
            if isinstance(step, ToolCall):
                try:
                    session.call_tool(step.tool, step.arguments)
                except MissingFixture:
                    raise
                except ToolFailed:
                    pass  # recorded: the agent would have seen it; the replay goes on
            elif isinstance(step, Reasoning):
                session.think(step.content)
            elif isinstance(step, Output):
                answer = step.content
        if run.usage is not None:
            session.add_usage(run.usage.input_tokens or 0, run.usage.output_tokens or 0,
                              run.usage.cost_usd)
        if answer is None:
            raise AgentCrashed(f"the recorded run {run.run_id} has no output")
        return answer

    async def aclose(self) -> None:
        """Nothing to release."""


register_adapter("replay")(ReplayAdapter)
