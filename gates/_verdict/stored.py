"""The latest stored verdict, read for a decision (``check``, ``restore``) with only the
fields the decision reads, when the audit log vouches for its exact text
(:func:`gates._store.audit.latest_for_decision` decides which read to take).

Building the whole :class:`~gates._verdict.verdict.Verdict` model (some hundred classes:
every check's result and data) is most of what ``reinstate check`` spends on the verdict,
and check reads a handful of its fields. The verdict's integrity does not come from the
model: it comes from the audit log, whose verdict entry (hash-chained, verified on every
check) records the SHA-256 of the text the gate stored. So the light read is taken only
when the stored text hashes to exactly the digest the agent's last verdict entry
records: those bytes are the ones the gate wrote from a valid verdict. Any other case (a
text that does not parse into the fields, a field missing or of another type, a digest
that differs, no entry, a version 1 verdict) reads the whole model, as before, and gets
today's answers and errors.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from gates._verdict.fingerprint import Fingerprint
from gates._verdict.outcome import Outcome
from gates._verdict.plain_json import plain_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gates._verdict.check_results import RegressionRatchetData


class _Read(BaseModel):
    """Strict types, other fields ignored: a read of the fields a decision needs."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, defer_build=True)


class StoredHead(_Read):
    """The audit log's last entry when the verdict was stored."""

    seq: int = Field(ge=0)
    """The entry's number."""
    hash: str
    """The entry's hash."""


class StoredVerification(_Read):
    """Whether one control change was verified, as the verdict records it."""

    incident: str
    """The incident the change resolves."""
    change: str
    """The control change's id."""
    layer: str
    """The layer it changed."""
    verified: bool
    """True when the harm got through the baseline and is stopped today."""


class StoredCheck(_Read):
    """One check's name and outcome, and its data when it is the control changes'."""

    name: str
    """The check's name."""
    outcome: Outcome
    """The check's outcome."""
    data: dict[str, Any] | None = None
    """What the check counted (read further only for ``control_changes``)."""


class _ChangesData(_Read):
    verifications: list[StoredVerification] = Field(default_factory=list)


class StoredVerdict(_Read):
    """The fields of a stored verdict that ``check`` and ``restore`` decide on."""

    schema_version: Literal[2]
    """Only version 2 is read this way (version 1 is upgraded by the whole model)."""
    agent: str
    """The agent gated."""
    outcome: Outcome
    """pass only when every check passed."""
    created_at: AwareDatetime
    """When the gate ran."""
    fingerprint: Fingerprint
    """What the verdict was computed on, whole."""
    checks: list[StoredCheck]
    """Every check's name and outcome."""
    audit_head: StoredHead
    """The log's last entry before the verdict's own (required: it finds that entry)."""

    _text: str = PrivateAttr(default="")
    _verifications: tuple[StoredVerification, ...] = PrivateAttr(default=())

    @property
    def verifications(self) -> list[StoredVerification]:
        """Each control change of each open incident, verified or not."""
        return list(self._verifications)

    def stored_text(self) -> str:
        """The JSON text as the store keeps it: what the audit log's digest covers."""
        return self._text

    def __bool__(self) -> bool:
        return self.outcome == "pass"


class DecidedVerdict(Protocol):
    """What ``check`` and ``restore`` read of a verdict: the whole model or the light read."""

    @property
    def agent(self) -> str: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def fingerprint(self) -> Fingerprint: ...
    @property
    def checks(self) -> Sequence[StoredCheck] | Sequence[Any]: ...
    @property
    def verifications(self) -> Sequence[StoredVerification] | Sequence[Any]: ...
    @property
    def audit_head(self) -> StoredHead | Any: ...
    def stored_text(self) -> str: ...
    def __bool__(self) -> bool: ...


def read_stored(text: str) -> StoredVerdict | None:
    """The light read of a stored verdict's text; None when it is not of that shape."""
    try:
        read = StoredVerdict.model_validate_json(text)
        changes = [_ChangesData.model_validate(check.data) for check in read.checks
                   if check.name == "control_changes" and check.data is not None]
    except (ValidationError, ValueError, RecursionError):
        return None
    read._text = text
    read._verifications = tuple(v for data in changes for v in data.verifications)
    return read


class _RawCheck(msgspec.Struct):
    name: str
    data: msgspec.Raw = msgspec.Raw(b"null")  # kept as its bytes, unparsed


class _RawHead(msgspec.Struct):
    seq: int


class _RawVerdict(msgspec.Struct):
    schema_version: int
    checks: list[_RawCheck]
    audit_head: _RawHead


def read_ratchet_terms(text: str) -> tuple[int, RegressionRatchetData] | None:
    """The regression ratchet's memory in a stored verdict's text (the terms of its cases
    and its control rules), with the audit head it was stamped with; None when the text
    is not of that shape.

    Only that check's data is read into models (as strictly as the whole verdict reads
    it); every other check's is skipped unparsed, so a gate at 10,000 cases does not
    build the last verdict's 10,000 case rows to learn the terms. Like :func:`read_stored`,
    the caller takes it only when the audit log records exactly this text's digest.
    """
    # Imported here: check and restore read this module and need no check's result models.
    from gates._verdict.check_results import RegressionRatchetData

    if not plain_json(text):
        return None  # msgspec would read what the whole model refuses
    try:
        raw = msgspec.json.decode(text, type=_RawVerdict)
        if raw.schema_version != 2:
            return None
        found = [c.data for c in raw.checks if c.name == "regression_ratchet"]
        if len(found) != 1:
            return None
        data = RegressionRatchetData.model_validate_json(bytes(found[0]))
    except (msgspec.DecodeError, ValidationError, ValueError, RecursionError):
        return None
    return raw.audit_head.seq, data
