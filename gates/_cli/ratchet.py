"""``reinstate ratchet show|approve``: the regression set only tightens, unless approved."""

from __future__ import annotations

import click

from gates._cli._common import ctx
from gates._ratchet import approve_loosening, ratchet_status


@click.group("ratchet")
def command() -> None:
    """See and approve removals and loosenings of the regression set."""


@command.command("show")
@click.argument("agent")
def show(agent: str) -> int:
    """List every regression case removed or loosened since the last gate (exit 1 if any
    lacks an approval)."""
    c = ctx()
    found, memory = ratchet_status(c.workspace(), agent)
    c.out.print(f"{agent}: regression cases held: {len(memory)}", highlight=False)
    for loosening in found:
        if loosening.approval is None:
            c.out.print(f"  [red]not approved[/] {loosening.case}: {loosening.what}",
                        highlight=False)
        else:
            entry = loosening.approval
            c.out.print(f"  approved {loosening.case}: {loosening.what} — by {entry.actor} on "
                        f"{entry.at:%Y-%m-%d %H:%M} UTC: {entry.reason}", highlight=False)
    return 1 if any(f.approval is None for f in found) else 0


@command.command("approve")
@click.argument("agent")
@click.argument("case_id")
@click.option("--reason", required=True, help="Why the regression set may loosen here.")
def approve(agent: str, case_id: str, reason: str) -> int:
    """Approve removing or loosening CASE_ID as it stands now; recorded in the audit log."""
    c = ctx()
    entry = approve_loosening(c.workspace(), agent, case_id, reason=reason, actor=c.actor)
    c.out.print(f"approved {case_id} ({entry.detail['change']}) as audit entry #{entry.seq}",
                highlight=False)
    return 0
