"""``reinstate verify INC``."""

from __future__ import annotations

from pathlib import Path

import click

from evalsuite import InvalidInput, write_atomic
from gates._cli._common import ctx
from gates._reports.terminal import plain, verification_table
from gates._response.verify import verify_incident
from gates._verdict.verdict import EXIT_CODES

COLOUR = {"pass": "green", "fail": "red", "error": "red", "inconclusive": "yellow"}


@click.command("verify")
@click.argument("incident_id")
@click.option("--trials", type=click.IntRange(1, 1000),
              help="Trials per case when the case sets none (default: reinstate.toml).")
@click.option("--json", "json_file", type=click.Path(path_type=Path),
              help="Also write the whole verification here as JSON (schemas/verification.json).")
def command(incident_id: str, trials: int | None, json_file: Path | None) -> int:
    """Prove each control change of INC: the harm got through the baseline, today it is stopped.

    Prints each change's before/after decision with its deciding rule, good behaviour the
    new controls block, cases the agent could not run, and what changed in each control
    file. Stores no verdict. Exit 0 when every change is verified and good behaviour was
    replayed with nothing blocked; 1 when a change is not verified, the RCA has a gap or
    something good is blocked; else 3 when a case could not run, 4 when there was no good
    behaviour to judge over-blocking on.
    """
    c = ctx()
    if json_file is not None and json_file.is_dir():  # found out before the evals run
        raise InvalidInput(json_file, "--json", "expected a file to write, got a folder")
    result = verify_incident(c.workspace(), incident_id, trials=trials)
    verification_table(c.out, result.verifications)
    if not result.verifications:
        c.out.print(f"{incident_id} has no control change to verify")
    for name, diff in result.control_diffs.items():
        c.out.print(f"[bold]{plain(name)}[/] since containment:")
        for line in diff.splitlines():
            c.out.print(f"  {line}", highlight=False, markup=False)
    for problem in result.gaps + result.overblocking.found:
        c.out.print(f"[red]•[/] {plain(problem)}", highlight=False)
    for error in result.errors:
        c.out.print(f"[red]• error:[/] {plain(error)}", highlight=False)
    for warning in result.warnings:
        c.out.print(f"[yellow]• WARNING:[/] {plain(warning)}", highlight=False)
    for line in result.review_load:
        c.out.print(line, highlight=False, markup=False)
    over = result.overblocking
    if json_file is not None:
        write_atomic(json_file, result.record().model_dump_json(indent=2) + "\n")
    verified = sum(v.verified for v in result.verifications)
    errored = f"; {len(result.errors)} case(s) could not run" if result.errors else ""
    outcome = result.outcome
    c.out.print(f"{incident_id}: {verified}/{len(result.verifications)} changes verified; "
                f"{over.summary}{errored} → [{COLOUR[outcome]}]{outcome}[/]", highlight=False)
    return EXIT_CODES[outcome]
