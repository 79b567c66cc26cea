"""``reinstate ingest FILE…``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from evalsuite import DEFAULT_SESSION_ATTRIBUTES, InvalidInput, sessions_grouped_by
from gates._cli._common import Context, ctx
from gates._reports.investigation_view import ingest_table, skipped_lines
from gates._response.ingest import ingest

# A plain string: besides the bundled formats, a reader plugin may be named (an entry point
# of the reinstate.readers group, or module:callable); reading checks the name.
FORMAT = click.option("--format", "fmt", default="auto", show_default=True, metavar="FORMAT",
                      help="The logs' format: auto (looks at each file's first record), "
                           "jsonl, otel, openai, anthropic, openai-responses, text-actions, "
                           "a reader installed under the reinstate.readers entry points, or "
                           "module:callable.")
SKIP = click.option("--skip-invalid", is_flag=True,
                    help="Leave out invalid records (counted and reported) instead of "
                         "stopping at the first.")
STRICT = click.option("--strict", is_flag=True,
                      help="Refuse (exit 2) a log read only in part: no runs, runs with no "
                           "steps, or records the reader did not understand.")


@click.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@FORMAT
@click.option("--agent", help="The agent the logs are of: runs naming no agent are taken as "
                              "its, runs of other agents are left out.")
@SKIP
@STRICT
@click.option("--out", type=click.Path(path_type=Path),
              help="Also write the runs here in the native JSONL format (atomically); a "
                   "name ending in .parquet: as native Parquet, for backtests on Ray.")
@click.option("--session-attribute", "session_attributes", multiple=True, metavar="NAME",
              help="A span attribute naming the session a trace belongs to: traces sharing "
                   "its value are one run (repeatable; replaces [ingest] "
                   "session_attributes, default gen_ai.conversation.id, session.id, "
                   "traceloop.association.properties.session_id).")
def command(files: tuple[Path, ...], fmt: str, agent: str | None, skip_invalid: bool,
            strict: bool, out: Path | None, session_attributes: tuple[str, ...]) -> int:
    """Read run logs (native JSONL, OTLP/JSON GenAI or OpenInference traces, OpenAI or Anthropic
    conversations, text actions, or a reader plugin's format), validate every record and
    say what each file holds and what was not understood."""
    c = ctx()
    with sessions_grouped_by(session_attributes or _configured(c)):
        done = ingest(list(files), fmt, agent=agent, skip_invalid=skip_invalid,
                      strict=strict, out=out)
    ingest_table(c.out, done)
    for summary in done.files:
        c.out.print(escape(summary.understood()), highlight=False)
    skipped_lines(c.err, done.skipped)
    for warning in done.warnings:
        c.err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if done.written is not None:
        parquet = done.written.suffix.lower() == ".parquet"
        c.out.print(f"wrote {done.written} ({done.lines} "
                    f"{'rows, native Parquet' if parquet else 'lines, native JSONL'})",
                    markup=False)
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
