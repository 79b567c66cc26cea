"""``reinstate runs list|show --logs FILE…``: the recorded runs, before anything is captured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import click
from rich.console import Console
from rich.markup import escape

from evalsuite import LogFormat, Output, Reasoning, Step, ToolCall, ToolResult, UserInput, as_utc
from gates._cli._common import ctx
from gates._cli.ingest import FORMAT
from gates._response.runs import LocatedRun, find_run, list_runs
from gates._visible import visible
from regressions import short

# Wide enough for a refund's arguments, short enough that a long conversation stays readable.
WIDTH = 160

LOGS = click.option("--logs", "logs", multiple=True, type=click.Path(path_type=Path),
                    help="A log to read (repeatable; more may follow as arguments).")
MORE_LOGS = click.argument("more_logs", nargs=-1, type=click.Path(path_type=Path))


@click.group("runs")
def command() -> None:
    """The runs recorded in logs of any format ingest reads, with the step numbers
    `capture --step` and `investigate` use."""


@command.command("list")
@LOGS
@MORE_LOGS
@FORMAT
def list_command(logs: tuple[Path, ...], more_logs: tuple[Path, ...],
                 fmt: LogFormat | Literal["auto"]) -> int:
    """One line per run: its id, agent, number of steps, first time and where it starts."""
    c = ctx()
    runs = list_runs([*logs, *more_logs], fmt)
    # Plain aligned lines, not a table: an id or a file:line is never folded, so it can be
    # copied and grepped.
    rows = [("run id", "agent", "steps", "first (UTC)", "where")] + [
        (r.run_id, r.agent or "—", str(r.steps),
         f"{r.first_at:%Y-%m-%d %H:%M:%S}" if r.first_at else "—", r.where) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        c.out.print(visible(f"{line}  {row[4]}", keep="\n"), markup=False, highlight=False)
    c.out.print(f"{len(runs)} run(s)", highlight=False)
    return 0


@command.command("show")
@click.argument("run_id")
@LOGS
@MORE_LOGS
@FORMAT
@click.option("--full", is_flag=True, help="Show every step whole (by default long ones are "
                                           f"cut to {WIDTH} characters).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run as JSON: the run record and where each step was read.")
def show_command(run_id: str, logs: tuple[Path, ...], more_logs: tuple[Path, ...],
                 fmt: LogFormat | Literal["auto"], full: bool, as_json: bool) -> int:
    """Every step of RUN_ID with its number, kind, tool, arguments or result, and the
    file:line it came from: the numbers to pass to `capture --step`."""
    c = ctx()
    found = find_run([*logs, *more_logs], run_id, fmt)
    if found.split:
        # The numbers below count from the first log; capture reads the one log it is
        # given and counts from 0 there, so a number read here would take another step.
        said = escape(f"{run_id} is read from several logs ({'; '.join(found.split)}): the "
                      f"step numbers below count across them, but capture --run reads one log "
                      f"and counts its steps from 0 in it; show the run in that log alone for "
                      f"the numbers to capture")
        c.err.print(f"[yellow]warning:[/] {visible(said)}", highlight=False)
    if as_json:
        click.echo(found.model_dump_json(indent=2, exclude_none=True))
    else:
        show_run(c.out, found, full=full)
    return 0


def show_run(console: Console, found: LocatedRun, *, full: bool) -> None:
    """The run's header, then each step: its number, kind and place, and what it holds."""
    def say(line: str) -> None:
        console.print(visible(line, keep="\n"), markup=False, highlight=False)

    run = found.run
    agent = " ".join(p for p in (run.agent, run.agent_version) if p) or "agent not named"
    started = as_utc(run.started_at)
    when = f" · started {started:%Y-%m-%d %H:%M:%S} UTC" if started else ""
    say(f"{run.run_id} · {agent}{when} · {len(run.steps)} step(s)")
    if run.context:
        say(f"  context: {_text(run.context)}")
    if run.outcome is not None:
        say(f"  outcome: {_text(run.outcome.model_dump(exclude_none=True))}")
    for index, step in enumerate(run.steps):
        where = found.places[index] if index < len(found.places) else ""
        edit = _edit_of(run.metadata, index, step)
        if edit is None:
            say(f"step {index}  {step.kind}  {where}")
            texts = [step_text(step)]
        else:
            # A reviewer's edit: the step holds the call that ran; the agent's arguments
            # are kept in the edit's entry. Both are shown, what ran first.
            by, asked = edit
            say(f"step {index}  {step.kind}  {where}  · edited by {by}")
            assert isinstance(step, ToolCall)
            texts = ["ran: " + step.describe(),
                     "asked: " + step.model_copy(update={"arguments": asked}).describe()]
        for text in texts:
            if full:
                for line in text.split("\n"):
                    say(f"    {line}")
            else:
                say(f"    {short(text, WIDTH)}")


def _edit_of(metadata: dict[str, Any], index: int,
             step: Step) -> tuple[str, dict[str, Any]] | None:
    """Who edited call ``index`` (and in which review) and the arguments the agent asked
    for, when a reviewer released it with other arguments (``guard.edited.<n>``, applied
    by the reader: the step holds what ran, the entry what was asked)."""
    entry = metadata.get(f"guard.edited.{index}")
    if not isinstance(step, ToolCall) or not isinstance(entry, dict):
        return None
    asked = entry.get("requested")
    if not isinstance(asked, dict):
        return None
    by = str(entry.get("by", "a reviewer"))
    if entry.get("review"):
        by += f" in review {entry['review']}"
    return by, asked


def step_text(step: Step) -> str:
    """What a step holds, whole: the words, the call with its arguments, or the result."""
    if isinstance(step, UserInput | Reasoning | Output):
        return step.content
    if isinstance(step, ToolCall):
        return step.describe()
    assert isinstance(step, ToolResult)
    name = step.tool or "result"
    blocked = " (blocked)" if step.blocked else ""
    if step.error is not None:
        return f"{name} → error{blocked}: {step.error}"
    return f"{name} → {_text(step.result)}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
