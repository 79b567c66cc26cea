"""``reinstate rca INC``: root cause through the control layers, guided by the replay."""

from __future__ import annotations

from typing import get_args

import click
from rich.markup import escape

from gates._cli._common import ctx
from gates._gate.rca import SUGGESTED_FIX, analyse_incident, contradictions
from gates._response.actions import record_finding
from regressions import LAYERS, FixLocation, resolution_gaps


@click.command("rca")
@click.argument("incident_id")
@click.option("--no-input", is_flag=True,
              help="Only show the analysis and check the recorded findings; ask nothing.")
def command(incident_id: str, no_input: bool) -> int:
    """Walk the four control layers of INC: what the replay shows, then record each finding.

    For every layer without a finding you are asked whether it had a gap (the replay's
    answer is the default), what happened, the evidence and where the fix belongs. Exit 0
    when every layer has a finding and none contradicts the replay, else 1.
    """
    c = ctx()
    workspace = c.workspace()
    analysis = analyse_incident(workspace, incident_id)
    incident = workspace.incidents().load(incident_id)
    recorded = {f.layer: f for f in incident.findings}
    for layer in LAYERS:
        found = analysis[layer]
        shown = {True: "[red]gap[/]", False: "[green]no gap[/]", None: "[yellow]unknown[/]"}
        c.out.print(f"[bold]{layer}[/]: replay says {shown[found.gap]}")
        for fact in found.facts:
            c.out.print(f"  · {fact}", highlight=False, markup=False)  # quotes the run
        finding = recorded.get(layer)
        if finding is not None:
            c.out.print(f"  recorded {finding.id}: {'gap' if finding.gap else 'no gap'} — "
                        f"{finding.description}", highlight=False, markup=False)
        elif not no_input:
            gap = click.confirm("  Did this layer have a gap?", default=found.gap is not False)
            description = click.prompt("  What did it do or fail to do",
                                       default=found.summary)
            evidence = click.prompt("  Evidence (comma separated)",
                                    default=", ".join(found.evidence) or "-")
            fix = click.prompt("  Where does the fix belong",
                               type=click.Choice(get_args(FixLocation)),
                               default=SUGGESTED_FIX[layer])
            made = record_finding(workspace, incident_id, layer=layer, gap=gap,
                                  description=description, actor=c.actor,
                                  evidence=[e.strip() for e in evidence.split(",")
                                            if e.strip() and e.strip() != "-"],
                                  fix_location=fix)
            c.out.print(f"  recorded {made.id}")
    incident = workspace.incidents().load(incident_id)
    problems = [g for g in resolution_gaps(incident) if "root-cause finding" in g]
    problems += contradictions(incident, analysis)
    for problem in problems:
        c.err.print(f"[yellow]•[/] {escape(problem)}", highlight=False)
    if not problems:
        c.out.print(f"{incident_id}: a finding for every layer, consistent with the replay")
    return 1 if problems else 0
