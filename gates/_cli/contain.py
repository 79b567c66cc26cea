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
    """Contain the incident's agent at once and record it; the clock is shown against target.

    An invalid [notify] in reinstate.toml does not stop it: the agent is contained, nobody
    is told, and the command says so and exits 2.
    """
    c = ctx()
    named = split_list(",".join(notify))
    done = contain(c.workspace(containing=True), incident_id, mode=mode, notify=named,
                   scope=scope, actor=c.actor)
    incident_summary(c.out, done.incident)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {escape(warning)}")
    if done.notify_problem is not None:
        # Exit 2, as for any invalid reinstate.toml, so a script notices; but only after
        # the containment, and saying that it holds.
        told = (f"{done.incident.agent} IS contained ({done.mode}), but [notify] in "
                f"reinstate.toml is invalid, so reinstate told nobody: tell "
                f"{', '.join(named)} yourself now, then fix [notify]")
        for line in (done.notify_problem, told):
            c.err.print(f"[bold red]error:[/] {escape(line)}", highlight=False,
                        soft_wrap=True)
        return 2
    if not done.notify_configured:
        c.err.print("note: \\[notify] in reinstate.toml names no audience, so reinstate told "
                    "nobody; tell them yourself (see README, Notifications)", highlight=False)
    return 0
