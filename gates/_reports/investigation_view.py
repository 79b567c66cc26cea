"""How ingested logs, an investigation and metrics look on a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalsuite import Metrics, Skips
from gates._response.ingest import Ingested
from gates._visible import percent
from regressions import QUESTIONS, ROOT_CAUSE, Incident, Investigation, scope_lines

KIND = {"detection": "detected", "user_input": "user", "reasoning": "reasoning",
        "tool_call": "tool call", "tool_result": "tool result", "output": "output",
        "containment": "contained", "mode_change": "mode"}


def skipped_lines(console: Console, skips: Skips | None) -> None:
    """How many records --skip-invalid left out, and why."""
    if skips is None or not skips.total:
        return
    console.print(f"[yellow]skipped {skips.total} invalid record(s):[/]")
    for line in skips.lines():
        console.print(f"  {escape(line)}", highlight=False)


def ingest_table(console: Console, done: Ingested) -> None:
    """One row per log file."""
    table = Table(title="logs read", title_justify="left")
    for column in ("file", "format", "runs", "steps", "tool calls", "from", "to"):
        table.add_column(column, overflow="fold")
    for f in done.files:
        table.add_row(escape(str(f.path)), f.format, str(f.runs), str(f.steps), str(f.tool_calls),
                      f"{f.first_at:%Y-%m-%d %H:%M:%S}" if f.first_at else "—",
                      f"{f.last_at:%Y-%m-%d %H:%M:%S}" if f.last_at else "—")
    console.print(table)


def investigation_summary(console: Console, investigation: Investigation) -> None:
    """Attached runs, scope of impact and logging gaps."""
    inv = investigation
    console.print(f"runs attached: {', '.join(inv.runs) or 'none'}", markup=False)
    console.print("[bold]scope of impact[/] (signature: "
                  f"{len(inv.signature.match)} pattern(s)):")
    for pattern in inv.signature.match:
        console.print(f"  • {escape(pattern.description or pattern.kind)}", highlight=False)
    for line in scope_lines(inv.scope):
        console.print(escape(line), highlight=False)
    if not inv.logging_gaps and not inv.runs_checked:  # nothing checked proves nothing
        console.print("[yellow]logging: unknown[/]: no run in scope was found in the logs, "
                      "so none was checked for the four questions")
        return
    if not inv.logging_gaps:
        console.print(f"[green]logging:[/] every one of the {inv.runs_checked} runs in scope "
                      f"answers the four questions")
        return
    console.print(f"[bold red]logging gaps[/] in {len(inv.gap_runs)} of {inv.runs_checked} "
                  f"runs in scope — {ROOT_CAUSE}:")
    for gap in inv.logging_gaps[:20]:
        console.print(f"  {escape(gap.run_id)}: cannot tell {QUESTIONS[gap.question]}: "
                      f"{escape(gap.detail)} ({escape(gap.source)})", highlight=False)
    if len(inv.logging_gaps) > 20:
        console.print(f"  … and {len(inv.logging_gaps) - 20} more")


def timeline_table(console: Console, incident: Incident) -> None:
    """The incident's timeline, then its scope and logging gaps."""
    inv = incident.investigation
    console.print(f"[bold]{incident.id}[/] {escape(incident.agent)} · phase "
                  f"[bold]{incident.phase}[/] · {escape(incident.summary)}")
    if inv is None:
        console.print(f"not investigated yet: run `reinstate investigate {incident.id} --logs "
                      f"FILE…`")
        return
    console.print(f"investigated {inv.investigated_at:%Y-%m-%d %H:%M} UTC by "
                  f"{inv.investigated_by} in {', '.join(f.path for f in inv.logs)}",
                  markup=False)
    table = Table(title="timeline (UTC)", title_justify="left")
    for column in ("when", "event", "run · step", "what", "source"):
        table.add_column(column, overflow="fold")
    for event in inv.timeline:
        where = f"{event.run_id} · {event.step}" if event.run_id is not None else ""
        table.add_row(f"{event.at:%Y-%m-%d %H:%M:%S}" if event.at else "—",
                      KIND[event.kind] + (f" · trigger of {escape(event.trigger)}"
                                          if event.trigger else ""),
                      escape(where), escape(event.summary),
                      escape(event.source))
    console.print(table)
    investigation_summary(console, inv)


def metrics_table(console: Console, metrics: Metrics) -> None:
    """One row per metric; unknown where the logs do not record it."""
    table = Table(title=f"metrics over {metrics.runs} runs", title_justify="left")
    for column in ("metric", "value", "from"):
        table.add_column(column, overflow="fold")
    for m in metrics.metrics:
        if m.value is None:
            value = "[yellow]unknown[/]"
        elif m.unit == "ratio":
            value = percent(m.value, 1)
        elif m.unit == "usd":
            value = f"${m.value:.4f}"
        elif m.unit == "iterations":
            value = f"{m.value:.2f}"
        else:
            value = f"{m.value:g}"
        table.add_row(m.name, value, escape(m.basis))
    console.print(table)
