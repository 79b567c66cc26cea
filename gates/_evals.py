"""The gate's first stage: the eval suite and the regression set against the live agent.

Tools are sandboxed and today's permission policy is enforced at call time: a call it
denies is blocked and the agent sees the denial. The agent's own code runs confined as
``[agent]`` in the workspace says (own process group, allowlisted environment, a sandbox
where the platform has one); what it got is part of the evidence, and the verdict says
loudly when it ran unisolated. Every trial is written to a run file
under ``.reinstate/runs/`` so a failure can be read without rerunning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalsuite import (
    Engine,
    EvalCase,
    EvalRunHeader,
    PolicyDecision,
    Progress,
    RunFileWriter,
    RunSettings,
    Step,
    ToolCall,
    ToolPolicy,
    ToolSpec,
    build_adapter,
    isolation_of,
    run_cases,
)
from gates._checks import Evidence
from gates._controls import Controls
from gates._inputs import GateInputs
from gates._policy import decide_call
from regressions import utc_now


def tool_specs(controls: Controls) -> list[ToolSpec]:
    """The allowed tools as an agent's model is told about them."""
    return [
        ToolSpec(name=name, description=permission.description,
                 parameters=permission.arguments or {"type": "object"})
        for name, permission in controls.permissions.tools.items() if permission.allowed
    ]


def policy_of(controls: Controls) -> ToolPolicy:
    """Today's permission boundary, as the sandbox asks it at call time."""
    def decide(call: ToolCall, history: Sequence[Step], context: dict[str, Any]) -> PolicyDecision:
        decision = decide_call(controls, call, history, context)
        return PolicyDecision(decision.effect, decision.rule, decision.reason)
    return decide


def run_file_path(inputs: GateInputs) -> Path:
    """Where this run's trials are written."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
    return inputs.workspace.state_path.parent / "runs" / f"{stamp}-{inputs.agent.name}.jsonl"


def run_evals(inputs: GateInputs, trials: int | None = None, *,
              cases: Sequence[EvalCase] | None = None, adapter: str | None = None,
              concurrency: int | None = None, progress: Progress | None = None,
              record: bool = True) -> Evidence:
    """Run the cases (all of them by default) against the agent; return what happened."""
    config = inputs.workspace.config.gate
    settings = RunSettings(trials=trials or config.trials,
                           concurrency=concurrency or config.concurrency,
                           timeout_s=config.timeout_s, retries=config.retries,
                           confidence=config.confidence)
    chosen = list(cases) if cases is not None else inputs.cases
    built = build_adapter(inputs.agent, inputs.agent_file, adapter,
                          inputs.workspace.config.agent.isolation())
    engine = Engine(
        adapter=built,
        settings=settings, acceptance=inputs.controls.acceptance.criteria,
        policy=policy_of(inputs.controls), tools=tool_specs(inputs.controls),
    )
    writer = None
    if record:
        kind = (inputs.agent.adapters[adapter] if adapter else inputs.agent.adapter).kind
        writer = RunFileWriter(run_file_path(inputs), EvalRunHeader(
            agent=inputs.agent.name, agent_version=inputs.agent.version, adapter=kind,
            started_at=utc_now(), settings=vars(settings)))
    results = run_cases(engine, chosen, progress=progress,
                        record=writer.trial if writer else None)
    return Evidence(results=results,
                    regression_ids=frozenset(c.id for c in inputs.regression_cases),
                    run_file=writer.finish() if writer else None,
                    isolation=isolation_of(built))
