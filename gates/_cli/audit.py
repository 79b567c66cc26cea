"""``reinstate audit``."""

from __future__ import annotations

import click

from gates._cli._common import ctx
from gates._state import open_store
from gates._store import verify_chain


@click.command("audit")
@click.option("--agent", help="Only entries about this agent.")
def command(agent: str | None) -> int:
    """Print the audit log and check its hash chain (exit 1 if it was tampered with)."""
    c = ctx()
    entries = open_store(c.workspace()).audit()
    for entry in entries:
        if agent is None or entry.agent == agent:
            c.out.print(f"{entry.seq:>5} {entry.at:%Y-%m-%d %H:%M:%S} {entry.actor:<16} "
                        f"{entry.action:<8} {entry.agent or '-':<16} {entry.reason}",
                        highlight=False)
    problems = verify_chain(entries)
    for problem in problems:
        c.err.print(f"[bold red]tampered:[/] {problem}")
    return 1 if problems else 0
