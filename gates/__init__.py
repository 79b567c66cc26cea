"""The controls, the gate and the way back to full operation.

Everything the CLI does is callable from here: open and contain incidents, capture
regression cases, run the gate, restore, read an agent's mode at run time, check a
deploy's clearance, and write the verdict report and the postmortem.
This module is the package's public API; the ``_modules`` behind it are private.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gates._attestation import (
        PREDICATE_TYPE,
        SIGNING_KEY_ENV,
        Attestation,
        SignatureInvalid,
        attestation_path,
        generate_key_pair,
        load_public_key,
        load_signing_key,
        read_envelope,
        sign_verdict,
        take_signing_key,
        verify_attestation,
    )
    from gates._audit import verify_audit
    from gates._baseline import load_baseline, snapshot
    from gates._checks import CHECKS, Evidence, register
    from gates._clearance import AttestedClearance, Clearance, check, check_attested
    from gates._conditions import Condition, Situation
    from gates._config import Config, Workspace
    from gates._controls import (
        CONTROL_FILES,
        Acceptance,
        Checklist,
        Controls,
        Permissions,
        ReviewRouting,
        ReviewRule,
        Risk,
        ToolPermission,
        load_controls,
    )
    from gates._demo import run_demo
    from gates._engine import engine_for, policy_of, tool_specs
    from gates._errors import GatesError, Refused, StoreUnavailable, UnknownAgent
    from gates._evals import run_evals
    from gates._fingerprint import Fingerprint, fingerprint
    from gates._ingest import FileSummary, Ingested, ingest
    from gates._init import init_workspace
    from gates._inputs import GateInputs, load_inputs
    from gates._investigation import Investigated, investigate
    from gates._junit import junit_xml
    from gates._pipeline import decide, run_checks, run_gate
    from gates._policy import Decision, decide_call, route_call, route_output
    from gates._postmortem import Postmortem, postmortem, postmortem_markdown
    from gates._ratchet import approve_against, approve_loosening, ratchet_status
    from gates._ratchet_approvals import RatchetApproval, RatchetApprovals, approvals_path
    from gates._ratchet_git import RefSnapshot, ratchet_against, read_ref
    from gates._ratchet_terms import Loosening, RatchetTerms
    from gates._rca import LayerAnalysis, analyse_incident
    from gates._report import Report, report_html, report_markdown, verdict_diff, verdict_report
    from gates._response import (
        Captured,
        Contained,
        capture,
        contain,
        open_incident,
        record_change,
        record_finding,
        schedule_review,
    )
    from gates._restore import Restored, restore, restore_blockers
    from gates._schemas import SCHEMAS, schema_text, write_schemas
    from gates._state import ModeReading, agent_mode, open_store, read_mode
    from gates._store import (
        MODES,
        AuditEntry,
        MemoryStore,
        Mode,
        ModeRecord,
        SQLiteStore,
        StateStore,
        verify_chain,
    )
    from gates._verdict import ChangeVerification, CheckResult, Outcome, Verdict, combine
    from gates._verify import IncidentVerification, verify_incident

__all__ = [
    "CHECKS",
    "CONTROL_FILES",
    "MODES",
    "PREDICATE_TYPE",
    "SCHEMAS",
    "SIGNING_KEY_ENV",
    "Acceptance",
    "Attestation",
    "AttestedClearance",
    "AuditEntry",
    "Captured",
    "ChangeVerification",
    "CheckResult",
    "Checklist",
    "Clearance",
    "Condition",
    "Config",
    "Contained",
    "Controls",
    "Decision",
    "Evidence",
    "FileSummary",
    "Fingerprint",
    "GateInputs",
    "GatesError",
    "IncidentVerification",
    "Ingested",
    "Investigated",
    "LayerAnalysis",
    "Loosening",
    "MemoryStore",
    "Mode",
    "ModeReading",
    "ModeRecord",
    "Outcome",
    "Permissions",
    "Postmortem",
    "RatchetApproval",
    "RatchetApprovals",
    "RatchetTerms",
    "RefSnapshot",
    "Refused",
    "Report",
    "Restored",
    "ReviewRouting",
    "ReviewRule",
    "Risk",
    "SQLiteStore",
    "SignatureInvalid",
    "Situation",
    "StateStore",
    "StoreUnavailable",
    "ToolPermission",
    "UnknownAgent",
    "Verdict",
    "Workspace",
    "agent_mode",
    "analyse_incident",
    "approvals_path",
    "approve_against",
    "approve_loosening",
    "attestation_path",
    "capture",
    "check",
    "check_attested",
    "combine",
    "contain",
    "decide",
    "decide_call",
    "engine_for",
    "fingerprint",
    "generate_key_pair",
    "ingest",
    "init_workspace",
    "investigate",
    "junit_xml",
    "load_baseline",
    "load_controls",
    "load_inputs",
    "load_public_key",
    "load_signing_key",
    "open_incident",
    "open_store",
    "policy_of",
    "postmortem",
    "postmortem_markdown",
    "ratchet_against",
    "ratchet_status",
    "read_envelope",
    "read_mode",
    "read_ref",
    "record_change",
    "record_finding",
    "register",
    "report_html",
    "report_markdown",
    "restore",
    "restore_blockers",
    "route_call",
    "route_output",
    "run_checks",
    "run_demo",
    "run_evals",
    "run_gate",
    "schedule_review",
    "schema_text",
    "sign_verdict",
    "snapshot",
    "take_signing_key",
    "tool_specs",
    "verdict_diff",
    "verdict_report",
    "verify_attestation",
    "verify_audit",
    "verify_chain",
    "verify_incident",
    "write_schemas",
]

# Each public name and the private module that defines it. A name is imported on first use
# (PEP 562), so importing one module of the package does not import all of the others:
# the pytest plugin loads in every xdist worker. A new public name is one line here, one
# in the TYPE_CHECKING block above (what type checkers and IDEs read) and one in __all__.
_EXPORTS: dict[str, str] = {
    "PREDICATE_TYPE": "gates._attestation",
    "SIGNING_KEY_ENV": "gates._attestation",
    "Attestation": "gates._attestation",
    "SignatureInvalid": "gates._attestation",
    "attestation_path": "gates._attestation",
    "generate_key_pair": "gates._attestation",
    "load_public_key": "gates._attestation",
    "load_signing_key": "gates._attestation",
    "read_envelope": "gates._attestation",
    "sign_verdict": "gates._attestation",
    "take_signing_key": "gates._attestation",
    "verify_attestation": "gates._attestation",
    "verify_audit": "gates._audit",
    "load_baseline": "gates._baseline",
    "snapshot": "gates._baseline",
    "CHECKS": "gates._checks",
    "Evidence": "gates._checks",
    "register": "gates._checks",
    "AttestedClearance": "gates._clearance",
    "Clearance": "gates._clearance",
    "check": "gates._clearance",
    "check_attested": "gates._clearance",
    "Condition": "gates._conditions",
    "Situation": "gates._conditions",
    "Config": "gates._config",
    "Workspace": "gates._config",
    "CONTROL_FILES": "gates._controls",
    "Acceptance": "gates._controls",
    "Checklist": "gates._controls",
    "Controls": "gates._controls",
    "Permissions": "gates._controls",
    "ReviewRouting": "gates._controls",
    "ReviewRule": "gates._controls",
    "Risk": "gates._controls",
    "ToolPermission": "gates._controls",
    "load_controls": "gates._controls",
    "run_demo": "gates._demo",
    "engine_for": "gates._engine",
    "policy_of": "gates._engine",
    "tool_specs": "gates._engine",
    "GatesError": "gates._errors",
    "Refused": "gates._errors",
    "StoreUnavailable": "gates._errors",
    "UnknownAgent": "gates._errors",
    "run_evals": "gates._evals",
    "Fingerprint": "gates._fingerprint",
    "fingerprint": "gates._fingerprint",
    "FileSummary": "gates._ingest",
    "Ingested": "gates._ingest",
    "ingest": "gates._ingest",
    "init_workspace": "gates._init",
    "GateInputs": "gates._inputs",
    "load_inputs": "gates._inputs",
    "Investigated": "gates._investigation",
    "investigate": "gates._investigation",
    "junit_xml": "gates._junit",
    "decide": "gates._pipeline",
    "run_checks": "gates._pipeline",
    "run_gate": "gates._pipeline",
    "Decision": "gates._policy",
    "decide_call": "gates._policy",
    "route_call": "gates._policy",
    "route_output": "gates._policy",
    "Postmortem": "gates._postmortem",
    "postmortem": "gates._postmortem",
    "postmortem_markdown": "gates._postmortem",
    "approve_against": "gates._ratchet",
    "approve_loosening": "gates._ratchet",
    "ratchet_status": "gates._ratchet",
    "RatchetApproval": "gates._ratchet_approvals",
    "RatchetApprovals": "gates._ratchet_approvals",
    "approvals_path": "gates._ratchet_approvals",
    "RefSnapshot": "gates._ratchet_git",
    "ratchet_against": "gates._ratchet_git",
    "read_ref": "gates._ratchet_git",
    "Loosening": "gates._ratchet_terms",
    "RatchetTerms": "gates._ratchet_terms",
    "LayerAnalysis": "gates._rca",
    "analyse_incident": "gates._rca",
    "Report": "gates._report",
    "report_html": "gates._report",
    "report_markdown": "gates._report",
    "verdict_diff": "gates._report",
    "verdict_report": "gates._report",
    "Captured": "gates._response",
    "Contained": "gates._response",
    "capture": "gates._response",
    "contain": "gates._response",
    "open_incident": "gates._response",
    "record_change": "gates._response",
    "record_finding": "gates._response",
    "schedule_review": "gates._response",
    "Restored": "gates._restore",
    "restore": "gates._restore",
    "restore_blockers": "gates._restore",
    "SCHEMAS": "gates._schemas",
    "schema_text": "gates._schemas",
    "write_schemas": "gates._schemas",
    "ModeReading": "gates._state",
    "agent_mode": "gates._state",
    "open_store": "gates._state",
    "read_mode": "gates._state",
    "MODES": "gates._store",
    "AuditEntry": "gates._store",
    "MemoryStore": "gates._store",
    "Mode": "gates._store",
    "ModeRecord": "gates._store",
    "SQLiteStore": "gates._store",
    "StateStore": "gates._store",
    "verify_chain": "gates._store",
    "ChangeVerification": "gates._verdict",
    "CheckResult": "gates._verdict",
    "Outcome": "gates._verdict",
    "Verdict": "gates._verdict",
    "combine": "gates._verdict",
    "IncidentVerification": "gates._verify",
    "verify_incident": "gates._verify",
}

# The built-in checks register when the pipeline is imported: the table of checks is whole
# when it is read, and a check registered from outside comes after the built-in ones.
_AFTER_THE_PIPELINE = frozenset({"CHECKS", "register"})


def __getattr__(name: str) -> Any:
    """Import a public name the first time it is used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _AFTER_THE_PIPELINE:
        importlib.import_module("gates._pipeline")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    """The module's names, the public ones included before their first use."""
    return sorted({*globals(), *__all__})
