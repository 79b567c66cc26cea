"""The replay adapter: a recorded run answers as the agent did.

Its tool calls go through today's sandbox again, so a logged production run can be
judged by today's expectations and permission policy without the agent. Which run a case
replays is never a guess: a case that names its recorded run (a regression case, by its
provenance) replays exactly that run from the file it was captured from; any other case
is found by its last user message, and two runs sharing that message is an error naming
both, not a silent pick.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from evalsuite._agent import AgentCrashed, AgentSpec, ReplayAdapterSpec, register_adapter
from evalsuite._case import EvalCase, RunReference
from evalsuite._errors import InvalidInput
from evalsuite._run import Output, Reasoning, Run, ToolCall, UserInput
from evalsuite._sandbox import Isolation
from evalsuite._schemas import schema_validator
from evalsuite._session import AgentSession, MissingFixture, ToolFailed

_NAMED = 5  # runs named in an ambiguity error before "and N more"


class ReplayAdapter:
    """Finds each case's recorded run and plays it back through the session."""

    def __init__(self, spec: ReplayAdapterSpec, agent_file: Path, agent: AgentSpec,
                 isolation: Isolation | None = None) -> None:
        # No agent code runs here, so there is nothing to confine: isolation is unused.
        self._spec = spec
        self.agent = agent
        self._folder = agent_file.parent.resolve()
        self._log = (agent_file.parent / spec.log).resolve()
        self._logs: dict[Path, dict[str, Run]] = {}

    def _runs(self, path: Path) -> dict[str, Run]:
        """The runs of one log by id, read once whatever its format."""
        if path not in self._logs:
            # Imported here: the readers build their validators on import, and evalsuite
            # imports every adapter (to register its kind) whether or not it is used.
            from evalsuite._logs import read_log_runs

            try:
                runs = read_log_runs(path)
            except InvalidInput as exc:
                raise AgentCrashed(f"cannot replay from {path.name}: {exc}") from None
            if not runs:
                raise AgentCrashed(f"{path.name} holds no recorded run to replay")
            self._logs[path] = {r.run_id: r for r in runs}
        return self._logs[path]

    def _find(self, case: EvalCase) -> Run:
        reference = case.recorded_run()
        if reference is not None:
            return self._recorded(case, reference)
        runs = self._runs(self._log)
        if self._spec.match == "run_id":
            if case.id not in runs:
                raise AgentCrashed(f"no recorded run in {self._log.name} for case {case.id}")
            return runs[case.id]
        asked = next((m.content for m in reversed(case.input.messages) if m.role == "user"),
                     None)
        if asked is None:
            raise AgentCrashed(f"case {case.id} has no user message to find its recorded "
                               f"run by; set match: run_id")
        found = [r.run_id for r in runs.values()
                 if any(isinstance(s, UserInput) and s.content == asked for s in r.steps)]
        if not found:
            raise AgentCrashed(f"no recorded run in {self._log.name} for case {case.id}")
        if len(found) > 1:
            named = ", ".join(found[:_NAMED]) + (
                f" and {len(found) - _NAMED} more" if len(found) > _NAMED else "")
            raise AgentCrashed(
                f"case {case.id}: {len(found)} recorded runs in {self._log.name} share its "
                f"last user message ({named}); replaying one of them would be a guess: "
                f"set match: run_id and name the run by the case id")
        return _through_answer(runs[found[0]], asked, case)

    def _recorded(self, case: EvalCase, reference: RunReference) -> Run:
        """The run a case names, checked to begin with the calls the case recorded."""
        path = self._locate(case, reference)
        run = self._runs(path).get(reference.run_id)
        if run is None:
            raise AgentCrashed(f"case {case.id}: {reference.named_by} names run "
                               f"{reference.run_id} in {reference.log}, which has no such run")
        calls = [s for s in run.steps if isinstance(s, ToolCall)]
        called = tuple(s.tool for s in calls)
        if called[:len(reference.calls)] != reference.calls:
            raise AgentCrashed(
                f"case {case.id}: run {reference.run_id} in {reference.log} is not the run "
                f"the case recorded: it calls {', '.join(called) or 'no tool'}, the case "
                f"recorded {', '.join(reference.calls)}")
        for call, schema in zip(calls, reference.arguments, strict=False):
            if not schema_validator(json.loads(schema)).is_valid(call.arguments):
                raise AgentCrashed(
                    f"case {case.id}: run {reference.run_id} in {reference.log} is not the "
                    f"run the case recorded: it calls {call.describe()}, with other arguments "
                    f"than the case recorded (the log changed since the capture?)")
        if reference.through is None:
            return run
        return _through_turn(run, reference.through)

    def _locate(self, case: EvalCase, reference: RunReference) -> Path:
        """The log a case names, relative to the workspace: the nearest folder above
        ``agent.yaml`` that holds it."""
        relative = PurePosixPath(reference.log)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise AgentCrashed(f"case {case.id}: {reference.named_by} names the log "
                               f"{reference.log!r}: expected a path inside the workspace")
        for folder in (self._folder, *self._folder.parents):
            candidate = folder.joinpath(*relative.parts)
            if candidate.is_file():
                return candidate
        raise AgentCrashed(f"case {case.id}: {reference.named_by} names the log "
                           f"{reference.log}, which is not in the workspace")

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str | None:
        """Replay the recorded steps; the last output is the answer, none if it gave none."""
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
        # A run that ended without an answer (cut off, or still waiting on a tool) replays
        # up to its last step; the criteria judge the missing answer.
        return answer

    async def aclose(self) -> None:
        """Nothing to release."""


def _through_answer(run: Run, asked: str, case: EvalCase) -> Run:
    """The run found by the case's last user message, up to its answer to that message.

    The steps from the next user message on answer messages the case does not hold: a
    live agent given the case never sees them. Replayed, the answer judged was the run's
    last (a "You're welcome!" to a later "thanks"), never the answer to the case's
    message, so an answer that broke the case passed whenever the conversation went on.
    """
    turns = [i for i, s in enumerate(run.steps) if isinstance(s, UserInput) and s.content == asked]
    if len(turns) > 1:
        raise AgentCrashed(
            f"case {case.id}: run {run.run_id} asks its last user message {len(turns)} times; "
            f"replaying the answer to one of them would be a guess: set match: run_id")
    return _through_turn(run, turns[0])


def _through_turn(run: Run, position: int) -> Run:
    """The run up to the end of the turn holding the step at ``position``: before the next
    user message after it."""
    end = next((i for i in range(position + 1, len(run.steps))
                if isinstance(run.steps[i], UserInput)), len(run.steps))
    return run.model_copy(update={"steps": run.steps[:end]})


register_adapter("replay")(ReplayAdapter)
