"""What an agent did and how to judge it.

The run record and its native JSONL format, eval cases and their criteria, the
sandbox an agent runs in during an eval, the adapters that reach it, and the runner.
This module is the package's public API; the ``_modules`` behind it are private.
"""

from __future__ import annotations

from evalsuite._agent import (
    ADAPTERS,
    AGENT_NAME,
    Adapter,
    AgentCrashed,
    AgentSpec,
    PythonAdapter,
    PythonAdapterSpec,
    build_adapter,
)
from evalsuite._case import CASE_ID, CaseInput, EvalCase, Message, ToolFixture
from evalsuite._criteria import (
    Criterion,
    Judgement,
    OutputContains,
    OutputMatches,
    OutputNotContains,
    OutputNotMatches,
    PassesAcceptance,
    ToolArguments,
    ToolCalled,
    ToolNotCalled,
    judge_all,
    tools_named,
)
from evalsuite._documents import (
    create_exclusive,
    dump_yaml,
    json_path,
    line_of,
    load_model,
    parse_model,
    parse_yaml,
    read_text,
    write_atomic,
)
from evalsuite._errors import (
    EvalsuiteError,
    InvalidInput,
    ReinstateError,
    did_you_mean,
    display_path,
)
from evalsuite._jsonl import dump_runs, read_runs, write_runs
from evalsuite._record import Record
from evalsuite._run import (
    Behaviour,
    Output,
    Reasoning,
    Run,
    Step,
    ToolCall,
    ToolResult,
    UserInput,
)
from evalsuite._runner import CaseOutcome, CaseResult, TrialResult, run_case, run_trial
from evalsuite._schemas import check_json_schema, schema_violation
from evalsuite._session import AgentSession, MissingFixture, ToolFailed
from evalsuite._suite import case_files, load_cases

__all__ = [
    "ADAPTERS",
    "AGENT_NAME",
    "CASE_ID",
    "Adapter",
    "AgentCrashed",
    "AgentSession",
    "AgentSpec",
    "Behaviour",
    "CaseInput",
    "CaseOutcome",
    "CaseResult",
    "Criterion",
    "EvalCase",
    "EvalsuiteError",
    "InvalidInput",
    "Judgement",
    "Message",
    "MissingFixture",
    "Output",
    "OutputContains",
    "OutputMatches",
    "OutputNotContains",
    "OutputNotMatches",
    "PassesAcceptance",
    "PythonAdapter",
    "PythonAdapterSpec",
    "Reasoning",
    "Record",
    "ReinstateError",
    "Run",
    "Step",
    "ToolArguments",
    "ToolCall",
    "ToolCalled",
    "ToolFailed",
    "ToolFixture",
    "ToolNotCalled",
    "ToolResult",
    "TrialResult",
    "UserInput",
    "build_adapter",
    "case_files",
    "check_json_schema",
    "create_exclusive",
    "did_you_mean",
    "display_path",
    "dump_runs",
    "dump_yaml",
    "json_path",
    "judge_all",
    "line_of",
    "load_cases",
    "load_model",
    "parse_model",
    "parse_yaml",
    "read_runs",
    "read_text",
    "run_case",
    "run_trial",
    "schema_violation",
    "tools_named",
    "write_atomic",
    "write_runs",
]
