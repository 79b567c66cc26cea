"""Which incidents a verdict vouches for: the one rule ``check``, ``check --verdict``,
``restore`` and the mode read apply before an incident counts as restored or closed.

A verdict covers an incident when it verified every control change the incident records
(the gate verifies the changes of every incident that is not closed, restored ones too)
and was made after the incident was contained (a verdict from before verified another
incident of its id, one whose file was deleted and whose id was opened again), or when
the incident was closed, and everything its file records happened, before the verdict was
made (the gate no longer looks at a closed incident). Nothing else covers it:
a verdict made before an incident was recorded proves nothing about it, whatever the
incident file or the state store says of it. With a public key configured the verdict
that clears is signed, so neither a store edit nor a hand-edited phase can clear on its own.

:func:`covers` decides on plain values, so the light check (which loads no model) applies
the very same rule to the facts it remembers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gates._verdict.stored import DecidedVerdict
    from regressions import Incident

Verified = Collection[tuple[str, str, str]]
"""(incident, change, layer) of every change a verdict verified."""


def covers(verified: Verified, made: datetime, incident: str,
           changes: Sequence[tuple[str, str]], *, contained: datetime | None, closed: bool,
           last_recorded: datetime) -> bool:
    """Whether a verdict made at ``made`` that verified ``verified`` vouches for
    ``incident`` (its control changes as (id, layer); when it was contained; whether it is
    closed; the latest time its file records) being restored or closed."""
    # Changes are recorded after containment: a verdict made before it verified changes of
    # the same ids of another incident of this id, never these.
    current = contained is None or contained <= made
    if changes and current and all((incident, change, layer) in verified
                                   for change, layer in changes):
        return True
    return closed and last_recorded <= made


def verified_changes(verifications: Iterable[Any]) -> set[tuple[str, str, str]]:
    """(incident, change, layer) of each verification that verified."""
    return {(v.incident, v.change, v.layer) for v in verifications if v.verified}


def coverage_gap(verdict: DecidedVerdict, incident: Incident, which: str) -> str | None:
    """Why ``verdict`` does not vouch for ``incident`` (:func:`covers`), as a reason that
    names both and what to do; None when it does. ``which`` names the verdict."""
    gap = uncovered(verdict, incident, which)
    return None if gap is None else f"{gap}: that verdict does not cover it; gate again"


def uncovered(verdict: DecidedVerdict, incident: Incident, which: str) -> str | None:
    """What ``verdict`` lacks to vouch for ``incident`` (:func:`covers`), naming both;
    None when it does."""
    verified = verified_changes(verdict.verifications)
    changes = [(c.id, c.layer) for c in incident.control_changes]
    closed = incident.closed_at is not None
    last = incident.last_recorded_at
    contained = incident.containment.contained_at if incident.containment else None
    if covers(verified, verdict.created_at, incident.id, changes, contained=contained,
              closed=closed, last_recorded=last):
        return None
    missing = [f"{change} ({layer})" for change, layer in changes
               if (incident.id, change, layer) not in verified]
    stamp = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
    if changes and not missing and contained is not None:  # contained after the verdict
        what = (f"any control change of it (it was contained after, at "
                f"{contained.strftime('%Y-%m-%d %H:%M UTC')}; the changes of its id it "
                f"verified were another incident's)")
    else:
        what = ("any control change of it (its file records none)" if not changes
                else "its control changes" if len(missing) == len(changes)
                else ", ".join(missing))
    gap = f"{incident.id} is {incident.phase}, but {which} ({stamp}) did not verify {what}"
    if closed:
        gap += (f" and was not made after its file's last record "
                f"({last.strftime('%Y-%m-%d %H:%M UTC')})")
    return gap
