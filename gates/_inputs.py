"""Everything a gate run reads, loaded and cross-checked before anything runs.

Bad input stops the gate here with exit 2 and nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evalsuite import (
    AgentSpec,
    EvalCase,
    InvalidInput,
    did_you_mean,
    json_path,
    line_of,
    load_cases,
    load_model,
    read_text,
    tools_named,
)
from gates._config import Workspace
from gates._controls import Controls, load_controls
from gates._fingerprint import Fingerprint, fingerprint
from regressions import Incident, RegressionCase


@dataclass(frozen=True)
class GateInputs:
    """The agent, its controls, its cases and its incidents, as read at the start of a gate."""

    workspace: Workspace
    agent: AgentSpec
    agent_file: Path
    controls: Controls
    eval_cases: list[EvalCase]
    regression_cases: list[RegressionCase]
    incidents: list[Incident]
    fingerprint: Fingerprint

    @property
    def cases(self) -> list[EvalCase]:
        """The eval suite and the regression set together."""
        return [*self.eval_cases, *self.regression_cases]


def load_inputs(workspace: Workspace, agent: str) -> GateInputs:
    """Read and validate everything the gate needs for ``agent``."""
    workspace.require_agent(agent)
    agent_file = workspace.agent_dir(agent) / "agent.yaml"
    spec = load_model(agent_file, AgentSpec)
    if spec.name != agent:
        raise InvalidInput(agent_file, "$.name", f"expected '{agent}', got '{spec.name}'",
                           line=line_of(read_text(agent_file), ["name"]))
    controls = load_controls(workspace.agent_dir(agent), agent)
    evals = load_cases(workspace.evals_dir(agent), EvalCase, agent)
    regressions = load_cases(workspace.regressions_dir(agent), RegressionCase, agent)
    clash = {c.id for c in evals.values()} & {c.id for c in regressions.values()}
    if clash:
        case_id = sorted(clash)[0]
        path = next(p for p, c in regressions.items() if c.id == case_id)
        raise InvalidInput(path, "$.id", f"case id '{case_id}' is also used in the eval suite")
    for path, case in [*evals.items(), *regressions.items()]:
        _check_tools(path, case, controls)
    return GateInputs(
        workspace=workspace,
        agent=spec,
        agent_file=agent_file,
        controls=controls,
        eval_cases=list(evals.values()),
        regression_cases=list(regressions.values()),
        incidents=workspace.incidents().all(agent),
        fingerprint=fingerprint(workspace, agent),
    )


def _check_tools(path: Path, case: EvalCase, controls: Controls) -> None:
    """A case may only name tools the permissions know: a typo there would never match."""
    known = controls.permissions.tools
    named: list[tuple[list[str | int], str]] = [
        (["expect", i, "tool"], tool) for i, tool in tools_named(case.expect)
    ]
    named += [(["tools", i, "tool"], f.tool) for i, f in enumerate(case.tools)]
    for loc, tool in named:
        if tool not in known:
            raise InvalidInput(
                path, json_path(loc),
                f"unknown tool '{tool}': not in permissions.yaml" + did_you_mean(tool, known),
                line=line_of(read_text(path), loc),
            )
