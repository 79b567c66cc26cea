"""The one place an eval engine is built for an agent of a workspace.

The gate, ``reinstate eval``, ``verify`` and the pytest plugin all run cases through the
engine built here, so they run them the same way: today's permission policy enforced at
call time, the allowed tools as the agent's model is told about them, the acceptance
criteria, and the workspace's trials, timeout, retries and confidence. A test and the gate
cannot disagree about a case because neither can build its engine any other way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evalsuite import (
    Engine,
    PolicyDecision,
    RunSettings,
    Step,
    ToolCall,
    ToolPolicy,
    ToolSpec,
    build_adapter,
)
from gates._config import Workspace
from gates._controls.files import Controls
from gates._controls.policy import decide_call
from gates._store.attestation import drop_signing_key, keep_key_from_agent

if TYPE_CHECKING:  # annotated only: the inputs read the git ref through the ratchet, which
    # counts trials with default_trials below
    from gates._gate.inputs import GateInputs


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


def default_trials(workspace: Workspace, trials: int | None = None) -> int:
    """Trials per case that sets none of its own: ``trials`` (``gate --trials``), else
    ``[gate] trials``. The engine runs with it and the regression ratchet counts with it,
    so the trials a verdict remembers are the trials that ran."""
    return trials or workspace.config.gate.trials


def engine_for(inputs: GateInputs, *, trials: int | None = None, adapter: str | None = None,
               concurrency: int | None = None) -> Engine:
    """The engine that runs the cases of ``inputs``' agent, as the gate runs them.

    Args:
        inputs: The workspace's files for one agent, as the gate loaded them.
        trials: Trials per case that sets none (default: ``[gate] trials``).
        adapter: A named alternative adapter of ``agent.yaml`` (default: its ``adapter``).
        concurrency: Trials in flight at once (default: ``[gate] concurrency``).

    Returns:
        An engine whose adapter is built but not started; whoever runs it closes it
        (:func:`evalsuite.run_suite` does, one case at a time is closed by the caller).
    """
    workspace = inputs.workspace
    if drop_signing_key():  # a caller that did not take it out first: the same refusals
        workspace = keep_key_from_agent(workspace, inputs.agent, inputs.agent_file, adapter,
                                        signing=False)
    config = workspace.config.gate
    settings = RunSettings(trials=default_trials(inputs.workspace, trials),
                           concurrency=concurrency or config.concurrency,
                           timeout_s=config.timeout_s, retries=config.retries,
                           confidence=config.confidence, max_steps=config.max_steps)
    built = build_adapter(inputs.agent, inputs.agent_file, adapter,
                          workspace.agent_isolation())
    return Engine(adapter=built, settings=settings,
                  acceptance=inputs.controls.acceptance.criteria,
                  policy=policy_of(inputs.controls), tools=tool_specs(inputs.controls))
