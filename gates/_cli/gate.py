"""``reinstate gate AGENT``."""

from __future__ import annotations

from pathlib import Path

import click

from evalsuite import write_atomic
from gates._cli._common import ctx
from gates._junit import junit_xml
from gates._pipeline import run_gate
from gates._render import verdict_table, verification_table


@click.command("gate")
@click.argument("agent")
@click.option("--json", "json_file", type=click.Path(path_type=Path),
              help="Write the verdict as JSON here.")
@click.option("--junit", "junit_file", type=click.Path(path_type=Path),
              help="Write JUnit XML here (a test case per check and per eval case).")
@click.option("--trials", type=click.IntRange(1, 1000),
              help="Trials per case when the case sets none (default: reinstate.toml).")
def command(agent: str, json_file: Path | None, junit_file: Path | None,
            trials: int | None) -> int:
    """Run every check for AGENT and store the verdict.

    Exit 0 pass, 1 fail, 2 invalid input, 3 error, 4 inconclusive.
    """
    c = ctx()
    verdict = run_gate(c.workspace(), agent, actor=c.actor, trials=trials)
    verdict_table(c.out, verdict)
    verification_table(c.out, verdict)
    if json_file is not None:
        write_atomic(json_file, verdict.model_dump_json(indent=2) + "\n")
    if junit_file is not None:
        write_atomic(junit_file, junit_xml(verdict))
    return verdict.exit_code
