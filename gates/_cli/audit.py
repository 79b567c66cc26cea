"""``reinstate audit`` (the log) and ``reinstate audit verify`` (its tamper evidence)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from rich.markup import escape

from evalsuite import InvalidInput
from gates._cli._common import ctx
from gates._store.access import open_store
from gates._store.attestation import read_kept_verdict
from gates._store.audit import verify_audit
from gates._store.backends import verify_chain
from gates._verdict.verdict import Verdict
from gates._visible import visible


@click.group("audit", invoke_without_command=True)
@click.option("--agent", help="Only entries about this agent.")
@click.pass_context
def command(click_ctx: click.Context, agent: str | None) -> int | None:
    """Print the audit log and check its hash chain (exit 1 if it was tampered with)."""
    if click_ctx.invoked_subcommand is not None:
        return None
    c = ctx()
    entries = open_store(c.workspace()).audit()
    for entry in entries:
        if agent is None or entry.agent == agent:
            # A reason or an actor is what a person typed: never markup (an unclosed "[/]"
            # crashed the log), its line breaks written out so it cannot forge an entry.
            c.out.print(visible(f"{entry.seq:>5} {entry.at:%Y-%m-%d %H:%M:%S} "
                                f"{entry.actor:<16} {entry.action:<8} "
                                f"{entry.agent or '-':<16} {entry.reason}"),
                        highlight=False, markup=False)
    problems = verify_chain(entries)
    for problem in problems:
        c.err.print(f"[bold red]tampered:[/] {escape(problem)}", highlight=False)
    return 1 if problems else 0


def _anchor(text: str) -> tuple[int, str] | Verdict:
    """``NUMBER:SHA256`` as ``audit verify`` prints it, or a verdict file kept elsewhere."""
    found = re.fullmatch(r"(\d{1,18}):([0-9a-f]{64})", text.strip())
    if found is not None:
        return int(found.group(1)), found.group(2)
    path = Path(text)
    if not path.is_file():
        raise InvalidInput(None, "--anchor", f"expected NUMBER:SHA256 as `audit verify` prints "
                                             f"it, or a verdict file, got {text!r}")
    return read_kept_verdict(path)


@command.command("verify")
@click.option("--anchor", "anchors", multiple=True, metavar="NUMBER:SHA256|FILE",
              help="An entry's number and hash kept elsewhere (a CI log, a ticket), or a "
                   "verdict kept elsewhere (`gate --json` or a signed attestation); the log "
                   "must still hold it. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(anchors: tuple[str, ...], as_json: bool) -> int:
    """Check the audit log: its chain, its head, and the modes, verdicts and review rows it
    vouches for.

    Names every edited, removed or reordered entry and every mode or verdict changed
    behind the log, and exits 1; exit 0 prints the head to anchor next time.
    """
    c = ctx()
    workspace = c.workspace()
    store = open_store(workspace)
    given = [_anchor(a) for a in anchors]
    problems = verify_audit(store, workspace.agents(),
                            [a for a in given if isinstance(a, tuple)],
                            [a for a in given if isinstance(a, Verdict)])
    entries = store.audit()
    head = f"{entries[-1].seq}:{entries[-1].hash}" if entries else None
    if as_json:
        click.echo(json.dumps({"intact": not problems, "entries": len(entries), "head": head,
                               "problems": problems}))
    elif problems:
        for problem in problems:
            c.err.print(f"[bold red]tampered:[/] {escape(problem)}", highlight=False)
    else:
        c.out.print(f"audit log intact: {len(entries)} entries, chain and head verified, "
                    f"modes, verdicts and review rows match their entries; head {head or 'none'}",
                    highlight=False)
    return 1 if problems else 0
