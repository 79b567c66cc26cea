"""``reinstate backtest AGENT --logs FILE…``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from evalsuite import LogFormat, write_atomic
from gates._backtest.render import markdown, show
from gates._backtest.run import backtest
from gates._cli._common import ctx, engine_options
from gates._cli.ingest import FORMAT
from gates._gate.ray_engine import check_engine

CONTROLS = "today, baseline:INC-n (the controls at that incident's containment) or a folder"


@click.command("backtest")
@click.argument("agent")
@click.option("--logs", "logs", multiple=True, type=click.Path(path_type=Path),
              help="A log to replay (repeatable; more may follow as arguments).")
@click.argument("more_logs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--controls", default="today", show_default=True,
              help=f"The controls to replay: {CONTROLS}.")
@click.option("--compare", help=f"Controls to compare with: {CONTROLS}.")
@click.option("--diff", is_flag=True,
              help="Today's controls against the baseline of the agent's latest open "
                   "incident: the loop 'edit a rule, see what it does to history'.")
@click.option("--labels", type=click.Path(path_type=Path),
              help="Runs (or steps) labelled harmful or good: JSONL, CSV or YAML.")
@click.option("--incident", help="Label INC's captured harm, and each step its scope of "
                                 "impact matches, harmful.")
@click.option("--rule", help="Only this rule decides, e.g. "
                             "permissions.tools.issue_refund.deny_when[0]; all else allows.")
@click.option("--json", "json_out", type=click.Path(path_type=Path),
              help="Also write the result as JSON (schemas/backtest.json).")
@click.option("--markdown", "markdown_out", type=click.Path(path_type=Path),
              help="Also write a Markdown section, e.g. to $GITHUB_STEP_SUMMARY.")
@click.option("--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes to split the runs across; the result is the same.")
@engine_options
@FORMAT
def command(agent: str, logs: tuple[Path, ...], more_logs: tuple[Path, ...], controls: str,
            compare: str | None, diff: bool, labels: Path | None, incident: str | None,
            rule: str | None, json_out: Path | None, markdown_out: Path | None, jobs: int,
            fmt: LogFormat | Literal["auto"], engine: str, workers: int | None) -> int:
    """What the controls would have done to every recorded call and output of AGENT.

    Every tool call goes through the permissions and the review routing, every call and
    output through the acceptance criteria, with the history the agent had at that step.
    Prints what each rule fired on, the review load and, with --compare or --diff, what
    changed. Exit 0 when every labelled harmful step is stopped and no labelled good step
    is denied, 1 otherwise (unlabelled runs never fail), 2 on bad input, 4 when there is
    nothing to replay (no tool call or output of AGENT in the logs).
    """
    engine_name = check_engine(engine, workers)
    c = ctx()
    result = backtest(c.workspace(), agent, [*logs, *more_logs], controls=controls,
                      compare=compare, diff=diff, labels=labels, incident=incident, rule=rule,
                      jobs=jobs, fmt=fmt, engine=engine_name, workers=workers)
    show(c.out, result)
    if json_out is not None:
        write_atomic(json_out, result.model_dump_json(indent=2) + "\n")
    if markdown_out is not None:
        write_atomic(markdown_out, markdown(result))
    if result.inconclusive is not None:
        return 4
    return 0 if result.passed else 1
