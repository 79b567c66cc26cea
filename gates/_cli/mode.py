"""``reinstate mode AGENT``."""

from __future__ import annotations

import json

import click

from gates._cli._common import ctx
from gates._store.access import read_mode


@click.command("mode")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True, help="Print the reading as JSON.")
def command(agent: str, as_json: bool) -> int:
    """Print the mode AGENT must operate in: full, review or suspended.

    When the state store cannot be read the answer is ``suspended`` and the exit code 3.
    """
    c = ctx()
    workspace = c.workspace()
    workspace.require_agent(agent)
    reading = read_mode(workspace, agent)
    if as_json:
        click.echo(json.dumps(reading.model_dump(mode="json")))
    elif c.out_is_terminal():
        from gates._reports.terminal import mode_line  # a person reading it: rich's table

        c.out.print(mode_line(reading))
    else:
        click.echo(reading.mode)
    if reading.degraded:
        c.err.print(f"[yellow]warning:[/] {reading.degraded}; answering suspended")
        return 3
    return 0
