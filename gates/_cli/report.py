"""``reinstate report AGENT``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markdown import Markdown

from evalsuite import write_atomic
from gates._cli._common import ctx
from gates._reports.verdict_report import report_html, report_markdown, verdict_report


@click.command("report")
@click.argument("agent")
@click.option("--html", "html_file", type=click.Path(path_type=Path),
              help="Write the report as one self-contained HTML page here.")
@click.option("--markdown", "markdown_file", type=click.Path(path_type=Path),
              help="Write the report as Markdown here.")
def command(agent: str, html_file: Path | None, markdown_file: Path | None) -> int:
    """Report whether AGENT may go back to full operation, and why, for a release manager.

    Then each check, each incident's finding → change → verification, the failing
    cases, the fingerprint, and what changed since the last passing verdict. Reads
    state, runs nothing; without --html or --markdown it prints the report (Markdown
    when piped).
    """
    c = ctx()
    report = verdict_report(c.workspace(), agent)
    # Render everything before writing anything, so a failure leaves no half of the pair.
    outputs = [(path, render(report)) for path, render in
               ((html_file, report_html), (markdown_file, report_markdown)) if path is not None]
    for path, text in outputs:
        write_atomic(path, text)
        c.out.print(f"wrote {path}")
    if not outputs and c.out.is_terminal:
        c.out.print(Markdown(report_markdown(report)))
    elif not outputs:  # piped: the Markdown itself, to keep or to grep
        click.echo(report_markdown(report), nl=False)
    else:
        c.out.print(f"{agent}: {report.headline}", highlight=False, markup=False)
    return 0
