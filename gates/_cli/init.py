"""``reinstate init [DIR]``."""

from __future__ import annotations

from pathlib import Path

import click

from gates._cli._common import ctx
from gates._init import init_workspace


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--agent", help="Lay out this agent too: a tool with a CEL rule, a criterion and "
                                "an eval case that pass. In an existing workspace, adds the "
                                "agent and changes nothing else.")
def command(directory: Path, agent: str | None) -> int:
    """Lay out a reinstate workspace in DIRECTORY (default: here), or add --agent to it."""
    base = ctx().workspace_dir
    if base is not None and not directory.is_absolute():
        directory = base / directory  # like git -C: DIRECTORY is taken from inside -C's folder
    made = init_workspace(directory, agent)
    for path in made:
        ctx().out.print(f"created {path}")
    return 0
