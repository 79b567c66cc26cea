"""``reinstate capture INC --run FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click
from rich.markup import escape

from evalsuite import LOG_FORMATS, LogFormat
from gates._cli._common import ctx
from gates._response.actions import capture
from regressions import TRIGGER_SYNTAX, parse_trigger, trigger_summary


@click.command("capture")
@click.argument("incident_id")
@click.option("--run", "run_file", required=True, type=click.Path(path_type=Path),
              help="The log holding the harmful run, in any format ingest reads.")
@click.option("--format", "fmt", type=click.Choice(["auto", *LOG_FORMATS]), default="auto",
              show_default=True, help="The log's format; auto looks at its first record.")
@click.option("--run-id", help="Which run of the log, when it holds several.")
@click.option("--step", "steps", type=int, multiple=True,
              help="A harmful step (tool call or output), counted from 0; repeatable.")
@click.option("--trigger", "trigger_text", metavar="STEP|context.KEY",
              help=f"The input that caused the harm: {TRIGGER_SYNTAX}. By default the last "
                   f"user input before the harm.")
@click.option("--tag", "tags", multiple=True,
              help="The input type that triggered it, e.g. prompt_injection; repeatable.")
@click.option("--keep-raw", is_flag=True,
              help="Keep e-mail addresses, phone and card numbers and tokens as logged "
                   "(by default they are replaced with stable placeholders).")
def command(incident_id: str, run_file: Path, fmt: LogFormat | Literal["auto"],
            run_id: str | None, steps: tuple[int, ...], trigger_text: str | None,
            tags: tuple[str, ...], keep_raw: bool) -> int:
    """Capture the incident's harmful run as a regression case."""
    c = ctx()
    trigger = parse_trigger(trigger_text) if trigger_text is not None else None
    workspace = c.workspace()
    done = capture(workspace, incident_id, run_file, actor=c.actor, steps=steps,
                   run_id=run_id, tags=tags, keep_raw=keep_raw, trigger=trigger, fmt=fmt)
    if done.took is not None:
        c.out.print(f"no --step given: {done.took}", highlight=False, markup=False)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {escape(warning)}")
    verb = "wrote" if done.created else "kept"
    c.out.print(f"{verb} {workspace.relative(done.path)} ({done.case.id})", markup=False)
    trigger = trigger_summary(done.case)
    if trigger is not None:
        c.out.print(f"  trigger: {trigger}", highlight=False, markup=False)
    if done.case.redacted:
        c.out.print(f"  redacted: {', '.join(done.case.redacted)}", highlight=False,
                    markup=False)
    for criterion in done.case.expect:
        c.out.print(f"  expects: {criterion.description}", highlight=False, markup=False)
    return 0
