"""``reinstate check AGENT``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from gates._cli._common import ctx
from gates._response.check_light import light_clearance
from gates._visible import visible


@click.command("check")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option("--verdict", "verdict_file", type=click.Path(path_type=Path),
              help="Check this signed verdict (the gate's --attestation file) instead of the "
                   "state store: its signature, agent, outcome and fingerprint.")
@click.option("--public-key", type=click.Path(path_type=Path),
              help="The Ed25519 public key (PEM) verdicts must be signed with "
                   "(default: [signing] public_key in reinstate.toml).")
def command(agent: str, as_json: bool, verdict_file: Path | None,
            public_key: Path | None) -> int:
    """Exit 0 only if AGENT is cleared for full operation at today's fingerprint.

    For deploy jobs: it reads the incidents, the latest verdict and the mode, loads the
    controls, and runs no agent. Exit 1 lists every reason; exit 3 when the state store
    cannot be read.
    With --verdict it reads the signed verdict file instead of the store (a public key
    is then required: an unsigned file proves nothing).
    """
    c = ctx()
    light = (light_clearance(agent, c.workspace_dir)
             if verdict_file is None and public_key is None else None)
    if light is not None:  # an unchanged workspace, cleared: what the full check answers
        cleared, reasons, answer = light["cleared"], light["reasons"], light
        signature, notes, outcome = light["signature"], light["notes"], light["verdict_outcome"]
        created = datetime.fromisoformat(light["verdict_created_at"])
        stamp = f"{created:%Y-%m-%d %H:%M} UTC"
        return _show(agent, as_json, cleared, reasons, answer, signature, notes, stamp,
                     outcome)
    # Imported here: the light check above loads no model.
    from gates._response.check_facts import remember_check_inputs
    from gates._response.clearance import check, check_attested

    workspace = c.workspace()
    if verdict_file is not None:
        attested = check_attested(workspace, agent, verdict_file, public_key)
        cleared, reasons = attested.cleared, attested.reasons
        answer = attested.model_dump(mode="json")
        signature = (f"signed by key {attested.keyid[:12]}… ({attested.envelope})"
                     if attested.signed else "")
        stamp = (f"{attested.verdict_created_at:%Y-%m-%d %H:%M} UTC"
                 if attested.verdict_created_at else "")
        outcome = attested.verdict_outcome
        notes = []
    else:
        clearance = check(workspace, agent, public_key=public_key)
        cleared, reasons = clearance.cleared, clearance.reasons
        answer = clearance.model_dump(mode="json")
        signature = clearance.signature
        notes = clearance.notes
        stamp = (f"{clearance.verdict_created_at:%Y-%m-%d %H:%M} UTC"
                 if clearance.verdict_created_at else "")
        outcome = clearance.verdict_outcome
        if public_key is None:  # so the next check of these files is a light one
            remember_check_inputs(workspace, agent)
    return _show(agent, as_json, cleared, reasons, answer, signature, notes, stamp, outcome)


def _show(agent: str, as_json: bool, cleared: bool, reasons: list[str], answer: dict[str, Any],
          signature: str, notes: list[str], stamp: str, outcome: str | None) -> int:
    """Print the answer (plain lines, or JSON); the exit code."""
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return 0 if cleared else 1
    # click, not rich: plain lines in a deploy job's log, colour on a terminal, and the
    # command deploy jobs call most does not load rich. A reason quotes text someone typed
    # (a summary, a mode's reason, an agent's name): a terminal escape or a bidi override in
    # it is shown as its escape, not obeyed.
    agent, signature, stamp = visible(agent), visible(signature), visible(stamp)
    if cleared:
        click.echo(f"{agent}: {click.style('cleared', fg='green', bold=True)} for full "
                   f"operation (verdict {visible(str(outcome))} of {stamp}, on today's files)")
    else:
        click.echo(f"{agent}: {click.style('NOT cleared', fg='red', bold=True)} for full "
                   f"operation:")
        for reason in reasons:
            click.echo(f"  - {visible(reason)}")
    if signature:
        click.echo(f"signature: {signature}")
    for note in notes:
        click.echo(f"note: {visible(note)}")
    return 0 if cleared else 1
