"""``reinstate ratchet show|approve``: the regression set and the controls only tighten,
unless approved."""

from __future__ import annotations

import click
from rich.markup import escape

from gates._cli._common import ctx
from gates._gate.ratchet import approve_against, approve_loosening, ratchet_status
from gates._gate.ratchet_git import ratchet_against
from gates._verdict.ratchet_approvals import approvals_path

AGAINST_HELP = ("Compare with this git ref (origin/main, a merge base) instead of the state "
                "store's last gate; approvals go to regressions/<agent>.ratchet-approvals.yaml.")
TRIALS_HELP = ("Take the cases as `gate --trials N` runs them: N trials per case that sets "
               "none (default: [gate] trials).")


@click.group("ratchet")
def command() -> None:
    """See and approve removals and loosenings of the regression set and the controls."""


@command.command("show")
@click.argument("agent")
@click.option("--against", metavar="REF", help=AGAINST_HELP)
@click.option("--trials", type=click.IntRange(1, 1000), help=TRIALS_HELP)
def show(agent: str, against: str | None, trials: int | None) -> int:
    """List every regression case and control rule removed or loosened since the last
    gate, or with --against since a git ref (regression cases, incident files and
    baselines deleted or changed); exit 1 if any lacks an approval."""
    c = ctx()
    workspace = c.workspace()
    if against is not None:
        found = ratchet_against(workspace, agent, against, trials)
        c.out.print(f"{agent}: against {against}: {len(found)} removed, loosened or deleted",
                    highlight=False)
    else:
        found, memory = ratchet_status(workspace, agent, trials=trials)
        c.out.print(f"{agent}: regression cases held: {len(memory.terms)}; control rules "
                    f"held: {len(memory.control_terms or {})}", highlight=False)
    for loosening in found:
        if loosening.approval is None:
            c.out.print(f"  [red]not approved[/] {escape(loosening.case)}: "
                        f"{escape(loosening.what)}",
                        highlight=False)
        else:
            entry = loosening.approval
            c.out.print(f"  approved {loosening.case}: {loosening.what} — by {entry.actor} on "
                        f"{entry.at:%Y-%m-%d %H:%M} UTC: {entry.reason}", highlight=False,
                        markup=False)
    return 1 if any(f.approval is None for f in found) else 0


@command.command("approve")
@click.argument("agent")
@click.argument("case_id")
@click.option("--reason", required=True,
              help="Why the regression set or the controls may loosen here.")
@click.option("--against", metavar="REF", help=AGAINST_HELP)
@click.option("--trials", type=click.IntRange(1, 1000), help=TRIALS_HELP)
def approve(agent: str, case_id: str, reason: str, against: str | None,
            trials: int | None) -> int:
    """Approve removing or loosening CASE_ID as it stands now: in the audit log, or with
    --against in the repository's approvals file (CASE_ID may then be an incident id, for
    its deleted file or changed baseline). CASE_ID may be a control rule's path as `ratchet
    show` lists it (permissions.tools.TOOL.deny_when.ID, review.rules.ID, acceptance.ID)."""
    c = ctx()
    workspace = c.workspace()
    if against is not None:
        entries = approve_against(workspace, agent, case_id, reason=reason, actor=c.actor,
                                  ref=against, trials=trials)
        where = workspace.relative(approvals_path(workspace, agent))
        for approval in entries:
            c.out.print(f"approved {case_id} ({approval.change}) in {where}", highlight=False)
        c.out.print(f"commit {where} with the change, so its reviewers see the approval",
                    highlight=False)
        return 0
    entry = approve_loosening(workspace, agent, case_id, reason=reason, actor=c.actor,
                              trials=trials)
    c.out.print(f"approved {case_id} ({entry.detail['change']}) as audit entry #{entry.seq}",
                highlight=False)
    return 0
