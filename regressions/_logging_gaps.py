"""Whether a run's logs answer the four questions an investigation asks of every run.

1. **goal** — what the agent attempted: a user input with text.
2. **context** — what it used: the run's context (system instructions, customer or
   retrieved data) is recorded.
3. **tools** — which tools it called: every call has its arguments logged and a result
   (or error) paired with it.
4. **completion** — why it believed it was done: an output after its last tool result,
   and its reasoning or the stop reason its model gave.

Where the logs are silent, the investigation cannot say what happened: the absence of
logging is then a root cause in its own right.
"""

from __future__ import annotations

from evalsuite import Output, Reasoning, Run, ToolCall, ToolResult, UserInput
from regressions._investigation import LoggingGap, Question

ROOT_CAUSE = "the absence of logging is the root cause of the inability to investigate"


def logging_gaps(run: Run, source: str) -> list[LoggingGap]:
    """Every question the run's log cannot answer, with what is missing."""
    found: list[tuple[Question, str]] = []
    steps = run.steps
    if not any(isinstance(s, UserInput) and s.content.strip() for s in steps):
        found.append(("goal", "no user input logged"))
    if not run.context:
        found.append(("context", "no context logged (system instructions, customer or "
                                 "retrieved data)"))
    problems = _tool_problems(run)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more"
                                           if len(problems) > 3 else "")
        found.append(("tools", shown))
    last_result = max((i for i, s in enumerate(steps) if isinstance(s, ToolResult)), default=-1)
    if not any(isinstance(s, Output) for s in steps[last_result + 1:]):
        found.append(("completion", "no output logged after the last tool result"))
    elif not any(isinstance(s, Reasoning) for s in steps) and not (
            run.outcome is not None and run.outcome.stop_reason):
        found.append(("completion", "no reasoning and no stop reason logged"))
    return [LoggingGap(run_id=run.run_id, question=q, detail=d, source=source)
            for q, d in found]


def _tool_problems(run: Run) -> list[str]:
    problems = []
    paired = run.pairs()
    answered = set(paired.values())
    for index, step in enumerate(run.steps):
        if isinstance(step, ToolCall):
            if step.arguments_logged is False:
                problems.append(f"step {index} {step.tool}: arguments not logged")
            if index not in paired:
                problems.append(f"step {index} {step.tool}: no result logged")
        elif isinstance(step, ToolResult) and index not in answered:
            problems.append(f"step {index}: a result with no call logged")
    return problems
