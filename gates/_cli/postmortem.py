"""``reinstate postmortem INC``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markdown import Markdown

from evalsuite import write_atomic
from gates._cli._common import ctx
from gates._reports.postmortem import postmortem, postmortem_markdown


@click.command("postmortem")
@click.argument("incident_id")
@click.option("--markdown", "markdown_file", type=click.Path(path_type=Path),
              help="Write the postmortem as Markdown here (default: print it).")
def command(incident_id: str, markdown_file: Path | None) -> int:
    """Write up INCIDENT_ID for the post-incident review and for compliance.

    Summary, severity, the clock against its targets, who was notified, the scope of harm,
    the timeline, the root cause per layer, each control change and its verification, the
    regression cases, follow-up actions and the review date.
    """
    c = ctx()
    text = postmortem_markdown(postmortem(c.workspace(), incident_id))
    if markdown_file is None and c.out.is_terminal:
        c.out.print(Markdown(text))
    elif markdown_file is None:  # piped: the Markdown itself
        click.echo(text, nl=False)
    else:
        write_atomic(markdown_file, text)
        c.out.print(f"wrote {markdown_file}")
    return 0
