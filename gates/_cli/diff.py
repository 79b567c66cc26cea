"""``reinstate diff RUN_A RUN_B``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from evalsuite import diff_runs, read_run_file
from gates._cli._common import ctx


@click.command("diff")
@click.argument("first", type=click.Path(path_type=Path))
@click.argument("second", type=click.Path(path_type=Path))
def command(first: Path, second: Path) -> int:
    """Show, case by case, how behaviour changed between two run files.

    Tool calls, their arguments, outputs and judgements are compared with deepdiff;
    timestamps, ids and durations are ignored. Exit 0 when nothing changed, 1 otherwise.
    """
    c = ctx()
    header_a, trials_a = read_run_file(first)
    header_b, trials_b = read_run_file(second)
    c.out.print(f"{first.name}: {header_a.agent} {header_a.agent_version} "
                f"({len(trials_a)} trials) → {second.name}: {header_b.agent} "
                f"{header_b.agent_version} ({len(trials_b)} trials)", highlight=False, markup=False)
    changes = diff_runs(trials_a, trials_b)
    for case_id, lines in changes.items():
        c.out.print(f"[bold]{escape(case_id)}[/]")
        for line in lines:
            c.out.print(f"  {line}", highlight=False, markup=False)
    cases = len({t.case_id for t in trials_a} | {t.case_id for t in trials_b})
    c.out.print(f"{len(changes)} of {cases} cases changed behaviour")
    return 1 if changes else 0
