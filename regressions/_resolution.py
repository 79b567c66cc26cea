"""What still stands between an incident and restoration, read from its record."""

from __future__ import annotations

from datetime import date, timedelta

from regressions._incident import LAYERS, LOGGING, Incident


def resolution_gaps(incident: Incident) -> list[str]:
    """Every unmet condition of the incident's RCA and resolution, as sentences.

    The gate's control-change check and ``restore`` both use this, so they never disagree.
    """
    name = incident.id
    if incident.containment is None:
        return [f"{name} was never contained: contain it first"]
    gaps = []
    covered = {f.layer for f in incident.findings}
    for layer in LAYERS:
        if layer not in covered:
            gaps.append(f"{name} has no root-cause finding for the {layer} layer")
    found = incident.investigation.gap_runs if incident.investigation is not None else []
    if found and LOGGING not in covered:
        gaps.append(f"{name}'s investigation found logging gaps in {len(found)} run(s), but no "
                    f"logging finding is recorded")
    if not incident.control_changes:
        gaps.append(f"{name} has no control change recorded")
    # A prompt is no control: a layer the RCA says failed is addressed only by a change to
    # a control layer, or a prompt change beside real ones would "fix" a gap left open.
    addressed = {ref for c in incident.control_changes if c.layer != "prompt"
                 for ref in c.addresses}
    by_prompt = {ref for c in incident.control_changes if c.layer == "prompt"
                 for ref in c.addresses}
    layers_changed = {c.layer for c in incident.control_changes}
    prompt_only = layers_changed == {"prompt"}
    for finding in incident.findings:
        # A logging gap is proven fixed by the gate's logging check on recent logs, not by
        # a control change replayed against the harm.
        if not finding.gap or finding.layer == LOGGING or finding.id in addressed:
            continue
        if finding.id not in by_prompt:
            gaps.append(
                f"{name} finding {finding.id} ({finding.layer}) has a gap that no control "
                f"change addresses"
            )
        elif not prompt_only:  # a prompt-only resolution is named once, below
            gaps.append(
                f"{name} finding {finding.id} ({finding.layer}) has a gap that only a prompt "
                f"change addresses: a control-layer gap needs a control change"
            )
    if prompt_only:
        control_gaps = [f.id for f in incident.findings if f.gap and f.layer != LOGGING]
        if control_gaps:
            gaps.append(
                f"{name} is resolved only by prompt changes, but findings "
                f"{', '.join(control_gaps)} record control-layer gaps"
            )
        elif not incident.no_control_gap_reason:
            gaps.append(
                f"{name} is resolved only by prompt changes: record why no control layer "
                f"failed (no_control_gap_reason)"
            )
    return gaps


def other_layer_fixes(incident: Incident) -> list[str]:
    """Warnings for control-layer gaps that only changes on other layers address.

    A compensating control can be the right fix (a review of every refund for a permission
    too wide), and its replay proves it; but the layer the root cause names is left as it
    was, and a reader of the verdict should see that rather than infer it.
    """
    warnings = []
    for finding in incident.findings:
        if not finding.gap or finding.layer == LOGGING:
            continue
        layers = {c.layer for c in incident.control_changes
                  if c.layer != "prompt" and finding.id in c.addresses}
        if layers and finding.layer not in layers:
            warnings.append(
                f"{incident.id} finding {finding.id} ({finding.layer}) is addressed only by "
                f"a change on {', '.join(sorted(layers))}: the {finding.layer} layer the root "
                f"cause names is left as it was")
    return warnings


def review_too_early(incident: Incident, on: date | None = None) -> str | None:
    """The day ``incident`` was detected (UTC) when its post-incident review (``on``, else
    the one its file records) is dated before it in every time zone, so it cannot be a
    review of this incident; None when it is not (or none is recorded)."""
    review = on or incident.post_incident_review
    detected = incident.detected_at.date()
    # The local date of a detection is at most one day before its UTC date.
    if review is None or review >= detected - timedelta(days=1):
        return None
    return detected.isoformat()
