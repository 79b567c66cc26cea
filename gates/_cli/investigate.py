"""``reinstate investigate INC --logs FILE…``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from gates._cli._common import ctx
from gates._cli.ingest import FORMAT, SKIP, STRICT
from gates._reports.investigation_view import investigation_summary, skipped_lines
from gates._response.ingest import Tally
from gates._response.investigation import investigate


@click.command("investigate")
@click.argument("incident_id")
@click.option("--logs", "logs", multiple=True, type=click.Path(path_type=Path),
              help="A log to search (repeatable; more may follow as arguments).")
@click.argument("more_logs", nargs=-1, type=click.Path(path_type=Path))
@FORMAT
@SKIP
@STRICT
def command(incident_id: str, logs: tuple[Path, ...], more_logs: tuple[Path, ...],
            fmt: str, skip_invalid: bool, strict: bool) -> int:
    """Attach the incident's runs from the logs, write its timeline, measure the scope of
    impact and find the logging gaps.

    The signature of the harm is derived from the incident's regression cases; edit
    investigation.signature in the incident file and run this again to change it.
    """
    c = ctx()
    workspace = c.workspace()
    files = [*logs, *more_logs]
    # What each log holds for this agent is counted in the investigation's own pass, so a
    # log read as nothing is a warning, or with --strict an error before anything is written.
    tally = Tally(files, fmt) if files else None
    done = investigate(workspace, incident_id, files, actor=c.actor, fmt=fmt,
                       skip_invalid=skip_invalid, strict=strict, tally=tally)
    for summary in tally.files if tally is not None else ():
        c.out.print(escape(summary.understood()), highlight=False)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    skipped_lines(c.err, done.skipped)
    investigation_summary(c.out, done.investigation)
    path = workspace.relative(workspace.incidents().path(incident_id))
    c.out.print(f"wrote the timeline ({len(done.investigation.timeline)} events) into {path}; "
                f"`reinstate timeline {incident_id}` shows it")
    return 0
