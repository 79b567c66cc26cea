"""Showing a backtest: a terminal table, and a Markdown section for CI step summaries."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gates._backtest.model import Backtest, LabelledStep

SHOWN = 10  # labelled items listed per bucket in the terminal and in Markdown


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def headline(result: Backtest) -> str:
    """One line: what was read and what was decided."""
    t = result.totals
    against = f" against {result.compare}" if result.compare else ""
    return (f"{result.agent}: {result.controls} controls{against} over {t.runs} runs, "
            f"{t.calls} tool calls, {t.outputs} outputs: {t.calls_denied} calls denied, "
            f"{t.calls_routed} sent to a person ({_percent(result.review_load.share)}), "
            f"{t.fail_closed} fail-closed decisions")


def show(console: Console, result: Backtest) -> None:
    """Print the backtest as tables."""
    console.print(escape(headline(result)))
    if result.inconclusive is not None:
        console.print(f"[bold]INCONCLUSIVE[/]: {escape(result.inconclusive)}")
    rules = Table(title="What each rule did", title_justify="left")
    for name in ("rule", "effect", "calls", "outputs", "runs", "fail-closed", "e.g."):
        rules.add_column(name, overflow="fold")
    for tally in result.rules:
        example = tally.examples[0].where if tally.examples else ""
        closed = str(tally.fail_closed) + (f" ({tally.first_error})" if tally.first_error
                                           else "")
        rules.add_row(escape(tally.rule), tally.effect, str(tally.calls), str(tally.outputs),
                      str(tally.runs), escape(closed), escape(example))
    console.print(rules if result.rules else "no rule fired on any recorded step")
    load = Table(title="Review load", title_justify="left")
    for name in ("tool", "calls", "to a person", "of the tool's", "of all calls"):
        load.add_column(name)
    for tool in result.review_load.tools:
        load.add_row(escape(tool.tool), str(tool.calls), str(tool.routed),
                     _percent(tool.share_of_tool), _percent(tool.share_of_all))
    console.print(load)
    if result.comparison is not None:
        c = result.comparison
        console.print(f"Against {escape(c.against)}: {c.newly_denied} newly denied, "
                      f"{c.newly_routed} newly routed, {c.newly_allowed} newly allowed")
        for change in c.changes:
            where = change.examples[0].where if change.examples else ""
            console.print(f"  {change.kind}: {change.steps} by {escape(change.rule)} "
                          f"(e.g. {escape(where)})")
    if result.confusion is not None:
        for title, items in _buckets(result):
            console.print(f"{title}: {len(items)}")
            for item in items[:SHOWN]:
                console.print(f"  {escape(_item(item))}")
            if len(items) > SHOWN:
                console.print(f"  … and {len(items) - SHOWN} more (--json lists every one)")
    for note in result.notes:
        console.print(f"[dim]note: {escape(note)}[/]")


def _buckets(result: Backtest) -> list[tuple[str, list[LabelledStep]]]:
    c = result.confusion
    assert c is not None
    return [("Harmful, still allowed", c.harmful_allowed), ("Harmful, stopped", c.harmful_stopped),
            ("Good, blocked", c.good_blocked), ("Good, sent to a person", c.good_reviewed),
            ("Good, left alone", c.good_left_alone)]


def _item(item: LabelledStep) -> str:
    step = f" step {item.step}" if item.step is not None else ""
    at = f" (at step {item.stopped_at})" if item.stopped_at is not None else ""
    decided = "allowed" if item.effect == "allow" else f"{item.effect} by {item.rule}{at}"
    return f"{item.run_id}{step} at {item.where}: {decided}: {item.reason} [{item.source}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: Backtest) -> str:
    """The backtest as a Markdown section (for ``$GITHUB_STEP_SUMMARY``)."""
    lines = [f"## Backtest: {_cell(result.agent)}", "", _cell(headline(result)), ""]
    if result.inconclusive is not None:
        lines += [f"**Inconclusive**: {_cell(result.inconclusive)}", ""]
    if result.rules:
        lines += ["| rule | effect | calls | outputs | runs | fail-closed | e.g. |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for t in result.rules:
            example = t.examples[0].where if t.examples else ""
            lines.append(f"| `{_cell(t.rule)}` | {t.effect} | {t.calls} | {t.outputs} | "
                         f"{t.runs} | {t.fail_closed} | {_cell(example)} |")
        lines.append("")
    lines += ["| tool | calls | to a person | of the tool's | of all calls |",
              "|---|---:|---:|---:|---:|"]
    for tool in result.review_load.tools:
        lines.append(f"| `{_cell(tool.tool)}` | {tool.calls} | {tool.routed} | "
                     f"{_percent(tool.share_of_tool)} | {_percent(tool.share_of_all)} |")
    lines.append("")
    if result.comparison is not None:
        c = result.comparison
        lines += [f"Against `{_cell(c.against)}`: **{c.newly_denied}** newly denied, "
                  f"**{c.newly_routed}** newly routed, **{c.newly_allowed}** newly allowed", ""]
        lines += [f"- {change.kind}: {change.steps} by `{_cell(change.rule)}`"
                  for change in c.changes]
        lines.append("")
    if result.confusion is not None:
        for title, items in _buckets(result):
            lines.append(f"**{title}: {len(items)}**")
            lines += [f"- {_cell(_item(item))}" for item in items[:SHOWN]]
            lines.append("")
    lines += [f"_{_cell(note)}_" for note in result.notes]
    return "\n".join(lines) + "\n"
