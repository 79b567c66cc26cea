"""How verdicts, incidents and modes look on a terminal."""

from __future__ import annotations

import math
from datetime import timedelta

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gates._store.access import ModeReading
from gates._verdict.check_results import (
    CasesReplay,
    CoverageReplay,
    DecisionReplay,
    EvalsResult,
    PromptReplay,
    ReplayRow,
)
from gates._verdict.verdict import ChangeVerification, Verdict
from gates._visible import percent, visible
from regressions import Incident

STYLE = {"pass": "green", "fail": "red", "error": "magenta", "inconclusive": "yellow"}


def plain(text: object) -> str:
    """Text a verdict or an incident quotes (an agent's answer, a logged call, a file's
    words) as rich markup that shows it literally: its brackets escaped (``[/x]`` in an
    answer crashed the table, ``[green]`` restyled it) and each control or hidden character
    written out (``\\x1b``, ``\\n``, ``\\u202e``), so quoted text can neither move the
    cursor, reorder what follows nor start a line of its own that reads like the tool's."""
    return escape(visible(str(text), keep="\t"))


def outcome(text: str) -> str:
    """An outcome word, coloured."""
    return f"[bold {STYLE.get(text, 'white')}]{text.upper()}[/]"


def duration(delta: timedelta) -> str:
    """``2h 35m``, a started minute counted whole: floored, a containment 30 seconds past
    its 4h target read "4h 00m: MISSED the 4h target"."""
    minutes = math.ceil(delta.total_seconds() / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


def verdict_table(console: Console, verdict: Verdict, *, findings: int = 3,
                  restore_needs: list[str] | None = None) -> None:
    """One row per check, then the verdict and what it allows.

    ``restore_needs`` is what ``restore`` would still refuse for (its own
    :func:`restore_blockers`): a passing verdict does not restore while any is unmet, so the
    closing line names them instead of promising a restore.
    """
    table = Table(title=f"gate {plain(verdict.agent)} (agent "
                        f"{plain(verdict.fingerprint.agent_version)})",
                  title_justify="left", show_lines=False)
    table.add_column("check")
    table.add_column("outcome")
    table.add_column("summary", overflow="fold")
    for check in verdict.checks:
        detail = plain(check.summary)
        shown = check.findings[:findings]
        if shown:
            detail += "".join(f"\n  • {plain(f)}" for f in shown)
        if len(check.findings) > findings:
            detail += f"\n  … and {len(check.findings) - findings} more"
        table.add_row(plain(check.name), outcome(check.outcome), detail)
    console.print(table)
    if not verdict:
        allows = "may NOT be restored to full operation"
    elif restore_needs:
        allows = ("may NOT be restored yet: restore still needs: "
                  + "; ".join(plain(need) for need in restore_needs))
    else:
        allows = "may be restored to full operation"
    console.print(f"verdict: {outcome(verdict.outcome)} — {plain(verdict.agent)} {allows}")


def case_table(console: Console, verdict: Verdict, *, every: bool = False) -> None:
    """The eval cases that did not pass, a row each (``every``: all cases), and how many
    passing ones are not listed; nothing when the evals check has no cases."""
    data = next((c.data for c in verdict.checks if isinstance(c, EvalsResult)), None)
    if data is None or not data.cases:
        return
    listed = data.cases if every else [f for f in data.cases if f.outcome != "pass"]
    if listed:
        table = Table(title="eval cases" if every else "eval cases that did not pass",
                      title_justify="left")
        for column in ("case", "outcome", "passed", "interval", "note"):
            table.add_column(column, overflow="fold")
        for figures in listed:
            notes = [n for n in (
                "regression" if figures.regression else "",
                "flaky" if figures.flaky else "",
                f"{figures.trials_needed} trials would decide"
                if figures.outcome == "inconclusive" and figures.trials_needed else "",
                "stopped by a control" if figures.stopped_by_control else "") if n]
            low, high = figures.interval
            table.add_row(plain(figures.id), outcome(figures.outcome),
                          f"{round(figures.pass_rate * figures.trials)}/{figures.trials}",
                          f"{percent(low)}–{percent(high)}", ", ".join(notes))
        console.print(table)
    hidden = len(data.cases) - len(listed)
    if hidden:
        console.print(f"{hidden:,} passing eval case{'s' if hidden != 1 else ''} not listed "
                      f"(--all-cases lists them; the JSON verdict holds every case)",
                      highlight=False)


def verification_table(console: Console, verifications: list[ChangeVerification]) -> None:
    """Per control change: the harm's decision before (baseline) and after (today)."""
    if not verifications:
        return
    table = Table(title="control changes: baseline → today", title_justify="left")
    for column in ("change", "layer", "replayed", "before", "after (deciding rule)", "verified"):
        table.add_column(column, overflow="fold")
    for v in verifications:
        rows: list[ReplayRow | None] = [*v.replays] or [None]
        for i, row in enumerate(rows):
            replayed, before, after, rule = _replay_cells(row)
            after = plain(after) + (f" ({plain(rule)})" if rule else "")
            table.add_row(
                plain(f"{v.incident} {v.change}") if i == 0 else "",
                plain(v.layer) if i == 0 else "", plain(replayed), plain(before), after,
                ("[green]yes[/]" if v.verified else f"[red]no[/]: {plain(v.reason)}")
                if i == 0 else "",
            )
    console.print(table)


def _named_call(step: str) -> str:
    """A replayed step with its call's arguments cut: the full call is in the JSON verdict;
    the table names it."""
    return step.split("(")[0] + "(…)" if "(" in step else step


def _replay_cells(row: ReplayRow | None) -> tuple[str, str, str, str | None]:
    """What was replayed, the decision or count before and after, and today's rule."""
    if isinstance(row, CasesReplay):
        named = row.model_copy(update={"step": _named_call(row.step)})
        return named.what(), row.before, row.after, row.after_rule
    if isinstance(row, DecisionReplay):
        return _named_call(row.step), row.before, row.after, row.after_rule
    if isinstance(row, CoverageReplay):
        return row.input_type, str(row.before), str(row.after), None
    if isinstance(row, PromptReplay):
        return row.case, "", str(row.outcome), None
    return "", "", "", None


def incident_summary(console: Console, incident: Incident) -> None:
    """The incident's phase, clock and resolution at a glance."""
    console.print(f"[bold]{plain(incident.id)}[/] {plain(incident.agent)} · "
                  f"{plain(incident.severity)} · phase [bold]{incident.phase}[/]")
    console.print(f"  {plain(incident.summary)}")
    console.print(f"  detected {incident.detected_at:%Y-%m-%d %H:%M} UTC")
    if incident.containment is not None:
        c = incident.containment
        taken = incident.time_to_contain
        assert taken is not None
        met = incident.containment_target_met
        verdict = ("[green]within[/]" if met else "[bold red]MISSED[/]")
        console.print(f"  contained {c.contained_at:%Y-%m-%d %H:%M} UTC in {duration(taken)}: "
                      f"{verdict} the {c.target_hours:g}h target · mode {c.mode} · notified "
                      f"{plain(', '.join(c.notified))}")
        console.print(f"  scope: {plain(c.scope)}")
    for n in incident.notifications:
        how = f" by {n.service}" if n.service else ""
        said = ("[green]sent[/]" if n.status == "sent"
                else f"[bold red]{n.status.replace('_', ' ')}[/]")
        console.print(f"  told {plain(n.audience)}{plain(how)} of the {n.event} at "
                      f"{n.at:%H:%M:%S} UTC: {said}"
                      + (f" ({plain(n.reason)})" if n.reason else ""), highlight=False)
    for finding in incident.findings:
        mark = "[red]gap[/]" if finding.gap else "[green]no gap[/]"
        console.print(f"  {plain(finding.id)} {finding.layer}: {mark} — "
                      f"{plain(finding.description)}")
    for change in incident.control_changes:
        console.print(f"  {plain(change.id)} {change.layer} (addresses "
                      f"{plain(', '.join(change.addresses) or '—')}): "
                      f"{plain(change.description)}")
    if incident.post_incident_review is not None:
        console.print(f"  post-incident review: {incident.post_incident_review.isoformat()}")


def mode_line(reading: ModeReading) -> str:
    """``refund-agent: review (since …, by …: reason)``."""
    text = f"{plain(reading.agent)}: [bold]{reading.mode}[/]"
    if reading.since is not None:
        text += (f" since {reading.since:%Y-%m-%d %H:%M} UTC by {plain(reading.actor)} "
                 f"({plain(reading.reason)})")
    elif reading.degraded:
        text += f" — {plain(reading.degraded)}; failing closed"
    return text
