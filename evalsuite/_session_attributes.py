"""Which span attributes tie traces into one run: the setting on its own, with no reader.

Every command enters :func:`sessions_grouped_by` with the workspace's ``[ingest]``
settings, and ``reinstate.toml`` defaults to :data:`DEFAULT_SESSION_ATTRIBUTES`; kept
apart from the session grouping itself so that neither imports the log readers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

DEFAULT_SESSION_ATTRIBUTES: tuple[str, ...] = (
    "gen_ai.conversation.id",                          # OpenTelemetry GenAI conventions
    "session.id",                                      # OpenInference, and common use
    "traceloop.association.properties.session_id",     # OpenLLMetry association property
)
"""Span attributes whose value names the session a trace belongs to, first found wins."""

_ATTRIBUTES: ContextVar[tuple[str, ...]] = ContextVar(
    "session_attributes", default=DEFAULT_SESSION_ATTRIBUTES)


@contextmanager
def sessions_grouped_by(attributes: Sequence[str]) -> Iterator[None]:
    """Read OpenTelemetry logs within the block grouping traces into runs by ``attributes``
    (span attributes naming a session or conversation, first found wins); an empty list
    makes each trace a run of its own.

    Example:
        >>> with sessions_grouped_by(["app.thread_id"]):
        ...     runs = read_log_runs(Path("traces.jsonl"))  # doctest: +SKIP
    """
    token = _ATTRIBUTES.set(tuple(attributes))
    try:
        yield
    finally:
        _ATTRIBUTES.reset(token)


def session_attributes() -> tuple[str, ...]:
    """The span attributes traces are grouped into runs by, where this code runs."""
    return _ATTRIBUTES.get()
