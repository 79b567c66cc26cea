"""``reinstate mode AGENT``."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from gates._cli._common import Context, ctx
from gates._store.mode_light import light_reading

if TYPE_CHECKING:  # the full read loads them; a clean plain read never does
    from gates._config import Workspace
    from gates._store.access import ModeReading


@click.command("mode")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True, help="Print the reading as JSON (with "
              "--watch or --follow: one JSON object a line).")
@click.option("--watch", is_flag=True,
              help="Keep reading: print the mode, then a line for each change, until "
                   "Ctrl-C or SIGTERM (exit 0).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="With --watch, seconds between two readings of the state store.")
@click.option("--follow", is_flag=True,
              help="Keep printing: a line for each mode change as it commits (PostgreSQL "
                   "store, LISTEN/NOTIFY).")
def command(agent: str, as_json: bool, watch: bool, interval: float, follow: bool) -> int:
    """Print the mode AGENT must operate in: full, review or suspended.

    When the state store cannot be read the answer is ``suspended`` and the exit code 3.
    """
    c = ctx()
    if not (watch or follow) and (as_json or not c.out_is_terminal()):
        # The clean case, without pydantic: the full read's answer or None (not sure).
        light = light_reading(agent, c.workspace_dir)
        if light is not None:
            click.echo(json.dumps(light) if as_json else light["mode"])
            return 0
    from gates._store.access import held_to_proof, read_mode
    from gates._store.mode_facts import remember_mode_inputs

    # An invalid [notify] changes no mode: the answer stands, and the problem is said.
    workspace = c.workspace(containing=True)
    workspace.require_agent(agent)
    if workspace.notify_problem is not None:
        from rich.markup import escape  # only here: a clean read prints no markup

        c.err.print(f"[yellow]warning:[/] {escape(str(workspace.notify_problem))}; a "
                    f"containment now would tell nobody: fix \\[notify]", highlight=False,
                    soft_wrap=True)
    if watch and follow:
        raise click.UsageError("give --watch (polling, any store) or --follow (PostgreSQL), "
                               "not both")
    if follow:
        from gates._cli._follow import follow_mode
        return follow_mode(c, workspace, agent, as_json)
    if watch:
        return _watch(c, workspace, agent, interval, as_json)
    reading = held_to_proof(workspace, agent, read_mode(workspace, agent))
    _show(c, reading, as_json)
    remember_mode_inputs(workspace)  # so the next read of these files is a light one
    if reading.degraded:
        from rich.markup import escape  # only here: a clean read prints no markup

        said = f"answering {reading.mode}"  # what it answers, said once
        tail = "" if reading.degraded.endswith(said) else f"; {said}"
        c.err.print(f"[yellow]warning:[/] {escape(reading.degraded)}{tail}")
        return 3
    return 0


def _show(c: Context, reading: ModeReading, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(reading.model_dump(mode="json")))
    elif c.out_is_terminal():
        from gates._reports.terminal import mode_line  # a person reading it: rich's table

        c.out.print(mode_line(reading))
    else:
        click.echo(reading.mode)


def _watch(c: Context, workspace: Workspace, agent: str, interval: float,
           as_json: bool) -> int:
    """Print each change until Ctrl-C or SIGTERM; a service manager stopping the watcher is
    a normal end, so it exits 0. A store that cannot be read is a line (``suspended``) and
    a warning, and the watch goes on: it may come back."""
    from gates._store.access import watch_mode

    stop = threading.Event()

    def stop_watching(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, stop_watching)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    # A plain line is the mode alone, so a new reason for the same mode is no new line.
    plain = not as_json and not c.out_is_terminal()
    shown: str | None = None
    try:
        for reading in watch_mode(workspace, agent, interval, stop):
            if not (plain and reading.mode == shown):
                _show(c, reading, as_json)
            shown = reading.mode
            if reading.degraded:
                from rich.markup import escape  # a degraded read only

                c.err.print(f"[yellow]warning:[/] {escape(reading.degraded)}; answering "
                            f"{reading.mode}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
