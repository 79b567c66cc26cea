"""``reinstate metrics [--logs FILE…]``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click
from rich.markup import escape

from evalsuite import InvalidInput, LogFormat, MetricsCounter, Skips, read_logs
from gates._cli._common import ctx
from gates._cli.ingest import FORMAT, SKIP
from gates._config import Workspace
from gates._reports.investigation_view import metrics_table, skipped_lines
from gates._response.review_metrics import GuardDecisions, queue_items, queue_metrics


@click.command("metrics")
@click.option("--logs", "logs", multiple=True, type=click.Path(path_type=Path),
              help="A log to read (repeatable; more may follow as arguments).")
@click.argument("more_logs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--agent", help="Only this agent's runs (runs naming no agent count as its).")
@click.option("--escalation-tool", "escalation_tools", multiple=True,
              help="A tool whose call hands the run to a human (repeatable).")
@FORMAT
@SKIP
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def command(logs: tuple[Path, ...], more_logs: tuple[Path, ...], agent: str | None,
            escalation_tools: tuple[str, ...], fmt: LogFormat | Literal["auto"],
            skip_invalid: bool, as_json: bool) -> int:
    """Task success, human correction, iterations, cost, escalation and blocked calls,
    from the runs in the logs; then human correction and blocked calls from the review
    queue and the escalation rate from the guard's decisions in the logs. "unknown" where
    there is nothing to count."""
    c = ctx()
    paths = [*logs, *more_logs]
    workspace, problem = _workspace()
    if not paths and workspace is None:
        raise click.UsageError(f"expected at least one log (--logs FILE) or a workspace "
                               f"with a review queue ({problem})")
    skips = Skips() if skip_invalid else None
    counter = MetricsCounter(escalation_tools)
    guard = GuardDecisions()
    for part in read_logs(paths, fmt, agent=agent, skips=skips):
        counter.feed(part)
        guard.feed(part)
    metrics = counter.metrics()
    # Next to the log-derived figures, each named by its source.
    metrics.metrics = [*metrics.metrics,
                       *queue_metrics(queue_items(workspace, agent, problem), guard)]
    skipped_lines(c.err, skips)
    for warning in counter.starts.lines("in the metrics"):
        c.err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if as_json:
        click.echo(metrics.model_dump_json(indent=2))
    else:
        metrics_table(c.out, metrics)
    return 0


def _workspace() -> tuple[Workspace | None, str]:
    """The workspace whose state store holds the review queue, or why there is none (the
    log metrics need no workspace)."""
    try:
        return ctx().workspace(), ""
    except InvalidInput as exc:
        return None, f"no workspace, so no review queue: {exc}"
