"""Which controls a backtest replays and compares with: ``today``, ``baseline:INC-n`` (the
controls at that incident's containment) or a folder of control files, each perhaps
narrowed to one rule."""

from __future__ import annotations

from pathlib import Path

from evalsuite import InvalidInput
from gates._config import Workspace
from gates._controls.files import Controls
from gates._controls.judge import Judge
from gates._controls.rule import one_rule, same_rule
from gates._gate.baseline import load_baseline

TODAY = "today"
BASELINE = "baseline:"


def resolve_controls(workspace: Workspace, agent: str, spec: str) -> Controls:
    """The controls ``spec`` names: ``today``, ``baseline:INC-n`` or a folder of files.

    Raises:
        InvalidInput: an unknown incident, one of another agent or never contained, a
            baseline copy that changed, or a folder without valid control files.
    """
    if spec == TODAY:
        return workspace.controls(agent)
    if spec.startswith(BASELINE):
        incident = workspace.incidents().load(spec.removeprefix(BASELINE))
        if incident.agent != agent:
            raise InvalidInput(workspace.incidents().path(incident.id), "$.agent",
                               f"expected an incident of {agent}, got one of {incident.agent}")
        return load_baseline(workspace, incident)
    folder = Path(spec)
    if not folder.is_dir():
        raise InvalidInput(folder, "--controls", "expected today, baseline:INC-n or a folder "
                                                 "holding permissions.yaml, acceptance.yaml, "
                                                 "review.yaml and checklist.yaml")
    return workspace.controls(agent, folder)


def latest_baseline(workspace: Workspace, agent: str) -> str:
    """``baseline:INC-n`` of the agent's latest contained incident that is not closed.

    Raises:
        InvalidInput: the agent has no such incident (``--diff`` has nothing to compare).
    """
    open_ones = [i for i in workspace.incidents().all(agent)
                 if i.phase != "closed" and i.containment is not None]
    if not open_ones:
        raise InvalidInput(None, "--diff", f"{agent} has no open, contained incident whose "
                                           f"baseline to compare with: pass --compare "
                                           f"baseline:INC-n or a folder instead")
    return BASELINE + open_ones[-1].id


def judges(controls: Controls, compared: Controls | None,
           rule: str | None) -> tuple[Judge, Judge | None]:
    """The controls to replay and to compare with, both narrowed to ``rule`` if given (in
    the compared controls, the rule of the same path; where they lack it, nothing stops)."""
    one = one_rule(controls, rule) if rule else None
    judge = Judge.of(controls, one)
    if compared is None:
        return judge, None
    return judge, Judge.of(compared, same_rule(compared, one.rule) if one else None)


