"""``reinstate contain INC``."""

from __future__ import annotations

import click
from rich.markup import escape

from gates._cli._common import ctx, split_list
from gates._reports.terminal import incident_summary
from gates._response.actions import contain
from regressions import ContainmentMode


@click.command("contain")
@click.argument("incident_id")
@click.option("--mode", required=True, type=click.Choice(["review", "suspended"]),
              help="review: every output to a person first; suspended: the agent stops.")
@click.option("--notify", required=True, multiple=True,
              help="Who to tell, e.g. legal,compliance,eng-lead (repeatable: all apply): each "
                   "audience's services in [notify] of reinstate.toml get a message once the "
                   "mode is set.")
@click.option("--scope", required=True, help="The scope of harm as known now.")
def command(incident_id: str, mode: ContainmentMode, notify: tuple[str, ...],
            scope: str) -> int:
    """Contain the incident's agent at once and record it; the clock is shown against target."""
    c = ctx()
    done = contain(c.workspace(), incident_id, mode=mode, notify=split_list(",".join(notify)),
                   scope=scope, actor=c.actor)
    incident_summary(c.out, done.incident)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {escape(warning)}")
    if not done.notify_configured:
        c.err.print("note: \\[notify] in reinstate.toml names no audience, so reinstate told "
                    "nobody; tell them yourself (see README, Notifications)", highlight=False)
    return 0
