"""What went wrong and what must never happen again.

Incidents and their lifecycle, root-cause findings and control changes, and the
regression set every incident feeds. This module is the package's public API.
"""

from __future__ import annotations

# Redaction lives in evalsuite (run files are written there); re-exported for callers here.
from evalsuite import REDACTION_KINDS, RedactionKind, Redactor, placeholder_pattern
from regressions._capture import build_case, default_harmful_steps, save_case
from regressions._errors import IllegalTransition, RegressionsError, UnknownIncident
from regressions._incident import (
    INCIDENT_ID,
    LAYERS,
    LOGGING,
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
from regressions._investigation import (
    QUESTIONS,
    CallPattern,
    Investigation,
    LogFile,
    LoggingGap,
    MatchedRun,
    OutputPattern,
    Pattern,
    Question,
    Scope,
    Signature,
    TimelineEvent,
)
from regressions._lifecycle import PHASES, TRANSITIONS, Phase, next_phase
from regressions._logging_gaps import ROOT_CAUSE, logging_gaps
from regressions._regression_case import Provenance, Recorded, RegressionCase, exact_arguments
from regressions._resolution import resolution_gaps
from regressions._scope import LISTED_RUNS, ScopeSearch, derive_signature, scope_lines
from regressions._timeline import build_timeline, incident_events, short, step_summary

__all__ = [
    "INCIDENT_ID",
    "LAYERS",
    "LISTED_RUNS",
    "LOGGING",
    "PHASES",
    "QUESTIONS",
    "REDACTION_KINDS",
    "ROOT_CAUSE",
    "TRANSITIONS",
    "Baseline",
    "CallPattern",
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
    "Investigation",
    "Layer",
    "LogFile",
    "LoggingGap",
    "MatchedRun",
    "OutputPattern",
    "Pattern",
    "Phase",
    "Provenance",
    "Question",
    "Recorded",
    "RedactionKind",
    "Redactor",
    "RegressionCase",
    "RegressionsError",
    "Scope",
    "ScopeSearch",
    "Severity",
    "Signature",
    "TimelineEvent",
    "UnknownIncident",
    "build_case",
    "build_timeline",
    "default_harmful_steps",
    "derive_signature",
    "exact_arguments",
    "incident_events",
    "logging_gaps",
    "next_phase",
    "placeholder_pattern",
    "resolution_gaps",
    "save_case",
    "scope_lines",
    "short",
    "step_summary",
    "utc_now",
]
