"""What went wrong and what must never happen again.

Incidents and their lifecycle, root-cause findings and control changes, and the
regression set every incident feeds. This module is the package's public API.
"""

from __future__ import annotations

from regressions._capture import build_case, default_harmful_steps, save_case
from regressions._errors import IllegalTransition, RegressionsError, UnknownIncident
from regressions._incident import (
    INCIDENT_ID,
    LAYERS,
    Baseline,
    ChangeLayer,
    Containment,
    ContainmentMode,
    ControlChange,
    Event,
    Finding,
    FixLocation,
    Incident,
    Layer,
    Severity,
    utc_now,
)
from regressions._incidents import IncidentBook
from regressions._lifecycle import PHASES, TRANSITIONS, Phase, next_phase
from regressions._regression_case import Provenance, Recorded, RegressionCase, exact_arguments
from regressions._resolution import resolution_gaps

__all__ = [
    "INCIDENT_ID",
    "LAYERS",
    "PHASES",
    "TRANSITIONS",
    "Baseline",
    "ChangeLayer",
    "Containment",
    "ContainmentMode",
    "ControlChange",
    "Event",
    "Finding",
    "FixLocation",
    "IllegalTransition",
    "Incident",
    "IncidentBook",
    "Layer",
    "Phase",
    "Provenance",
    "Recorded",
    "RegressionCase",
    "RegressionsError",
    "Severity",
    "UnknownIncident",
    "build_case",
    "default_harmful_steps",
    "exact_arguments",
    "next_phase",
    "resolution_gaps",
    "save_case",
    "utc_now",
]
