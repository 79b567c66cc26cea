"""``reinstate restore AGENT``."""

from __future__ import annotations

import click
from rich.markup import escape

from gates._cli._common import ctx
from gates._response.restore import restore


@click.command("restore")
@click.argument("agent")
def command(agent: str) -> int:
    """Return AGENT to full operation, only on a current passing verdict.

    Refused (exit 1, every reason listed) while an incident lacks its RCA, a change is
    unverified, the review is unscheduled, or the verdict failed or is stale.
    """
    c = ctx()
    done = restore(c.workspace(), agent, actor=c.actor)
    if done.already_full:
        c.out.print(f"{agent} is already in full operation; nothing to restore")
    else:
        c.out.print(f"{agent}: [bold green]full[/] operation restored "
                    f"({escape(', '.join(done.incidents) or 'no open incident')})")
    for n in done.notifications:
        if n.status == "sent":
            c.out.print(f"told {n.audience} by {n.service}", highlight=False, markup=False)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {escape(warning)}")
    return 0
