"""``reinstate incident …``: open, show, list, and record the RCA and the resolution."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import get_args

import click

from gates._cli._common import ctx, split_list
from gates._reports.terminal import incident_summary
from gates._response.actions import open_incident, record_change, record_finding, schedule_review
from gates._visible import visible
from regressions import ChangeLayer, FixLocation, Layer, Severity


@click.group("incident")
def command() -> None:
    """Open incidents and record their root cause and resolution."""


def _aware(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 time like 2026-11-26T02:10:00Z, got "
                                 f"{text!r}") from None


@command.command("open")
@click.argument("agent")
@click.option("--summary", required=True, help="What happened, in a sentence.")
@click.option("--severity", required=True, type=click.Choice(get_args(Severity)))
@click.option("--detected-at", help="When the harm was detected (ISO 8601 with timezone; "
              "default now). The containment clock starts here.")
def open_(agent: str, summary: str, severity: Severity, detected_at: str | None) -> int:
    """Open an incident for AGENT; prints its id."""
    c = ctx()
    # An invalid [notify] does not stop it: opening is the first step of a containment.
    workspace = c.workspace(containing=True)
    incident = open_incident(workspace, agent, summary=summary, severity=severity,
                             actor=c.actor, detected_at=_aware(detected_at))
    c.out.print(incident.id)
    if workspace.notify_problem is not None:
        c.err.print(f"warning: {workspace.notify_problem}; contain {incident.id} all the "
                    f"same: it will tell nobody, so tell them yourself", markup=False,
                    highlight=False, soft_wrap=True)
    return 0


@command.command("show")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def show(incident_id: str, as_json: bool) -> int:
    """Show an incident: phase, clock, findings and changes."""
    c = ctx()
    incident = c.workspace().incidents().load(incident_id)
    if as_json:
        click.echo(json.dumps(incident.model_dump(mode="json"), indent=2))
    else:
        incident_summary(c.out, incident)
    return 0


@command.command("list")
@click.option("--agent", help="Only this agent's incidents.")
def list_(agent: str | None) -> int:
    """List incidents with their phase."""
    c = ctx()
    for incident in c.workspace().incidents().all(agent):
        # One incident a line, its summary as typed: never markup (an unclosed "[/]" crashed
        # the list), its line breaks and tabs written out so it cannot add a row.
        c.out.print(f"{incident.id}\t{incident.agent}\t{incident.severity}\t{incident.phase}\t"
                    f"{visible(incident.summary)}", highlight=False, markup=False)
    return 0


@command.command("finding")
@click.argument("incident_id")
@click.option("--layer", required=True, type=click.Choice(get_args(Layer)))
@click.option("--gap/--no-gap", required=True, help="Did this layer fail to stop the harm?")
@click.option("--description", required=True, help="What the layer did or failed to do.")
@click.option("--evidence", multiple=True, help="A run step, case id or rule id (repeatable).")
@click.option("--fix-location", type=click.Choice(get_args(FixLocation)))
def finding(incident_id: str, layer: Layer, gap: bool, description: str,
            evidence: tuple[str, ...], fix_location: FixLocation | None) -> int:
    """Record the root-cause finding for one control layer."""
    c = ctx()
    recorded = record_finding(c.workspace(), incident_id, layer=layer, gap=gap,
                              description=description, evidence=evidence,
                              fix_location=fix_location, actor=c.actor)
    c.out.print(f"{recorded.id} {layer}: {'gap' if gap else 'no gap'}")
    return 0


@command.command("change")
@click.argument("incident_id")
@click.option("--layer", required=True, type=click.Choice(get_args(ChangeLayer)))
@click.option("--addresses", multiple=True,
              help="Finding ids it addresses, e.g. F-1,F-3 (repeatable: all apply).")
@click.option("--description", required=True, help="What changed.")
def change(incident_id: str, layer: ChangeLayer, addresses: tuple[str, ...],
           description: str) -> int:
    """Record a control change; the gate verifies it against the recorded harm."""
    c = ctx()
    recorded = record_change(c.workspace(), incident_id, layer=layer,
                             addresses=split_list(",".join(addresses)), description=description,
                             actor=c.actor)
    c.out.print(f"{recorded.id} {layer}")
    return 0


@command.command("review")
@click.argument("incident_id")
@click.option("--on", "day", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="The date of the post-incident review.")
def review(incident_id: str, day: datetime) -> int:
    """Schedule the post-incident review."""
    c = ctx()
    on: date = day.date()
    schedule_review(c.workspace(), incident_id, on=on, actor=c.actor)
    c.out.print(f"{incident_id}: post-incident review on {on.isoformat()}")
    return 0
