"""Version 1 verdicts, kept only to read them: their shape, and the one upgrader to 2.

Version 1 kept each check's ``data`` as an open dict. Verdicts stored, signed or kept as
CI artefacts before version 2 are still read: :func:`upgrade` turns one into version 2
data, and :func:`v1_text` gives the exact text version 1 serialised it as, which is what
its digest in the audit log and its signature cover, so an old verdict still verifies
and an edited one still does not.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field

from evalsuite import Record
from gates._verdict.check_results import BUILT_IN, Outcome
from gates._verdict.fingerprint import Fingerprint


class _CheckResultV1(Record):
    """A check result as version 1 wrote it."""

    name: str
    """The check's registered name."""
    outcome: Outcome
    """Its outcome."""
    summary: str
    """One line."""
    findings: list[str] = Field(default_factory=list)
    """Each gap, error or doubt."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Counts and per-item results."""


class _AuditHeadV1(Record):
    """The audit log's last entry when the verdict was stored."""

    seq: int = Field(ge=0)
    """The entry's number."""
    hash: str
    """The entry's hash."""


class VerdictV1(Record):
    """A verdict as version 1 wrote it, field for field (the digest depends on it)."""

    schema_version: Literal[1] = 1
    """Always 1."""
    agent: str
    """The agent gated."""
    outcome: Outcome
    """The verdict's outcome."""
    created_at: AwareDatetime
    """When the gate ran."""
    fingerprint: Fingerprint
    """What it was computed on."""
    checks: list[_CheckResultV1]
    """Every check."""
    audit_head: _AuditHeadV1 | None = None
    """The audit log's last entry when it was stored."""


def v1_text(data: dict[str, Any]) -> str:
    """The JSON text version 1 stored and signed for this verdict.

    Raises:
        pydantic.ValidationError: ``data`` is not a version 1 verdict.
    """
    return VerdictV1.model_validate(data).model_dump_json()


_ROW_KINDS = (("step", "decision"), ("input_type", "coverage"), ("case", "prompt"))


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 verdict's data as version 2: each built-in check's data in its own shape.

    Empty data becomes none; each replay row of a control change gets its ``kind``; a case
    that did not pass in a verdict from before failures were recorded gets, as what it
    missed, the evals check's finding about it.
    """
    checks = []
    for check in data.get("checks", []):
        check = dict(check)
        if isinstance(check.get("name"), str) and check["name"] in BUILT_IN:
            check["data"] = _upgrade_data(check["name"], check.get("data") or {},
                                          check.get("findings") or [])
        checks.append(check)
    return {**data, "schema_version": 2, "checks": checks}


def _upgrade_data(name: str, data: dict[str, Any], findings: list[str]) -> Any:
    if not data:
        return None
    if name == "control_changes":
        return {**data, "verifications": [
            {**v, "replays": [_kinded(row) for row in v.get("replays", [])]}
            for v in data.get("verifications", [])]}
    if name == "evals":
        return {**data, "cases": [_case(case, findings) for case in data.get("cases", [])]}
    return data


def _kinded(row: dict[str, Any]) -> dict[str, Any]:
    kind = next((kind for key, kind in _ROW_KINDS if key in row), None)
    return {"kind": kind, **row} if kind is not None else row


def _case(case: dict[str, Any], findings: list[str]) -> dict[str, Any]:
    if case.get("outcome") == "pass" or "failed" in case:
        return case
    prefix = f"{case.get('id')}: "
    said = [f.removeprefix(prefix) for f in findings if f.startswith(prefix)]
    return {**case, "failed": {"trial": None, "error": None, "did": [], "unmet": [
        {"criterion": str(case.get("id")), "detail": detail} for detail in said]}}
