"""The gate's first stage: the eval suite and the regression set against the live agent.

The engine is ``engine_for``'s, the one the pytest plugin runs cases with too: tools are
sandboxed and today's permission policy is enforced at call time (a call it denies is
blocked and the agent sees the denial). The agent's own code runs confined as
``[agent]`` in the workspace says (own process group, allowlisted environment, a sandbox
where the platform has one); what it got is part of the evidence, and the verdict says
loudly when it ran unisolated. Every trial is written to a run file
under ``.reinstate/runs/`` so a failure can be read without rerunning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite import (
    EvalCase,
    EvalRunHeader,
    Progress,
    RunFileWriter,
    isolation_of,
    run_cases,
)
from gates._gate.checks import Evidence
from gates._gate.engine import engine_for
from gates._gate.inputs import GateInputs
from gates._verdict.fingerprint import agent_changed
from regressions import utc_now

if TYPE_CHECKING:
    from gates._gate.ray_engine import EngineName


def run_file_path(inputs: GateInputs) -> Path:
    """Where this run's trials are written."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
    return inputs.workspace.state_path.parent / "runs" / f"{stamp}-{inputs.agent.name}.jsonl"


def run_evals(inputs: GateInputs, trials: int | None = None, *,
              cases: Sequence[EvalCase] | None = None, adapter: str | None = None,
              concurrency: int | None = None, progress: Progress | None = None,
              record: bool = True, engine_name: EngineName = "local",
              workers: int | None = None) -> Evidence:
    """Run the cases (all of them by default) against the agent; return what happened.

    With ``engine_name="ray"`` the trials run as Ray tasks, at most ``workers`` at once
    (default: the cluster's CPUs); the results and the run file are the local engine's.
    """
    # Packed cases stay packed: the engine unpacks each as its trials start.
    chosen = cases if cases is not None else inputs.cases
    engine = engine_for(inputs, trials=trials, adapter=adapter, concurrency=concurrency)
    writer = None
    if record:
        kind = (inputs.agent.adapters[adapter] if adapter else inputs.agent.adapter).kind
        writer = RunFileWriter(run_file_path(inputs), EvalRunHeader(
            agent=inputs.agent.name, agent_version=inputs.agent.version, adapter=kind,
            started_at=utc_now(), settings=vars(engine.settings)))
    try:
        if engine_name == "ray":
            from gates._gate.ray_engine import connect, run_cases_on_ray  # only when asked for
            slots = workers or max(1, int(connect().cluster_resources().get("CPU", 1)))
            results = run_cases_on_ray(inputs, chosen, workers=slots, trials=trials,
                                       adapter=adapter, concurrency=concurrency,
                                       progress=progress,
                                       record=writer.trial if writer else None)
        else:
            # Passing cases are held parked: at thousands of cases their runs as models were
            # most of the process's memory, and only the good-behaviour replays read them.
            results = run_cases(engine, chosen, progress=progress,
                                record=writer.trial if writer else None, park_passing=True)
    except BaseException:
        if writer is not None:  # a run that stopped midway leaves no run file behind
            writer.abandon()
        raise
    return Evidence(results=results,
                    regression_ids=frozenset(c.id for c in inputs.regression_cases),
                    run_file=writer.finish() if writer else None,
                    isolation=isolation_of(engine.adapter), trials=engine.settings.trials,
                    # The agent's processes read its files only now, after the inputs'
                    # fingerprint: taken again, so a verdict never names code that did
                    # not run (an edit or a checkout while the gate ran, an unconfined
                    # agent writing its own folder).
                    changed=tuple(agent_changed(inputs.workspace, inputs.agent.name,
                                                inputs.fingerprint)))
