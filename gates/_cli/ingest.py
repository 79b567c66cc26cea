"""``reinstate ingest FILE…``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from evalsuite import (
    DEFAULT_SESSION_ATTRIBUTES,
    LOG_FORMATS,
    InvalidInput,
    LogFormat,
    sessions_grouped_by,
)
from gates._cli._common import Context, ctx
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
@click.option("--session-attribute", "session_attributes", multiple=True, metavar="NAME",
              help="A span attribute naming the session a trace belongs to: traces sharing "
                   "its value are one run (repeatable; replaces [ingest] "
                   "session_attributes, default gen_ai.conversation.id, session.id, "
                   "traceloop.association.properties.session_id).")
def command(files: tuple[Path, ...], fmt: LogFormat | Literal["auto"], agent: str | None,
            skip_invalid: bool, out: Path | None, session_attributes: tuple[str, ...]) -> int:
    """Read run logs (native JSONL, OTLP/JSON GenAI or OpenInference traces, OpenAI or
    Anthropic conversations), validate every record and say what they hold."""
    c = ctx()
    with sessions_grouped_by(session_attributes or _configured(c)):
        done = ingest(list(files), fmt, agent=agent, skip_invalid=skip_invalid, out=out)
    ingest_table(c.out, done)
    skipped_lines(c.err, done.skipped)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {warning}")
    if done.written is not None:
        c.out.print(f"wrote {done.written} ({done.lines} lines, native JSONL)")
    return 0


def _configured(c: Context) -> tuple[str, ...]:
    """The workspace's ``[ingest] session_attributes``; the defaults outside a workspace
    (ingest needs none), but a workspace whose configuration is broken is an error."""
    try:
        return tuple(c.workspace().config.ingest.session_attributes)
    except InvalidInput as exc:
        if exc.path is None:  # no workspace here
            return DEFAULT_SESSION_ATTRIBUTES
        raise
