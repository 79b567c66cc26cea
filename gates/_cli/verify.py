"""``reinstate verify INC``."""

from __future__ import annotations

import click

from gates._cli._common import ctx
from gates._render import verification_table
from gates._verify import verify_incident


@click.command("verify")
@click.argument("incident_id")
@click.option("--trials", type=click.IntRange(1, 1000),
              help="Trials per case when the case sets none (default: reinstate.toml).")
def command(incident_id: str, trials: int | None) -> int:
    """Prove each control change of INC: the harm got through the baseline, today it is stopped.

    Prints each change's before/after decision with its deciding rule, good behaviour the
    new controls block, and what changed in each control file. Stores no verdict. Exit 0
    when every change is verified and nothing good is blocked, else 1.
    """
    c = ctx()
    result = verify_incident(c.workspace(), incident_id, trials=trials)
    verification_table(c.out, result.verifications)
    if not result.verifications:
        c.out.print(f"{incident_id} has no control change to verify")
    for name, diff in result.control_diffs.items():
        c.out.print(f"[bold]{name}[/] since containment:")
        for line in diff.splitlines():
            c.out.print(f"  {line}", highlight=False, markup=False)
    for problem in result.gaps + result.overblocking:
        c.out.print(f"[red]•[/] {problem}", highlight=False)
    for line in result.review_load:
        c.out.print(line, highlight=False, markup=False)
    verified = sum(v.verified for v in result.verifications)
    c.out.print(f"{incident_id}: {verified}/{len(result.verifications)} changes verified; "
                f"{len(result.overblocking)} good behaviours over-blocked")
    return 0 if result.ok else 1
