"""``reinstate ingest FILE…``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from evalsuite import LOG_FORMATS, LogFormat
from gates._cli._common import ctx
from gates._reports.investigation_view import ingest_table, skipped_lines
from gates._response.ingest import ingest

FORMAT = click.option("--format", "fmt", type=click.Choice(["auto", *LOG_FORMATS]),
                      default="auto", show_default=True,
                      help="The logs' format; auto looks at each file's first record.")
SKIP = click.option("--skip-invalid", is_flag=True,
                    help="Leave out invalid records (counted and reported) instead of "
                         "stopping at the first.")


@click.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@FORMAT
@click.option("--agent", help="The agent the logs are of: runs naming no agent are taken as "
                              "its, runs of other agents are left out.")
@SKIP
@click.option("--out", type=click.Path(path_type=Path),
              help="Also write the runs here in the native JSONL format (atomically).")
def command(files: tuple[Path, ...], fmt: LogFormat | Literal["auto"], agent: str | None,
            skip_invalid: bool, out: Path | None) -> int:
    """Read run logs (native JSONL, OTLP/JSON GenAI traces, OpenAI or Anthropic
    conversations), validate every record and say what they hold."""
    c = ctx()
    done = ingest(list(files), fmt, agent=agent, skip_invalid=skip_invalid, out=out)
    ingest_table(c.out, done)
    skipped_lines(c.err, done.skipped)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {warning}")
    if done.written is not None:
        c.out.print(f"wrote {done.written} ({done.lines} lines, native JSONL)")
    return 0
