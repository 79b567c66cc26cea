"""The agent's mode as an OpenFeature flag: ``reinstate.mode.<agent>``.

A runtime that already switches behaviour through OpenFeature reads containment the way it
reads every other flag::

    from openfeature import api
    from reinstate.openfeature import ReinstateProvider

    api.set_provider(ReinstateProvider("."))
    mode = api.get_client().get_string_value("reinstate.mode.refund-agent", "suspended")

The answer is :func:`gates.mode_reading`'s, with its rule: whatever cannot be read (the
workspace, the agent, the state store, the incident records) answers ``suspended`` and
carries an error code and the reason. OpenFeature's specification has the client return the
caller's default on an error, so pass ``"suspended"`` (``False`` for the boolean form) as
the default: then every path fails closed, whichever the SDK version does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from gates import ModeReading, mode_reading

MODE_FLAG = "reinstate.mode."
"""``reinstate.mode.<agent>``: a string flag, ``full``, ``review`` or ``suspended``."""
FULL_FLAG = "reinstate.full."
"""``reinstate.full.<agent>``: a boolean flag, true only while the agent is in full
operation."""

T = TypeVar("T")


class ReinstateProvider(AbstractProvider):
    """Answers ``reinstate.mode.<agent>`` (string) and ``reinstate.full.<agent>`` (boolean)
    from a reinstate workspace's state store."""

    def __init__(self, workspace: Path | str | None = None, *, cache_s: float = 1.0) -> None:
        """A provider reading one workspace.

        Args:
            workspace: The workspace folder, fixed now (a later ``chdir`` does not move it);
                None finds it from the working directory at each reading, as
                ``reinstate`` does (``REINSTATE_WORKSPACE`` wins).
            cache_s: Answer from memory within this many seconds of the last reading of an
                agent, so a flag evaluated on every request stays cheap; a containment is
                seen within this time. 0 reads the store on every evaluation.
        """
        super().__init__()
        self.workspace = Path(workspace).absolute() if workspace is not None else None
        self.cache_s = cache_s

    def get_metadata(self) -> Metadata:
        """The provider's name, as OpenFeature's hooks and logs show it."""
        return Metadata(name="reinstate")

    def _reading(self, flag_key: str, prefix: str) -> ModeReading | None:
        if not flag_key.startswith(prefix) or flag_key == prefix:
            return None
        return mode_reading(flag_key[len(prefix):], self.workspace, cache_s=self.cache_s)

    def resolve_string_details(
        self, flag_key: str, default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        """The agent's mode for ``reinstate.mode.<agent>``; ``suspended`` with an error for
        anything that cannot be read, and for any other key."""
        reading = self._reading(flag_key, MODE_FLAG)
        if reading is None:
            return _not_ours(flag_key, "suspended", self._kind_hint(flag_key, MODE_FLAG))
        return _resolved(reading, reading.mode)

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """True for ``reinstate.full.<agent>`` only while the agent is in full operation;
        false with an error for anything that cannot be read, and for any other key."""
        reading = self._reading(flag_key, FULL_FLAG)
        if reading is None:
            return _not_ours(flag_key, False, self._kind_hint(flag_key, FULL_FLAG))
        return _resolved(reading, reading.mode == "full")

    @staticmethod
    def _kind_hint(flag_key: str, prefix: str) -> str:
        other = FULL_FLAG if prefix == MODE_FLAG else MODE_FLAG
        if flag_key.startswith(other):
            kind = "a boolean" if other == FULL_FLAG else "a string"
            return f"{other}<agent> is {kind} flag"
        return f"expected {prefix}<agent>"

    def resolve_integer_details(
        self, flag_key: str, default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        """Not a kind of flag reinstate answers: the default, with a type mismatch."""
        return _mismatch(flag_key, default_value)

    def resolve_float_details(
        self, flag_key: str, default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """Not a kind of flag reinstate answers: the default, with a type mismatch."""
        return _mismatch(flag_key, default_value)

    def resolve_object_details(
        self, flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """Not a kind of flag reinstate answers: the default, with a type mismatch."""
        return _mismatch(flag_key, default_value)


def _resolved(reading: ModeReading, value: T) -> FlagResolutionDetails[T]:
    """A reading as OpenFeature's resolution: the mode as the variant, the who, when and
    why as flag metadata, and an error code where the answer is a failure's."""
    metadata: dict[str, bool | int | float | str] = {"reason": reading.reason}
    if reading.since is not None:
        metadata["since"] = reading.since.isoformat()
    if reading.actor is not None:
        metadata["actor"] = reading.actor
    if reading.degraded is not None:
        metadata["degraded"] = reading.degraded
    if reading.failed_closed:
        return FlagResolutionDetails(
            value=value, variant=reading.mode, reason=Reason.ERROR, flag_metadata=metadata,
            error_code=ErrorCode.FLAG_NOT_FOUND if reading.unknown_agent else ErrorCode.GENERAL,
            error_message=f"{reading.degraded}; {reading.reason}")
    return FlagResolutionDetails(value=value, variant=reading.mode, reason=Reason.STATIC,
                                 flag_metadata=metadata)


def _not_ours(flag_key: str, closed: T, hint: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=closed, reason=Reason.ERROR, error_code=ErrorCode.FLAG_NOT_FOUND,
        error_message=f"reinstate answers no flag '{flag_key}' ({hint}): failing closed")


def _mismatch(flag_key: str, default_value: T) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default_value, reason=Reason.ERROR, error_code=ErrorCode.TYPE_MISMATCH,
        error_message=f"'{flag_key}': reinstate answers string flags {MODE_FLAG}<agent> "
                      f"and boolean flags {FULL_FLAG}<agent> only")
