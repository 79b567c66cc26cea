"""Verdicts: what a gate run found, check by check, bound to what it was computed on."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, Field, PrivateAttr

from evalsuite import Record
from gates._verdict.check_results import (
    EXIT_CODES,
    AnyCheckResult,
    ChangeVerification,
    CheckResult,
    CheckResultBase,
    ControlChangesResult,
    Outcome,
    combine,
)
from gates._verdict.fingerprint import Fingerprint
from gates._verdict.version_1 import upgrade, v1_text

__all__ = ["EXIT_CODES", "AuditHead", "ChangeVerification", "CheckResult", "Outcome",
           "Verdict", "combine", "read_verdict"]

SCHEMA_VERSION = 2
ResultT = TypeVar("ResultT", bound=CheckResultBase)


class AuditHead(Record):
    """The audit log's last entry at a moment: its number and hash."""

    seq: int = Field(ge=0)
    """The entry's number (0 for an empty log)."""
    hash: str
    """The entry's hash (zeros for an empty log)."""


class Verdict(Record):
    """The outcome of a gate run. ``bool(verdict)`` means "may restore"."""

    schema_version: Literal[2] = 2
    """Version of this record's format (version 1 verdicts are upgraded as they are read)."""
    agent: str
    """The agent gated."""
    outcome: Outcome
    """pass only when every check passed."""
    created_at: AwareDatetime
    """When the gate ran, in UTC."""
    fingerprint: Fingerprint
    """What the verdict was computed on."""
    checks: list[AnyCheckResult]
    """Every check, in the order it ran; each built-in check's ``data`` in its own shape
    (told apart by ``name``), a check registered from outside with an open ``data``."""
    audit_head: AuditHead | None = None
    """The audit log's last entry when the verdict was stored; the verdict's own entry
    follows it. A copy of the verdict kept elsewhere anchors the log: an entry removed
    from its end shows (``reinstate audit verify --anchor verdict.json``)."""

    # (this verdict as version 2 text when it was upgraded, the version 1 text it was read
    # from): the audit log's digest and a signature cover the version 1 text.
    _read_as_v1: tuple[str, str] | None = PrivateAttr(default=None)

    def result(self, kind: type[ResultT]) -> ResultT | None:
        """The first check whose result is of model ``kind`` (e.g. ``EvalsResult``)."""
        return next((c for c in self.checks if isinstance(c, kind)), None)

    @property
    def verifications(self) -> list[ChangeVerification]:
        """Each control change of each open incident, verified or not."""
        return [v for check in self.checks
                if isinstance(check, ControlChangesResult) and check.data is not None
                for v in check.data.verifications]

    def stored_text(self) -> str:
        """The JSON text the store's digest and a signature cover: the version 1 text the
        verdict was read from while it is unchanged since, else its own."""
        text = self.model_dump_json()
        if self._read_as_v1 is not None and self._read_as_v1[0] == text:
            return self._read_as_v1[1]
        return text

    def __bool__(self) -> bool:
        return self.outcome == "pass"

    @property
    def exit_code(self) -> int:
        """The CLI exit code for this outcome."""
        return EXIT_CODES[self.outcome]


def read_verdict(data: Any) -> Verdict:
    """A verdict read from outside (the store, a file, a signed envelope): version 2 as it
    is, version 1 upgraded (its digest still the one version 1 recorded).

    Args:
        data: The verdict as JSON text or as parsed JSON data.

    Raises:
        pydantic.ValidationError: Not a verdict of either version.
        ValueError: Text that is not JSON.
    """
    if isinstance(data, str | bytes):
        data = json.loads(data)
    if not (isinstance(data, dict) and data.get("schema_version") == 1):
        return Verdict.model_validate(data)
    old = v1_text(data)
    verdict = Verdict.model_validate(upgrade(json.loads(old)))
    verdict._read_as_v1 = (verdict.model_dump_json(), old)
    return verdict
