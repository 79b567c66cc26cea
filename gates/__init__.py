"""The controls, the gate and the way back to full operation.

Everything the CLI does is callable from here: open and contain incidents, capture
regression cases, run the gate, restore, read an agent's mode at run time, check a
deploy's clearance, and write the verdict report and the postmortem.
This module is the package's public API; the ``_modules`` behind it are private.
"""

from __future__ import annotations

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
from gates._backtest import backtest, backtest_runs
from gates._backtest_labels import Label as BacktestLabel
from gates._backtest_model import Backtest
from gates._baseline import load_baseline, snapshot
from gates._check_results import (
    AcceptanceCriteriaResult,
    CaseFigures,
    ControlChangesResult,
    CoverageReplay,
    DecisionReplay,
    EvalsResult,
    LoggingResult,
    OperatingChecklistResult,
    PermissionBoundaryResult,
    PromptReplay,
    RegressionRatchetResult,
    ReviewRoutingResult,
)
from gates._checks import Evidence
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
from gates._errors import GatesError, Refused, StoreUnavailable, UnknownAgent
from gates._evals import policy_of, run_evals, tool_specs
from gates._fingerprint import Fingerprint, fingerprint
from gates._ingest import FileSummary, Ingested, ingest
from gates._init import init_workspace
from gates._inputs import GateInputs, load_inputs
from gates._investigation import Investigated, investigate
from gates._junit import junit_xml
from gates._pipeline import BUILT_IN_CHECKS, CHECKS, decide, register, run_checks, run_gate
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
from gates._runs import LocatedRun, RunSummary, find_run, list_runs
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
from gates._verdict import ChangeVerification, CheckResult, Outcome, Verdict, combine, read_verdict
from gates._verify import IncidentVerification, OverBlocking, Verification, verify_incident

__all__ = [
    "BUILT_IN_CHECKS",
    "CHECKS",
    "CONTROL_FILES",
    "MODES",
    "PREDICATE_TYPE",
    "SCHEMAS",
    "SIGNING_KEY_ENV",
    "Acceptance",
    "AcceptanceCriteriaResult",
    "Attestation",
    "AttestedClearance",
    "AuditEntry",
    "Backtest",
    "BacktestLabel",
    "Captured",
    "CaseFigures",
    "ChangeVerification",
    "CheckResult",
    "Checklist",
    "Clearance",
    "Condition",
    "Config",
    "Contained",
    "ControlChangesResult",
    "Controls",
    "CoverageReplay",
    "Decision",
    "DecisionReplay",
    "EvalsResult",
    "Evidence",
    "FileSummary",
    "Fingerprint",
    "GateInputs",
    "GatesError",
    "IncidentVerification",
    "Ingested",
    "Investigated",
    "LayerAnalysis",
    "LocatedRun",
    "LoggingResult",
    "Loosening",
    "MemoryStore",
    "Mode",
    "ModeReading",
    "ModeRecord",
    "OperatingChecklistResult",
    "Outcome",
    "OverBlocking",
    "PermissionBoundaryResult",
    "Permissions",
    "Postmortem",
    "PromptReplay",
    "RatchetApproval",
    "RatchetApprovals",
    "RatchetTerms",
    "RefSnapshot",
    "Refused",
    "RegressionRatchetResult",
    "Report",
    "Restored",
    "ReviewRouting",
    "ReviewRoutingResult",
    "ReviewRule",
    "Risk",
    "RunSummary",
    "SQLiteStore",
    "SignatureInvalid",
    "Situation",
    "StateStore",
    "StoreUnavailable",
    "ToolPermission",
    "UnknownAgent",
    "Verdict",
    "Verification",
    "Workspace",
    "agent_mode",
    "analyse_incident",
    "approvals_path",
    "approve_against",
    "approve_loosening",
    "attestation_path",
    "backtest",
    "backtest_runs",
    "capture",
    "check",
    "check_attested",
    "combine",
    "contain",
    "decide",
    "decide_call",
    "find_run",
    "fingerprint",
    "generate_key_pair",
    "ingest",
    "init_workspace",
    "investigate",
    "junit_xml",
    "list_runs",
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
    "read_verdict",
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
