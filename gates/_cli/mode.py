"""``reinstate mode AGENT``."""

from __future__ import annotations

import json

import click

from gates._cli._common import ctx
from gates._reports.terminal import mode_line
from gates._store.access import read_mode


@click.command("mode")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True, help="Print the reading as JSON.")
@click.option("--follow", is_flag=True,
              help="Keep printing: a line for each mode change as it commits (PostgreSQL "
                   "store, LISTEN/NOTIFY).")
def command(agent: str, as_json: bool, follow: bool) -> int:
    """Print the mode AGENT must operate in: full, review or suspended.

    When the state store cannot be read the answer is ``suspended`` and the exit code 3.
    """
    c = ctx()
    workspace = c.workspace()
    workspace.require_agent(agent)
    if follow:
        from gates._cli._follow import follow_mode
        return follow_mode(c, workspace, agent, as_json)
    reading = read_mode(workspace, agent)
    if as_json:
        click.echo(json.dumps(reading.model_dump(mode="json")))
    elif c.out.is_terminal:
        c.out.print(mode_line(reading))
    else:
        click.echo(reading.mode)
    if reading.degraded:
        c.err.print(f"[yellow]warning:[/] {reading.degraded}; answering suspended")
        return 3
    return 0
