"""The controls, the gate and the way back to full operation.

Everything the CLI does is callable from here: open and contain incidents, capture
regression cases, run the gate, restore, and read an agent's mode at run time.
This module is the package's public API; the ``_modules`` behind it are private.
"""

from __future__ import annotations

from gates._baseline import load_baseline, snapshot
from gates._checks import CHECKS, Evidence, register
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
from gates._fingerprint import Fingerprint, fingerprint
from gates._init import init_workspace
from gates._inputs import GateInputs, load_inputs
from gates._junit import junit_xml
from gates._pipeline import decide, run_checks, run_evals, run_gate
from gates._policy import Decision, decide_call, route_call, route_output
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

__all__ = [
    "CHECKS",
    "CONTROL_FILES",
    "MODES",
    "SCHEMAS",
    "Acceptance",
    "AuditEntry",
    "Captured",
    "ChangeVerification",
    "CheckResult",
    "Checklist",
    "Config",
    "Contained",
    "Controls",
    "Decision",
    "Evidence",
    "Fingerprint",
    "GateInputs",
    "GatesError",
    "MemoryStore",
    "Mode",
    "ModeReading",
    "ModeRecord",
    "Outcome",
    "Permissions",
    "Refused",
    "Restored",
    "ReviewRouting",
    "ReviewRule",
    "Risk",
    "SQLiteStore",
    "StateStore",
    "StoreUnavailable",
    "ToolPermission",
    "UnknownAgent",
    "Verdict",
    "Workspace",
    "agent_mode",
    "capture",
    "combine",
    "contain",
    "decide",
    "decide_call",
    "fingerprint",
    "init_workspace",
    "junit_xml",
    "load_baseline",
    "load_controls",
    "load_inputs",
    "open_incident",
    "open_store",
    "read_mode",
    "record_change",
    "record_finding",
    "register",
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
    "snapshot",
    "verify_chain",
    "write_schemas",
]
