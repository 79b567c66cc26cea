"""``reinstate check AGENT``."""

from __future__ import annotations

import json

import click

from gates._clearance import check
from gates._cli._common import ctx


@click.command("check")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def command(agent: str, as_json: bool) -> int:
    """Exit 0 only if AGENT is cleared for full operation at today's fingerprint.

    For deploy jobs: it reads the incidents, the latest verdict and the mode, and runs
    nothing. Exit 1 lists every reason; exit 3 when the state store cannot be read.
    """
    c = ctx()
    clearance = check(c.workspace(), agent)
    if as_json:
        click.echo(json.dumps(clearance.model_dump(mode="json"), indent=2))
    elif clearance:
        stamp = (f"{clearance.verdict_created_at:%Y-%m-%d %H:%M} UTC"
                 if clearance.verdict_created_at else "")
        c.out.print(f"{agent}: [bold green]cleared[/] for full operation (verdict "
                    f"{clearance.verdict_outcome} of {stamp}, on today's files)")
    else:
        c.out.print(f"{agent}: [bold red]NOT cleared[/] for full operation:")
        for reason in clearance.reasons:
            c.out.print(f"  - {reason}", highlight=False, markup=False)
    return 0 if clearance else 1
