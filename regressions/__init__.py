"""What went wrong and what must never happen again.

Incidents and their lifecycle, root-cause findings and control changes, and the
regression set every incident feeds. This module is the package's public API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Redaction lives in evalsuite (run files are written there); re-exported for callers here.
    from evalsuite import REDACTION_KINDS, RedactionKind, Redactor, placeholder_pattern
    from regressions._capture import (
        MAX_GUESSED_CALLS,
        TRIGGER_SYNTAX,
        HarmfulSteps,
        build_case,
        default_harmful_steps,
        parse_trigger,
        pick_harmful_steps,
        save_case,
        step_candidates,
    )
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
        Notification,
        NotifyEvent,
        Severity,
        utc_now,
    )
    from regressions._incidents import IncidentBook
    from regressions._investigation import (
        LISTED_RUNS,
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
    from regressions._regression_case import (
        Provenance,
        Recorded,
        RegressionCase,
        Trigger,
        TriggerKind,
        exact_arguments,
    )
    from regressions._resolution import other_layer_fixes, resolution_gaps, review_too_early
    from regressions._scope import ScopeSearch, derive_signature, scope_lines
    from regressions._timeline import (
        build_timeline,
        incident_events,
        short,
        step_summary,
        trigger_marks,
        trigger_steps,
        trigger_summary,
    )

__all__ = [
    "INCIDENT_ID",
    "LAYERS",
    "LISTED_RUNS",
    "LOGGING",
    "MAX_GUESSED_CALLS",
    "PHASES",
    "QUESTIONS",
    "REDACTION_KINDS",
    "ROOT_CAUSE",
    "TRANSITIONS",
    "TRIGGER_SYNTAX",
    "Baseline",
    "CallPattern",
    "ChangeLayer",
    "Containment",
    "ContainmentMode",
    "ControlChange",
    "Event",
    "Finding",
    "FixLocation",
    "HarmfulSteps",
    "IllegalTransition",
    "Incident",
    "IncidentBook",
    "Investigation",
    "Layer",
    "LogFile",
    "LoggingGap",
    "MatchedRun",
    "Notification",
    "NotifyEvent",
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
    "Trigger",
    "TriggerKind",
    "UnknownIncident",
    "build_case",
    "build_timeline",
    "default_harmful_steps",
    "derive_signature",
    "exact_arguments",
    "incident_events",
    "logging_gaps",
    "next_phase",
    "other_layer_fixes",
    "parse_trigger",
    "pick_harmful_steps",
    "placeholder_pattern",
    "resolution_gaps",
    "review_too_early",
    "save_case",
    "scope_lines",
    "short",
    "step_candidates",
    "step_summary",
    "trigger_marks",
    "trigger_steps",
    "trigger_summary",
    "utc_now",
]

# Each public name and the private module that defines it. A name is imported on first use
# (PEP 562), so importing one module of the package does not import all of the others:
# the pytest plugin loads in every xdist worker. A new public name is one line here, one
# in the TYPE_CHECKING block above (what type checkers and IDEs read) and one in __all__.
_EXPORTS: dict[str, str] = {
    "REDACTION_KINDS": "evalsuite",  # re-exported from evalsuite, as above
    "RedactionKind": "evalsuite",
    "Redactor": "evalsuite",
    "placeholder_pattern": "evalsuite",
    "build_case": "regressions._capture",
    "HarmfulSteps": "regressions._capture",
    "MAX_GUESSED_CALLS": "regressions._capture",
    "TRIGGER_SYNTAX": "regressions._capture",
    "parse_trigger": "regressions._capture",
    "pick_harmful_steps": "regressions._capture",
    "step_candidates": "regressions._capture",
    "default_harmful_steps": "regressions._capture",
    "save_case": "regressions._capture",
    "IllegalTransition": "regressions._errors",
    "RegressionsError": "regressions._errors",
    "UnknownIncident": "regressions._errors",
    "INCIDENT_ID": "regressions._incident",
    "LAYERS": "regressions._incident",
    "LOGGING": "regressions._incident",
    "Baseline": "regressions._incident",
    "ChangeLayer": "regressions._incident",
    "Containment": "regressions._incident",
    "ContainmentMode": "regressions._incident",
    "ControlChange": "regressions._incident",
    "Event": "regressions._incident",
    "Notification": "regressions._incident",
    "NotifyEvent": "regressions._incident",
    "Finding": "regressions._incident",
    "FixLocation": "regressions._incident",
    "Incident": "regressions._incident",
    "Layer": "regressions._incident",
    "Severity": "regressions._incident",
    "utc_now": "regressions._incident",
    "IncidentBook": "regressions._incidents",
    "QUESTIONS": "regressions._investigation",
    "CallPattern": "regressions._investigation",
    "Investigation": "regressions._investigation",
    "LogFile": "regressions._investigation",
    "LoggingGap": "regressions._investigation",
    "MatchedRun": "regressions._investigation",
    "OutputPattern": "regressions._investigation",
    "Pattern": "regressions._investigation",
    "Question": "regressions._investigation",
    "Scope": "regressions._investigation",
    "Signature": "regressions._investigation",
    "TimelineEvent": "regressions._investigation",
    "PHASES": "regressions._lifecycle",
    "TRANSITIONS": "regressions._lifecycle",
    "Phase": "regressions._lifecycle",
    "next_phase": "regressions._lifecycle",
    "ROOT_CAUSE": "regressions._logging_gaps",
    "logging_gaps": "regressions._logging_gaps",
    "Provenance": "regressions._regression_case",
    "Recorded": "regressions._regression_case",
    "RegressionCase": "regressions._regression_case",
    "Trigger": "regressions._regression_case",
    "TriggerKind": "regressions._regression_case",
    "exact_arguments": "regressions._regression_case",
    "other_layer_fixes": "regressions._resolution",
    "resolution_gaps": "regressions._resolution",
    "review_too_early": "regressions._resolution",
    "LISTED_RUNS": "regressions._investigation",
    "ScopeSearch": "regressions._scope",
    "derive_signature": "regressions._scope",
    "scope_lines": "regressions._scope",
    "build_timeline": "regressions._timeline",
    "trigger_marks": "regressions._timeline",
    "trigger_steps": "regressions._timeline",
    "trigger_summary": "regressions._timeline",
    "incident_events": "regressions._timeline",
    "short": "regressions._timeline",
    "step_summary": "regressions._timeline",
}


def __getattr__(name: str) -> Any:
    """Import a public name the first time it is used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    """The module's names, the public ones included before their first use."""
    return sorted({*globals(), *__all__})
