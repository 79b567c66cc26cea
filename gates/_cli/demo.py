"""``reinstate demo``."""

from __future__ import annotations

from pathlib import Path

import click

from gates._cli._common import ctx
from gates._demo import run_demo


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="A new or empty folder for the example workspace (default: a temporary one).")
def command(directory: Path | None) -> int:
    """Walk the whole response on the bundled refund agent, step by step."""
    _, ok = run_demo(directory, ctx().out)
    return 0 if ok else 1
