"""``reinstate init [DIR]``."""

from __future__ import annotations

from pathlib import Path

import click

from gates._cli._common import ctx
from gates._init import init_workspace


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--agent", help="Also lay out a first agent with empty control files to fill in.")
def command(directory: Path, agent: str | None) -> int:
    """Lay out a reinstate workspace in DIRECTORY (default: here)."""
    made = init_workspace(directory, agent)
    for path in made:
        ctx().out.print(f"created {path}")
    return 0
