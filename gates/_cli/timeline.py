"""``reinstate timeline INC``."""

from __future__ import annotations

import click

from gates._cli._common import ctx
from gates._reports.investigation_view import timeline_table


@click.command("timeline")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="Print the investigation as JSON.")
def command(incident_id: str, as_json: bool) -> int:
    """Show the incident's timeline, scope of impact and logging gaps."""
    c = ctx()
    incident = c.workspace().incidents().load(incident_id)
    if as_json:
        inv = incident.investigation
        click.echo(inv.model_dump_json(indent=2) if inv is not None else "null")
    else:
        timeline_table(c.out, incident)
    return 0
